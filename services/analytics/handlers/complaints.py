"""Complaint events (``crm.complaints``): each complaint's fact, however its events
arrive, and the satisfaction feedback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.analytics.handlers.context import Analytics
from services.analytics.store import stored_time
from shared.events import Event
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintEvent,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatus,
    ComplaintStatusChanged,
    SlaSeverity,
)
from shared.mongo import Document
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

COMPLAINT_TYPES = (
    ComplaintOpened,
    ComplaintAcknowledged,
    ComplaintStatusChanged,
    ComplaintResolved,
    ComplaintReopened,
    ComplaintClosed,
    ComplaintSlaBreached,
)


routes: Routes[Analytics] = Routes()


def _earliest(document: Document, field: str, moment: datetime) -> None:
    """What ``$min`` does: keep the earliest of the stored time and ``moment``."""
    if field not in document or (document[field] is not None and moment < document[field]):
        document[field] = moment


def _also(document: Document, field: str, value: Any) -> None:
    """What ``$addToSet`` does."""
    held = list(document.get(field) or ())
    document[field] = held if value in held else [*held, value]


def complaint_after(
    before: Document | None, payload: ComplaintEvent, named: str, customer_id: str
) -> Document | None:
    """The complaint fact once ``payload`` is applied to it (``None``: it changes
    nothing). Every event owns its fields, or keeps the earliest time or a set of times,
    so the order the events arrive in does not matter."""
    document: Document = dict(before) if before else {"_id": payload.complaint_id, "named": named}
    document["customer_id"] = customer_id
    if isinstance(payload, ComplaintOpened):
        document.update(
            opened_at=stored_time(payload.opened_at),
            first_response_due_at=_maybe_time(payload.first_response_due_at),
            resolution_due_at=_maybe_time(payload.resolution_due_at),
            priority=payload.priority.value,
            category=payload.category,
        )
    elif isinstance(payload, ComplaintAcknowledged):
        _earliest(document, "acknowledged_at", stored_time(payload.acknowledged_at))
    elif isinstance(payload, ComplaintStatusChanged):
        if payload.to_status is not ComplaintStatus.WAITING_ON_CUSTOMER:
            return None
        document["waited_on_customer"] = True
    elif isinstance(payload, ComplaintResolved):
        resolved_at = stored_time(payload.resolved_at)
        _also(document, "resolved", resolved_at)
        _earliest(document, "first_resolved_at", resolved_at)
    elif isinstance(payload, ComplaintReopened):
        _also(document, "reopened", stored_time(payload.reopened_at))
    elif isinstance(payload, ComplaintClosed):
        _earliest(document, "closed_at", stored_time(payload.closed_at))
    elif isinstance(payload, ComplaintSlaBreached):
        if payload.severity is not SlaSeverity.BREACH:
            return None
        _also(document, "breaches", payload.clock.value)
        due = dict(document.get("breach_due") or {})
        _earliest(due, payload.clock.value, stored_time(payload.due_at))
        document["breach_due"] = due
    return document


def _maybe_time(moment: datetime | None) -> datetime | None:
    return None if moment is None else stored_time(moment)


async def load_complaints(
    ctx: Analytics, events: Sequence[Event[ComplaintEvent]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    batch.want_names(event.payload.customer_key() for event in events)
    batch.want_facts("complaints", "_id", (event.payload.complaint_id for event in events))


@routes.on(*COMPLAINT_TYPES, load=load_complaints)
async def on_complaint(ctx: Analytics, event: Event[ComplaintEvent], uow: UnitOfWork) -> None:
    batch = await ctx.ready(uow)
    payload = event.payload
    named, customer_id = await batch.attribution(uow, payload.customer_key())
    complaints = batch.facts["complaints"]
    before = await complaints.get(uow, payload.complaint_id)
    document = complaint_after(before, payload, named, customer_id)
    if document is None:
        return
    if before is None:
        complaints.add(document)
    else:
        complaints.put(document)
    batch.touch(customer_id, "complaints", payload.complaint_id)
    moved_from = (before or {}).get("customer_id")
    if moved_from is not None and moved_from != customer_id:  # rebuilt whole: it lost one
        batch.touch(str(moved_from))


async def load_feedback(
    ctx: Analytics, events: Sequence[Event[ComplaintFeedbackReceived]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want_names(event.payload.customer_id for event in events)


@routes.on(ComplaintFeedbackReceived, load=load_feedback)
async def on_feedback_received(
    ctx: Analytics, event: Event[ComplaintFeedbackReceived], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    feedback = event.payload
    named, customer_id = await batch.attribution(uow, feedback.customer_id)
    batch.facts["feedback"].add(
        {
            "_id": event.id,
            "named": named,
            "customer_id": customer_id,
            "complaint_id": feedback.complaint_id,
            "at": stored_time(feedback.received_at),
            "csat": feedback.csat,
            "nps": feedback.nps,
        }
    )
    batch.touch(customer_id, "feedback", event.id)
