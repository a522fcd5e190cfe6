"""Complaints use cases: each takes what it needs and does one thing a user asked for.

A change is decided by the pure domain on the complaint as stored, and written together
with the events announcing it (transactional outbox), guarded by the complaint's version:
when another writer got there first, the decision is taken again on the fresh state.
That is also what makes the SLA watcher announce each warning and breach exactly once,
even with several replicas or a restart around the deadline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.complaints.calendar import DEFAULT_CALENDAR, BusinessCalendar
from services.complaints.domain import (
    conversation,
    deadlines,
    erasure,
    lifecycle,
    satisfaction,
    triage,
)
from services.complaints.domain.lifecycle import OpenComplaint, Resolve
from services.complaints.domain.model import Actor, Change, Complaint, Visibility
from services.complaints.domain.query import ComplaintQuery
from services.complaints.domain.satisfaction import RecordFeedback
from services.complaints.domain.sla import SlaPolicy, SlaRules
from services.complaints.domain.triage import Reclassify
from services.complaints.store import (
    ComplaintStore,
    CustomerDirectory,
    SlaConfigStore,
)
from shared.auth import ensure_customer_access
from shared.background import Periodic
from shared.clock import Clock, to_millisecond, utc_now
from shared.errors import Gone, InvalidInput, NotFound
from shared.events import Event, new_event
from shared.events.base import EventPayload
from shared.events.complaints import ComplaintStatus
from shared.events.customers import CustomerErased, CustomerMerged
from shared.mongo import MongoClient, Session, in_transaction, in_transaction_retrying
from shared.outbox import Outbox, OutboxRelay
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

SOURCE = "/rapport/complaints"


class StaleComplaint(Exception):
    """Another writer changed the complaint between reading and writing it."""


@dataclass
class Complaints:
    """What the complaints use cases need: stores, outbox, SLA settings and the clock."""

    client: MongoClient
    store: ComplaintStore
    config: SlaConfigStore
    outbox: Outbox
    relay: OutboxRelay
    directory: CustomerDirectory
    warning_share: float = 0.8
    escalation_team: str = "escalations"
    reopen_window: timedelta = timedelta(days=14)
    clock: Clock = utc_now

    def now(self) -> datetime:
        """The clock's time at the store's precision (milliseconds)."""
        return to_millisecond(self.clock())

    async def rules(self, session: Session | None = None) -> SlaRules:
        return SlaRules(
            policies=await self.config.all_policies(session),
            calendars=await self.config.all_calendars(session),
            warning_share=self.warning_share,
            escalation_team=self.escalation_team,
            reopen_window=self.reopen_window,
        )


def _events(payloads: list[EventPayload], now: datetime) -> list[Event[Any]]:
    return [new_event(payload, source=SOURCE, time=now) for payload in payloads]


Decision = Callable[[Complaint, SlaRules, datetime], Change]


async def _change(
    ctx: Complaints,
    complaint_id: str,
    decide: Decision,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Complaint:
    """Decide on the stored complaint and store the outcome with its events, retrying
    the decision when a concurrent writer won."""

    async def work(session: Session) -> Complaint:
        before = await ctx.store.get(complaint_id, session)
        if before is None:
            raise NotFound(f"no complaint {complaint_id}")
        if actor is not None:
            ensure_may_access(actor, before)
        moment = now or ctx.now()
        after, payloads = decide(before, await ctx.rules(session), moment)
        if after is before:
            return before
        if not await ctx.store.replace(before, after, session):
            raise StaleComplaint(complaint_id)
        await ctx.outbox.add(session, _events(payloads, moment))
        return after.model_copy(update={"version": before.version + 1})

    result = await in_transaction_retrying(ctx.client, work, retry_on=(StaleComplaint,), attempts=5)
    ctx.relay.wake()
    return result


def ensure_may_access(actor: Actor, complaint: Complaint) -> None:
    """The complaint's owner checked by the shared rule (``shared.auth``): staff and
    systems reach every complaint; a customer only its own customer's."""
    ensure_customer_access(
        complaint.customer_id,
        staff=not actor.is_customer,
        own_customer_id=actor.customer_id,
        what="complaints",
    )


