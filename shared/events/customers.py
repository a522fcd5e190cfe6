"""Events on ``crm.customers``: who the customer is and how to reach them."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from shared.events.base import EventPayload, Identifier, LongText, Record, ShortText, Timestamp
from shared.topics import CUSTOMERS

PhoneE164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9]\d{6,14}$")]


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    IN_APP = "in_app"


class Purpose(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class PostalAddress(Record):
    """A postal address; every part optional because countries differ."""

    street: ShortText | None = None
    city: ShortText | None = None
    postal_code: ShortText | None = None
    region: ShortText | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


class ContractStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ContractSummary(Record):
    """A contract or subscription of the customer, enough to remind them before it ends."""

    contract_id: Identifier
    product: ShortText
    status: ContractStatus
    renews_at: date | None = None
    expires_at: date | None = None
    auto_renew: bool = False


class CustomerSnapshot(EventPayload):
    """The public profile, carried whole so consumers can keep local read models."""

    topic = CUSTOMERS

    customer_id: Identifier
    given_name: ShortText | None = None
    family_name: ShortText | None = None
    preferred_name: ShortText | None = None
    emails: list[EmailStr] = Field(default_factory=list)
    phones: list[PhoneE164] = Field(default_factory=list)
    address: PostalAddress | None = None
    locale: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    time_zone: ShortText = "UTC"
    birthday: date | None = None
    tags: list[ShortText] = Field(default_factory=list)
    external_ids: dict[str, ShortText] = Field(default_factory=dict)
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    contracts: list[ContractSummary] | None = Field(
        default=None,
        description=(
            "all the customer's contracts when the event speaks of them (changed_fields "
            "names `contracts`); null when it does not, so keep what you knew"
        ),
    )
    created_at: Timestamp
    updated_at: Timestamp
    version: int = Field(ge=1)


class CustomerRegistered(CustomerSnapshot):
    event_type = "crm.customer.registered"


class CustomerUpdated(CustomerSnapshot):
    event_type = "crm.customer.updated"

    changed_fields: list[ShortText] = Field(default_factory=list)


class CustomerMerged(EventPayload):
    """``source`` became a tombstone pointing at ``customer_id`` (the survivor)."""

    event_type = "crm.customer.merged"
    topic = CUSTOMERS

    customer_id: Identifier
    source_customer_id: Identifier
    merged_at: Timestamp
    undone: bool = False


class CustomerErased(EventPayload):
    event_type = "crm.customer.erased"
    topic = CUSTOMERS

    customer_id: Identifier
    erased_at: Timestamp


class ConsentChanged(EventPayload):
    event_type = "crm.customer.consent_changed"
    topic = CUSTOMERS

    customer_id: Identifier
    channel: Channel
    purpose: Purpose
    granted: bool
    source: ShortText
    changed_at: Timestamp


class InteractionKind(StrEnum):
    CALL = "call"
    VISIT = "visit"
    EMAIL = "email"
    CHAT = "chat"
    VIDEO = "video"
    LETTER = "letter"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class InteractionLogged(EventPayload):
    event_type = "crm.interaction.logged"
    topic = CUSTOMERS

    interaction_id: Identifier
    customer_id: Identifier
    kind: InteractionKind
    direction: Direction
    channel: ShortText | None = None
    summary: LongText
    agent_id: Identifier | None = None
    occurred_at: Timestamp
