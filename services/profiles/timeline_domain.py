"""The customer's timeline, its rules: the kinds of entry, what an entry says, and how a
complaint or notification event of another service is told on it (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from shared.events import EventPayload
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintEvent,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintReplied,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
    SlaSeverity,
)
from shared.events.notifications import (
    NotificationEvent,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)

# What erasure leaves in place of free text that may describe a person.
ERASED = "[erased]"


class EntryKind(StrEnum):
    PROFILE = "profile"
    PURCHASE = "purchase"
    RETURN = "return"
    INTERACTION = "interaction"
    CONSENT = "consent"
    CONTRACT = "contract"
    COMPLAINT = "complaint"
    NOTIFICATION = "notification"
    MERGE = "merge"


class TimelineEntry(BaseModel):
    """One thing that happened to a customer, as the API shows it."""

    id: str
    kind: str
    occurred_at: datetime
    summary: str
    details: dict[str, Any]


@dataclass(frozen=True)
class Happening:
    """What an event says happened, ready to become a timeline entry."""

    kind: EntryKind
    occurred_at: datetime
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


# The events of other services the timeline records, and how it tells them.

RECORDED_EVENTS: tuple[type[ComplaintEvent | NotificationEvent], ...] = (
    ComplaintOpened,
    ComplaintAcknowledged,
    ComplaintStatusChanged,
    ComplaintReplied,
    ComplaintResolved,
    ComplaintReopened,
    ComplaintClosed,
    ComplaintSlaBreached,
    ComplaintFeedbackReceived,
    NotificationSent,
    NotificationFailed,
    NotificationSuppressed,
)
RECORDED_EVENT_TYPES = tuple(event.event_type for event in RECORDED_EVENTS)

CHANNEL_NAMES = {"email": "e-mail", "sms": "SMS", "webhook": "webhook", "in_app": "in-app message"}


def describe(payload: EventPayload) -> Happening | None:
    """The timeline entry a complaint or notification event makes; None for other events."""
    if isinstance(payload, ComplaintEvent):
        return _describe_complaint(payload)
    if isinstance(payload, NotificationEvent):
        return _describe_notification(payload)
    return None


def _describe_complaint(event: ComplaintEvent) -> Happening | None:
    def complaint(when: datetime, summary: str, status: str | None, **details: Any) -> Happening:
        facts = {"complaint_id": event.complaint_id, **details}
        if status is not None:
            facts["status"] = status
        shown = {name: value for name, value in facts.items() if value is not None}
        return Happening(EntryKind.COMPLAINT, when, summary, shown)

    match event:
        case ComplaintOpened():
            return complaint(
                event.opened_at,
                f"complaint opened: {event.subject}",
                "open",
                category=event.category,
                priority=event.priority.value,
                channel=event.channel.value,
                related_purchase_id=event.related_purchase_id,
            )
        case ComplaintAcknowledged():
            return complaint(
                event.acknowledged_at,
                "complaint acknowledged",
                "acknowledged",
                agent_id=event.agent_id,
            )
        case ComplaintStatusChanged():
            return complaint(
                event.changed_at,
                f"complaint {event.from_status.value.replace('_', ' ')}"
                f" → {event.to_status.value.replace('_', ' ')}",
                event.to_status.value,
                from_status=event.from_status.value,
                public_comment=event.public_comment,
            )
        case ComplaintReplied():
            return complaint(
                event.replied_at,
                f"complaint: {event.agent_id} replied",
                None,
                agent_id=event.agent_id,
                comment_id=event.comment_id,
                public_comment=event.public_comment,
            )
        case ComplaintResolved():
            return complaint(
                event.resolved_at,
                f"complaint resolved ({event.resolution_type.value.replace('_', ' ')})",
                "resolved",
                resolution_type=event.resolution_type.value,
                resolution=event.summary,
                refund_amount=_money(event.refund_amount),
                currency=event.currency,
                purchase_id=event.purchase_id,
            )
        case ComplaintReopened():
            return complaint(
                event.reopened_at, "complaint reopened", "reopened", reason=event.reason
            )
        case ComplaintClosed():
            return complaint(event.closed_at, "complaint closed", "closed")
        case ComplaintSlaBreached():
            clock = event.clock.value.replace("_", " ")
            return complaint(
                event.detected_at,
                f"complaint {clock} deadline {_sla_outcome(event)}",
                None,
                clock=event.clock.value,
                severity=event.severity.value,
                due_at=event.due_at,
                priority=event.priority.value,
                escalated_to=event.escalated_to,
            )
        case ComplaintFeedbackReceived():
            nps = "" if event.nps is None else f", NPS {event.nps}/10"
            return complaint(
                event.received_at,
                f"complaint feedback: CSAT {event.csat}/5{nps}",
                None,
                csat=event.csat,
                nps=event.nps,
                comment=event.comment,
            )
    return None


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else format(amount, "f")


def _sla_outcome(event: ComplaintSlaBreached) -> str:
    return "missed" if event.severity is SlaSeverity.BREACH else "approaching"


def _describe_notification(event: NotificationEvent) -> Happening | None:
    channel = CHANNEL_NAMES.get(event.channel.value, event.channel.value)
    details: dict[str, Any] = {
        "notification_id": event.notification_id,
        "channel": event.channel.value,
        "rule": event.rule,
    }
    if event.source_event_id is not None:
        details["source_event_id"] = event.source_event_id
    match event:
        case NotificationSent():
            details["status"] = "sent"
            return Happening(
                EntryKind.NOTIFICATION, event.sent_at, f"{channel} sent ({event.rule})", details
            )
        case NotificationFailed():
            details |= {"status": "failed", "reason": event.reason, "attempts": event.attempts}
            return Happening(
                EntryKind.NOTIFICATION, event.failed_at, f"{channel} failed ({event.rule})", details
            )
        case NotificationSuppressed():
            details |= {"status": "suppressed", "reason": event.reason}
            return Happening(
                EntryKind.NOTIFICATION,
                event.suppressed_at,
                f"{channel} suppressed ({event.rule})",
                details,
            )
    return None
