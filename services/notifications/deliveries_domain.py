"""Deliveries, their model: one message on one channel from decision to outcome, its
status, and the ledger key that makes the same message always the same delivery
(pure: no I/O; the ledger that keeps them is ``deliveries_store.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.notifications.domain import Channel, Purpose
from services.notifications.rules import Audience

_LEDGER_NAMESPACE = uuid.UUID("6a1f6f0e-2b7c-4c55-9b3a-6e6f74696679")
ERASED = "[erased]"
WAITING_FOR_CUSTOMER = "customer not known yet"


ERASED_FAILURE = "delivery failed (the details were erased with the customer)"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


def delivery_id(
    message_key: str, rule: str, channel: Channel, subscription_id: str | None = None
) -> str:
    """The ledger key as an id: the same message always gets the same id. ``message_key``
    is the delivery's ``subject`` (the business object) when it has one, else the source
    event id."""
    key = "|".join((message_key, rule, channel.value, subscription_id or ""))
    return str(uuid.uuid5(_LEDGER_NAMESPACE, key))


class Delivery(BaseModel):
    """One message on one channel, from decision to outcome."""

    model_config = ConfigDict(extra="ignore")

    id: str
    source_event_id: str
    source_event_type: str
    # The business object the message is about (``purchase:<id>``, ...), when there is one:
    # the ledger key, so two events about it give one message.
    subject: str | None = Field(default=None, exclude=True)
    rule: str
    channel: Channel
    subscription_id: str | None = None
    customer_id: str
    purpose: Purpose
    audience: Audience
    status: DeliveryStatus
    address: str | None = Field(default=None, description="null until resolved, or erased")
    locale: str | None = None
    context: dict[str, Any] = Field(default_factory=dict, exclude=True)
    # A webhook's body: the triggering CloudEvent in structured JSON, kept as it will be
    # sent (the same bytes on every attempt); None for a schedule's message and once erased.
    cloudevent: str | None = Field(default=None, exclude=True)
    due_at: datetime = Field(description="when the next attempt may be made")
    deferred_because: str | None = None
    attempts: int = 0
    last_error: str | None = None
    reason: str | None = Field(default=None, description="why it was suppressed or failed")
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    claimed_until: datetime | None = Field(default=None, exclude=True)
    claim: str | None = Field(default=None, exclude=True)
    version: int = Field(default=1, exclude=True)