async def open_complaint(ctx: Complaints, command: OpenComplaint, actor: Actor) -> Complaint:
    filed_under, erased = await ctx.directory.current_id(command.customer_id)
    if erased:
        raise Gone(f"customer {command.customer_id} was erased")
    if filed_under != command.customer_id and not actor.is_customer:
        # The customer was merged: new complaints go where the old ones went.
        command = command.model_copy(update={"customer_id": filed_under})
    now = ctx.now()
    complaint, payloads = lifecycle.open_complaint(command, actor, await ctx.rules(), now)

    async def store(session: Session) -> None:
        await ctx.store.insert(complaint, session)
        await ctx.outbox.add(session, _events(payloads, now))

    await in_transaction(ctx.client, store)
    ctx.relay.wake()
    return complaint


async def list_complaints(
    ctx: Complaints,
    query: ComplaintQuery,
    actor: Actor,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[Complaint], bool]:
    """A page of the complaints the actor may see (a customer: its own), and whether
    there are more."""
    found = await ctx.store.search(query.for_actor(actor), ctx.now(), after, limit + 1)
    return [c.visible_to(actor) for c in found[:limit]], len(found) > limit


async def get_complaint(ctx: Complaints, complaint_id: str, actor: Actor) -> Complaint:
    complaint = await ctx.store.get(complaint_id)
    if complaint is None:
        raise NotFound(f"no complaint {complaint_id}")
    ensure_may_access(actor, complaint)
    return complaint.visible_to(actor)


async def acknowledge(ctx: Complaints, complaint_id: str, actor: Actor) -> Complaint:
    return await _change(
        ctx, complaint_id, lambda c, rules, now: lifecycle.acknowledge(c, actor, rules, now), actor
    )


async def change_status(
    ctx: Complaints,
    complaint_id: str,
    to: ComplaintStatus,
    actor: Actor,
    public_comment: str | None = None,
) -> Complaint:
    return await _change(
        ctx,
        complaint_id,
        lambda c, rules, now: lifecycle.change_status(c, to, actor, rules, now, public_comment),
        actor,
    )


async def resolve(ctx: Complaints, complaint_id: str, command: Resolve, actor: Actor) -> Complaint:
    return await _change(
        ctx,
        complaint_id,
        lambda c, rules, now: lifecycle.resolve(c, command, actor, rules, now),
        actor,
    )


async def reopen(ctx: Complaints, complaint_id: str, actor: Actor, reason: str | None) -> Complaint:
    return await _change(
        ctx,
        complaint_id,
        lambda c, rules, now: lifecycle.reopen(c, actor, rules, now, reason),
        actor,
    )


async def close(ctx: Complaints, complaint_id: str, actor: Actor) -> Complaint:
    return await _change(
        ctx, complaint_id, lambda c, _rules, now: lifecycle.close(c, actor, now), actor
    )


async def comment(
    ctx: Complaints,
    complaint_id: str,
    actor: Actor,
    visibility: Visibility,
    text: str,
) -> Complaint:
    return await _change(
        ctx,
        complaint_id,
        lambda c, rules, now: conversation.comment(c, actor, visibility, text, rules, now),
        actor,
    )


async def assign(
    ctx: Complaints, complaint_id: str, actor: Actor, agent: str | None, team: str | None
) -> Complaint:
    return await _change(
        ctx, complaint_id, lambda c, _rules, now: triage.assign(c, actor, now, agent, team), actor
    )


async def reclassify(
    ctx: Complaints, complaint_id: str, command: Reclassify, actor: Actor
) -> Complaint:
    return await _change(
        ctx,
        complaint_id,
        lambda c, rules, now: triage.reclassify(c, command, actor, rules, now),
        actor,
    )


