"""Events on ``crm.customers``: who the customer is and how to reach them."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from shared.events.base import (
    PERSONAL,
    EventPayload,
    Identifier,
    LongText,
    Record,
    ShortText,
    Timestamp,
)
from shared.topics import CUSTOMERS

PhoneE164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9]\d{6,14}$")]
LocaleTag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


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
    given_name: Annotated[ShortText | None, PERSONAL] = None
    family_name: Annotated[ShortText | None, PERSONAL] = None
    preferred_name: Annotated[ShortText | None, PERSONAL] = None
    emails: Annotated[list[EmailStr], PERSONAL] = Field(default_factory=list)
    phones: Annotated[list[PhoneE164], PERSONAL] = Field(default_factory=list)
    address: Annotated[PostalAddress | None, PERSONAL] = None
    locale: LocaleTag = "en"
    time_zone: ShortText = "UTC"
    birthday: Annotated[date | None, PERSONAL] = None
    tags: Annotated[list[ShortText], PERSONAL] = Field(default_factory=list)
    external_ids: Annotated[dict[str, ShortText], PERSONAL] = Field(default_factory=dict)
    attributes: Annotated[dict[str, str | int | float | bool | None], PERSONAL] = Field(
        default_factory=dict
    )
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
    source: Annotated[ShortText, PERSONAL]
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
    channel: Annotated[ShortText | None, PERSONAL] = None
    summary: Annotated[LongText, PERSONAL]
    agent_id: Identifier | None = None
    occurred_at: Timestamp


class SignInRequested(EventPayload):
    """A customer asked to sign in to the portal: e-mail them this single-use link.

    The link is a credential: whoever holds it can sign in as the customer until it is
    used or expires. Send it to the customer and nowhere else: do not log it, keep it, or
    forward it (notifications' webhooks never deliver this type)."""

    event_type = "crm.customer.sign_in_requested"
    topic = CUSTOMERS
    carries_secret = True

    customer_id: Identifier
    email: Annotated[EmailStr | None, PERSONAL] = Field(
        default=None,
        description="the address the link was asked for, where it goes (one of the "
        "customer's); when absent, the customer's first address",
    )
    sign_in_url: Annotated[str, PERSONAL, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="the portal's sign-in page with the single-use token"
    )
    expires_at: Timestamp = Field(description="the link works until then, once")
    locale: LocaleTag | None = Field(
        default=None, description="the language to write in (the portal's, when it said)"
    )
    requested_at: Timestamp


class CustomerSignedOut(EventPayload):
    """A customer signed out of the portal: the customer token ``token_id`` (its ``jti``)
    no longer works. Every service keeps the revocation until ``expires_at``, when the
    token would have expired anyway, and refuses the token with 401 from then on."""

    event_type = "crm.customer.signed_out"
    topic = CUSTOMERS

    customer_id: Identifier
    token_id: Identifier = Field(description="the `jti` of the customer token signed out")
    expires_at: Timestamp = Field(description="when the token expires (its `exp`)")
    signed_out_at: Timestamp
