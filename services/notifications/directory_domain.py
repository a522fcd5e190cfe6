"""The directory, its model: a customer as the notifications service knows them (names,
addresses, locale and time zone, contracts, consents, open complaints) and how a message
addresses them (pure: no I/O; the read model that keeps them is ``directory_store.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from services.notifications.domain import Channel, Purpose, Recipient


@dataclass(frozen=True)
class Contract:
    contract_id: str
    product: str
    active: bool
    ends_on: date | None  # the renewal date, or the expiry date when it does not renew
    auto_renew: bool = False


@dataclass(frozen=True)
class Customer:
    id: str
    given_name: str | None = None
    family_name: str | None = None
    preferred_name: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    locale: str | None = None
    time_zone: str | None = None
    birthday: date | None = None
    contracts: tuple[Contract, ...] = ()
    account_owner: str | None = None
    consents: Mapping[tuple[Channel, Purpose], bool] = field(default_factory=dict)
    open_complaints: tuple[str, ...] = ()
    erased: bool = False
    registered: bool = False  # a profile snapshot was seen (not only consents or complaints)
    version: int = 0

    @property
    def name(self) -> str | None:
        """How messages address the customer: the preferred name, else the given name."""
        return self.preferred_name or self.given_name or self.family_name

    @property
    def full_name(self) -> str | None:
        parts = [part for part in (self.given_name, self.family_name) if part]
        return " ".join(parts) or self.preferred_name

    def address(self, channel: Channel) -> str | None:
        if channel is Channel.EMAIL:
            return self.emails[0] if self.emails else None
        if channel is Channel.SMS:
            return self.phones[0] if self.phones else None
        if channel is Channel.IN_APP:
            return self.id
        return None

    def recipient(self, default_locale: str, default_time_zone: str) -> Recipient:
        return Recipient(
            customer_id=self.id,
            name=self.name,
            email=self.address(Channel.EMAIL),
            phone=self.address(Channel.SMS),
            locale=self.locale or default_locale,
            time_zone=self.time_zone or default_time_zone,
        )
