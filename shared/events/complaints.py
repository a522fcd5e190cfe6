"""Events on ``crm.complaints``: a complaint's lifecycle, its SLA clocks and feedback."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from shared.events.base import (
    PERSONAL,
    CurrencyCode,
    EventPayload,
    Identifier,
    LongText,
    NonNegativeAmount,
    ShortText,
    Timestamp,
)
from shared.topics import COMPLAINTS


class ComplaintStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ContactChannel(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    WEB = "web"
    STORE = "store"
    SOCIAL = "social"


class ResolutionType(StrEnum):
    EXPLANATION = "explanation"
    REPLACEMENT = "replacement"
    REPAIR = "repair"
    REFUND = "refund"
    RETURN = "return"
    GOODWILL_CREDIT = "goodwill_credit"


class SlaClock(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class SlaSeverity(StrEnum):
    WARNING = "warning"
    BREACH = "breach"


class ComplaintEvent(EventPayload):
    topic = COMPLAINTS

    complaint_id: Identifier
    customer_id: Identifier


class ComplaintOpened(ComplaintEvent):
    event_type = "crm.complaint.opened"

    channel: ContactChannel
    category: ShortText
    subject: Annotated[ShortText, PERSONAL]
    description: Annotated[LongText, PERSONAL]
    priority: Priority
    related_purchase_id: Identifier | None = None
    first_response_due_at: Timestamp | None = None
    resolution_due_at: Timestamp | None = None
    opened_at: Timestamp


class ComplaintAcknowledged(ComplaintEvent):
    event_type = "crm.complaint.acknowledged"

    acknowledged_at: Timestamp
    agent_id: Identifier | None = None


class ComplaintStatusChanged(ComplaintEvent):
    event_type = "crm.complaint.status_changed"

    from_status: ComplaintStatus
    to_status: ComplaintStatus
    changed_at: Timestamp
    public_comment: Annotated[LongText | None, PERSONAL] = None


class ComplaintReplied(ComplaintEvent):
    """A staff member added a public reply (never an internal note): the customer hears
    of it. A reply that comes with a status change is on ``status_changed`` instead."""

    event_type = "crm.complaint.replied"

    comment_id: Identifier
    agent_id: Identifier
    public_comment: Annotated[LongText, PERSONAL]
    replied_at: Timestamp


class ComplaintResolved(ComplaintEvent):
    """For a refund or return, ``refund_amount``/``currency``/``purchase_id`` are set and
    the profiles service records the refund in the customer's ledger."""

    event_type = "crm.complaint.resolved"

    resolution_type: ResolutionType
    summary: Annotated[LongText, PERSONAL]
    refund_amount: NonNegativeAmount | None = None
    currency: CurrencyCode | None = None
    purchase_id: Identifier | None = None
    resolved_at: Timestamp

    @model_validator(mode="after")
    def _money_with_currency(self) -> Self:
        if (self.refund_amount is None) != (self.currency is None):
            raise ValueError("refund_amount and currency go together")
        return self


class ComplaintReopened(ComplaintEvent):
    event_type = "crm.complaint.reopened"

    reason: Annotated[LongText | None, PERSONAL] = None
    reopened_at: Timestamp


class ComplaintClosed(ComplaintEvent):
    event_type = "crm.complaint.closed"

    closed_at: Timestamp


class ComplaintSlaBreached(ComplaintEvent):
    """A clock reached its warning share or its deadline; each is published once."""

    event_type = "crm.complaint.sla_breached"

    clock: SlaClock
    severity: SlaSeverity = SlaSeverity.BREACH
    due_at: Timestamp
    detected_at: Timestamp
    priority: Priority
    escalated_to: ShortText | None = None


class ComplaintFeedbackReceived(ComplaintEvent):
    event_type = "crm.complaint.feedback_received"

    csat: int = Field(ge=1, le=5)
    nps: int | None = Field(default=None, ge=0, le=10)
    comment: Annotated[LongText | None, PERSONAL] = None
    received_at: Timestamp
