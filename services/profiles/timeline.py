"""The customer's timeline: one entry per thing that happened, newest first.

Every use case that changes something about a customer appends its entry in the same
transaction as the change, and the worker appends the complaint and notification events
it consumes, so the timeline is complete without asking any other service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pymongo import DESCENDING, UpdateOne

from services.profiles.store import CustomerStore
from shared.events import Event, EventPayload
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
from shared.identity import End, follow
from shared.mongo import Database, Session
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

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


def newer_than_cursor(after: tuple[datetime, str] | None) -> dict[str, Any]:
    """The filter for keyset pagination on (occurred_at, _id), newest first."""
    if after is None:
        return {}
    occurred_at, entry_id = after
    return {
        "$or": [
            {"occurred_at": {"$lt": occurred_at}},
            {"occurred_at": occurred_at, "_id": {"$lt": entry_id}},
        ]
    }


NEWEST_FIRST = [("occurred_at", DESCENDING), ("_id", DESCENDING)]


class TimelineStore:
    section = "timeline"

    def __init__(self, db: Database) -> None:
        self.entries = db["timeline"]

    async def ensure_indexes(self) -> None:
        await self.entries.create_index(
            [("customer_id", DESCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)]
        )

    async def append(
        self,
        session: Session,
        *,
        entry_id: str,
        customer_id: str,
        kind: EntryKind,
        occurred_at: datetime,
        summary: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an entry; ``entry_id`` (e.g. the event id) keeps it unique."""
        happening = Happening(kind, occurred_at, summary, details or {})
        await self.entries.insert_one(_document(entry_id, customer_id, happening), session=session)

    def add(
        self, uow: UnitOfWork, *, entry_id: str, customer_id: str, happening: Happening
    ) -> None:
        """Add an entry when ``uow`` commits, unless one with ``entry_id`` exists (the
        event was applied before). Always the same kind of write, so a batch's entries
        go in one command whatever events they come from."""
        fields = _document(entry_id, customer_id, happening)
        del fields["_id"]
        uow.write(
            self.entries,
            UpdateOne({"_id": entry_id}, {"$setOnInsert": fields}, upsert=True),
            key=entry_id,
        )

    async def page(
        self,
        customer_id: str,
        *,
        kinds: Sequence[EntryKind] = (),
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[TimelineEntry]:
        """Newest first, keyset-paginated on (occurred_at, _id) so pages never shift."""
        query: dict[str, Any] = {"customer_id": customer_id, **newer_than_cursor(after)}
        if kinds:
            query["kind"] = {"$in": [kind.value for kind in kinds]}
        cursor = self.entries.find(query).sort(NEWEST_FIRST).limit(limit)
        return [_entry(document) async for document in cursor]

    async def export(self, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
        cursor = self.entries.find({"customer_id": {"$in": list(customer_ids)}}).sort(NEWEST_FIRST)
        return [_entry(document).model_dump(mode="json") async for document in cursor]

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        """Keep what happened and when; drop the words that could describe the person."""
        await self.entries.update_many(
            {"customer_id": {"$in": list(customer_ids)}},
            {"$set": {"summary": ERASED, "details": {}}},
            session=session,
        )


def _document(entry_id: str, customer_id: str, happening: Happening) -> dict[str, Any]:
    return {
        "_id": entry_id,
        "customer_id": customer_id,
        "kind": happening.kind.value,
        "occurred_at": happening.occurred_at,
        "summary": happening.summary,
        "details": happening.details,
    }


def _entry(document: dict[str, Any]) -> TimelineEntry:
    return TimelineEntry.model_validate({**document, "id": document["_id"]})


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


async def owner_of_entry(customers: CustomerStore, customer_id: str, uow: UnitOfWork) -> str | None:
    """Whose timeline an event about ``customer_id`` belongs on; None to drop it.

    - A merged profile's events go to the survivor (following ``merged_into``).
    - An erased customer's are dropped: recording them would bring back what erasure
      removed (a complaint's subject, a notification's reason).
    - An id the profiles service has not seen is recorded under that id all the same:
      ids are opaque and other systems may know a customer before profiles does (or
      a profile may be imported later under that id); until a profile with that id
      exists the entries are unreachable through the API, and erasing the id clears them.
    - A merge chain too long to follow (a data error) leaves them with the last profile.
    """
    reached = await follow(customer_id, lambda key: customers.link(uow, key))
    return None if reached.end is End.ERASED else reached.customer_id


@dataclass(frozen=True)
class TimelineRecorder:
    """What filing other services' events on the timeline needs."""

    customers: CustomerStore
    timeline: TimelineStore


routes: Routes[TimelineRecorder] = Routes()


async def load_owners(
    recorder: TimelineRecorder,
    events: Sequence[Event[ComplaintEvent | NotificationEvent]],
    uow: UnitOfWork,
) -> None:
    """The profiles a batch's events are about, and their survivors, in one read (and one
    more per merge step); entries are written without reading the timeline."""
    await recorder.customers.load(uow, [event.payload.customer_key() for event in events])


@routes.on(*RECORDED_EVENTS, load=load_owners)
async def record(
    recorder: TimelineRecorder, event: Event[ComplaintEvent | NotificationEvent], uow: UnitOfWork
) -> None:
    """File a complaint or notification event on the timeline of the customer it is about.

    The entry's id is the event's id, so a redelivered event never adds a second entry
    (the consumer's processed-event marker already skips it; the upsert makes sure).
    """
    happening = describe(event.payload)
    if happening is None:
        return
    owner = await owner_of_entry(recorder.customers, event.payload.customer_key(), uow)
    if owner is None:
        return
    recorder.timeline.add(uow, entry_id=event.id, customer_id=owner, happening=happening)