async def record_feedback(
    ctx: Complaints, complaint_id: str, command: RecordFeedback, actor: Actor
) -> Complaint:
    return await _change(
        ctx,
        complaint_id,
        lambda c, _rules, now: satisfaction.record_feedback(c, command, actor, now),
        actor,
    )


async def check_deadlines(ctx: Complaints, now: datetime) -> int:
    """Announce every SLA warning and breach due by ``now`` (and close complaints whose
    reopen window has passed); returns how many events that took."""
    now = now.astimezone(UTC)
    announced: dict[str, int] = {}

    def decide(complaint: Complaint, rules: SlaRules, moment: datetime) -> Change:
        after, payloads = deadlines.fire_alerts(complaint, rules, moment)
        announced[complaint.id] = len(payloads)  # the decision that won counts
        return after, payloads

    for complaint_id in await ctx.store.due_for_alerts(now, now - ctx.reopen_window):
        with contextlib.suppress(NotFound):
            await _change(ctx, complaint_id, decide, now=now)
    return sum(announced.values())


async def put_calendar(ctx: Complaints, name: str, calendar: BusinessCalendar) -> int:
    """Store the calendar and work out again the deadlines of the open complaints that
    count time in it; returns how many were recomputed."""
    await ctx.config.put_calendar(name, calendar)
    ids = await ctx.store.ids_on_calendar(name)
    for complaint_id in ids:
        await _change(
            ctx,
            complaint_id,
            lambda c, rules, _now: (deadlines.recompute_deadlines(c, rules), []),
        )
    return len(ids)


async def get_calendar(ctx: Complaints, name: str) -> BusinessCalendar:
    calendars = await ctx.config.all_calendars()
    if name not in calendars and name != DEFAULT_CALENDAR:
        raise NotFound(f"no SLA calendar {name}")
    return calendars.get(name) or BusinessCalendar()


async def put_policy(ctx: Complaints, policy: SlaPolicy) -> SlaPolicy:
    """New complaints (and reclassified ones) use it; running clocks keep their targets."""
    if (
        policy.calendar != DEFAULT_CALENDAR
        and policy.calendar not in await ctx.config.all_calendars()
    ):
        raise InvalidInput(f"no SLA calendar {policy.calendar}; PUT it first")
    await ctx.config.put_policy(policy)
    return policy


class Watcher(Periodic):
    """Runs :func:`check_deadlines` every ``interval`` seconds in the background."""

    def __init__(self, ctx: Complaints, interval: float) -> None:
        super().__init__("complaints-sla-watcher", interval, self._check)
        self.ctx = ctx

    async def _check(self) -> bool:
        await check_deadlines(self.ctx, self.ctx.now())
        return False


routes: Routes[Complaints] = Routes()


@routes.on(CustomerMerged)
async def customer_merged(ctx: Complaints, event: Event[CustomerMerged], uow: UnitOfWork) -> None:
    """A merged customer's complaints go to the survivor (and back on undo)."""
    merged = event.payload
    await ctx.store.move_customer(
        merged.source_customer_id, merged.customer_id, uow.session, undo=merged.undone
    )
    await ctx.directory.record_merge(
        uow.session, merged.source_customer_id, merged.customer_id, undone=merged.undone
    )


@routes.on(CustomerErased)
async def customer_erased(ctx: Complaints, event: Event[CustomerErased], uow: UnitOfWork) -> None:
    """An erased customer's complaints are anonymised, published copies included."""
    erased = event.payload
    session = uow.session
    now = ctx.now()
    await ctx.directory.mark_erased(session, erased.customer_id, erased.erased_at)
    for complaint_id in await ctx.store.ids_of_customer(erased.customer_id, session):
        before = await ctx.store.get(complaint_id, session)
        if before is None or before.erased:
            continue
        if not await ctx.store.replace(before, erasure.anonymise(before, now), session):
            raise StaleComplaint(complaint_id)  # the consumer retries the event
    await ctx.outbox.erase(session, [erased.customer_id])
