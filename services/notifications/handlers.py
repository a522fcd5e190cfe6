"""Notifications use cases: from an event (or a due schedule) to recorded decisions.

Events are applied a batch at a time, in the one unit of work the ``EventConsumer`` opens
for the batch: each route's load step says what its events need (``batch.Batch``), the
batch reads it with one query per collection, and the handlers decide in memory, in the
order of the events (a purchase sees the registration earlier in its batch), recording
what they decided about each message: a pending delivery (due now, or deferred to the end
of the customer's quiet hours), or a suppression with its reason (announced as
``crm.notification.suppressed`` through the outbox). Everything is written at commit, one
``bulk_write`` per collection. Nothing is sent here: the dispatcher sends what is due (and
is woken when a batch recorded something due at once), so a slow channel never blocks the
stream worker. An event delivered again finds its marker and does nothing; and the
ledger's key (the message's subject or source event, rule, channel[, subscription]) keeps
even a replayed decision from adding a second delivery. A message about a business object
(a purchase, a return, a complaint's public reply) is keyed on that object's id, not on the
event's: the same purchase sent again under a new CloudEvent id, in the same batch or a
later one, finds the thank-you already decided and adds nothing.

Unknown customers: a purchase (or any trigger) for a customer id the directory has not
heard of yet is *deferred*, not dropped: the registration may still be on its way on
``crm.customers`` while the purchase came on ``crm.purchases``. The delivery is recorded
without an address; the dispatcher resolves it when due and, if the customer is still
unknown after ``unknown_customer_grace_seconds``, suppresses it with reason
``unknown customer``. A purchase naming only an e-mail address that no customer has is
sent to that address in the default locale. A purchase naming only an external id that
no customer has is rejected (DLQ with the reason): nobody could ever receive it.

This module holds the routes (each event type's load step and handler); what a trigger
decides is ``planning.py``, and the birthday, renewal and daily-report schedules are
``scheduling.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from services.notifications import rules as r
from services.notifications.batch import Batch
from services.notifications.deliveries_store import (
    anonymise,
    cancel_pending,
    move_pending,
    release_waiting,
)
from services.notifications.directory_store import (
    complaint_ended_write,
    complaint_opened_write,
    consent_write,
    customer_from,
    erasure_write,
    merge_writes,
    snapshot_write,
)
from services.notifications.planning import (
    Notifications,
    Trigger,
    iso,
    plan,
    purchase_context,
    purchase_subject,
    reply_subject,
    return_context,
    return_subject,
)
from services.notifications.scheduling import sync_schedules
from services.notifications.scheduling_domain import daily_id, next_daily
from services.notifications.scheduling_store import (
    cancel_write,
    forget_write,
    move_write,
    put_write,
    reactivate_write,
    remember_comment,
    remember_status,
)
from shared.consumer import RejectEvent
from shared.events import Event
from shared.events.complaints import (
    ComplaintClosed,
    ComplaintEvent,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintReplied,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
)
from shared.events.customers import (
    ConsentChanged,
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerSnapshot,
    CustomerUpdated,
    SignInRequested,
)
from shared.events.insights import ChurnRiskChanged
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

# -- what a batch's events need (each route's load step) -----------------------------------

C = TypeVar("C", bound=ComplaintEvent)
S = TypeVar("S", bound=CustomerSnapshot)


async def _load_purchases(
    ctx: Notifications, events: Sequence[Event[PurchaseCompleted]], uow: UnitOfWork
) -> None:
    purchases = [event.payload for event in events]
    ctx.batch(uow).want(
        customers=[p.customer_id for p in purchases if p.customer_id],
        emails=[str(p.customer_email) for p in purchases if not p.customer_id and p.customer_email],
        external_ids=[
            p.customer_external_id
            for p in purchases
            if not p.customer_id and not p.customer_email and p.customer_external_id
        ],
        subjects=[purchase_subject(p.purchase_id) for p in purchases],
    )


async def _load_returns(
    ctx: Notifications, events: Sequence[Event[PurchaseReturned]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        subjects=[return_subject(event.payload.return_id) for event in events],
    )


async def _load_replies(
    ctx: Notifications, events: Sequence[Event[ComplaintReplied]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        subjects=[reply_subject(event.payload.comment_id) for event in events],
        schedules=[daily_id(event.payload.complaint_id) for event in events],
    )


async def _load_complaints(ctx: Notifications, events: Sequence[Event[C]], uow: UnitOfWork) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        events=[event.id for event in events],
        schedules=[daily_id(event.payload.complaint_id) for event in events],
    )


async def _load_churn(
    ctx: Notifications, events: Sequence[Event[ChurnRiskChanged]], uow: UnitOfWork
) -> None:
    customers = [event.payload.customer_id for event in events]
    ctx.batch(uow).want(
        customers=customers, events=[event.id for event in events], marketing_of=customers
    )


async def _load_snapshots(ctx: Notifications, events: Sequence[Event[S]], uow: UnitOfWork) -> None:
    customers = [event.payload.customer_id for event in events]
    ctx.batch(uow).want(customers=customers, schedules_of=customers)


async def _load_sign_ins(
    ctx: Notifications, events: Sequence[Event[SignInRequested]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        events=[event.id for event in events],
    )


async def _load_consents(
    ctx: Notifications, events: Sequence[Event[ConsentChanged]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(customers=[event.payload.customer_id for event in events])


async def _load_merges(
    ctx: Notifications, events: Sequence[Event[CustomerMerged]], uow: UnitOfWork
) -> None:
    sources = [event.payload.source_customer_id for event in events]
    both = [*sources, *(event.payload.customer_id for event in events)]
    ctx.batch(uow).want(customers=both, schedules_of=both, moved_from=sources)


async def _load_erasures(
    ctx: Notifications, events: Sequence[Event[CustomerErased]], uow: UnitOfWork
) -> None:
    customers = [event.payload.customer_id for event in events]
    ctx.batch(uow).want(customers=customers, schedules_of=customers)


# -- event handlers ------------------------------------------------------------------------

routes: Routes[Notifications] = Routes()


def _trigger(event: Event[Any], rule: str, customer_id: str, **extra: Any) -> Trigger:
    return Trigger(
        rule=rule,
        source_event_id=event.id,
        source_event_type=event.type,
        customer_id=customer_id,
        event=event,
        **extra,
    )


@routes.on(PurchaseCompleted, load=_load_purchases)
async def purchase_completed(
    ctx: Notifications, event: Event[PurchaseCompleted], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    purchase = event.payload
    customer_id, fallback = await _purchaser(batch, purchase)
    trigger = _trigger(
        event, r.PURCHASE_THANK_YOU, customer_id,
        context=purchase_context(purchase), fallback_email=fallback,
        subject=purchase_subject(purchase.purchase_id),
    )  # fmt: skip
    await plan(ctx, batch, trigger, ctx.now())


async def _purchaser(batch: Batch, purchase: PurchaseCompleted) -> tuple[str, str | None]:
    """Who bought: (customer id, an e-mail to write to when the customer is unknown)."""
    if purchase.customer_id:
        return purchase.customer_id, None
    if purchase.customer_email:
        found = await batch.find_by_email(str(purchase.customer_email))
        if found is not None:
            return found.id, None
        return f"email:{str(purchase.customer_email).lower()}", str(purchase.customer_email)
    assert purchase.customer_external_id is not None  # the payload's validator ensures one
    found = await batch.find_by_external_id(purchase.customer_external_id)
    if found is None:
        raise RejectEvent(
            f"unknown customer: no customer has external id {purchase.customer_external_id}"
            " and the purchase names no address"
        )
    return found.id, None


@routes.on(PurchaseReturned, load=_load_returns)
async def purchase_returned(
    ctx: Notifications, event: Event[PurchaseReturned], uow: UnitOfWork
) -> None:
    returned = event.payload
    trigger = _trigger(
        event, r.RETURN_CONFIRMATION, returned.customer_id, context=return_context(returned),
        subject=return_subject(returned.return_id),
    )  # fmt: skip
    await plan(ctx, ctx.batch(uow), trigger, ctx.now())


async def _complaint_facts(batch: Batch, complaint_id: str) -> dict[str, Any]:
    """What the service remembers of a complaint (kept with its daily status schedule)."""
    stored = await batch.schedule(daily_id(complaint_id))
    facts = dict(stored.params.get("complaint") or {}) if stored else {}
    facts["complaint_id"] = complaint_id
    return facts


async def _complaint_opened(batch: Batch, customer_id: str, complaint_id: str) -> None:
    """The complaint counts as open for the customer (the survivor, after a merge)."""
    customer = await batch.customer(customer_id)
    target = customer.id if customer is not None else customer_id
    await batch.customer_document(target)
    batch.change_customers(complaint_opened_write(target, complaint_id))


@routes.on(ComplaintOpened, load=_load_complaints)
async def complaint_opened(
    ctx: Notifications, event: Event[ComplaintOpened], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    opened = event.payload
    complaint = {
        "complaint_id": opened.complaint_id,
        "subject": opened.subject,
        "category": opened.category,
        "priority": opened.priority.value,
        "first_response_due_at": iso(opened.first_response_due_at),
        "resolution_due_at": iso(opened.resolution_due_at),
        "opened_at": iso(opened.opened_at),
    }
    await _complaint_opened(batch, opened.customer_id, opened.complaint_id)
    trigger = _trigger(event, r.COMPLAINT_ACKNOWLEDGEMENT, opened.customer_id, context=complaint)
    await plan(ctx, batch, trigger, ctx.now())
    await start_daily_status(ctx, batch, opened.customer_id, {**complaint, "status": "open"})


async def start_daily_status(
    ctx: Notifications, batch: Batch, customer_id: str, complaint: Mapping[str, Any]
) -> None:
    now = ctx.now()
    customer = await batch.customer(customer_id)
    target = customer.id if customer else customer_id
    config = await batch.rule(r.COMPLAINT_DAILY_STATUS)
    at = r.local_time(config)
    time_zone = ctx.time_zone_of(customer)
    due, day = next_daily(at, time_zone, now)
    params = {
        "complaint": dict(complaint),
        "time_zone": time_zone,
        "local_time": at.strftime("%H:%M"),
    }
    schedule_id = daily_id(str(complaint["complaint_id"]))
    await batch.schedule(schedule_id)
    batch.change_schedules(
        put_write(
            schedule_id, rule=r.COMPLAINT_DAILY_STATUS, customer_id=target, due_at=due,
            occurrence=day, params=params, now=now,
        )
    )  # fmt: skip


@routes.on(ComplaintStatusChanged, load=_load_complaints)
async def complaint_status_changed(
    ctx: Notifications, event: Event[ComplaintStatusChanged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    changed = event.payload
    await batch.schedule(daily_id(changed.complaint_id))
    batch.change_schedules(
        remember_status(changed.complaint_id, changed.to_status.value, changed.public_comment)
    )
    if not r.triggered_by(event.type, changed.model_dump(mode="json")):
        return
    facts = await _complaint_facts(batch, changed.complaint_id)
    context = {
        "complaint_id": changed.complaint_id,
        "subject": facts.get("subject"),
        "from_status": changed.from_status.value,
        "to_status": changed.to_status.value,
        "public_comment": changed.public_comment,
        "changed_at": iso(changed.changed_at),
    }
    trigger = _trigger(event, r.COMPLAINT_PROGRESS, changed.customer_id, context=context)
    await plan(ctx, batch, trigger, ctx.now())


@routes.on(ComplaintReplied, load=_load_replies)
async def complaint_replied(
    ctx: Notifications, event: Event[ComplaintReplied], uow: UnitOfWork
) -> None:
    """A staff member's public reply reaches the customer as a progress message (the same
    rule, preferences and consent as a status change with a public comment); complaints
    publishes no event for an internal note."""
    batch = ctx.batch(uow)
    replied = event.payload
    await batch.schedule(daily_id(replied.complaint_id))
    batch.change_schedules(remember_comment(replied.complaint_id, replied.public_comment))
    facts = await _complaint_facts(batch, replied.complaint_id)
    status = facts.get("status")
    context = {
        "complaint_id": replied.complaint_id,
        "subject": facts.get("subject"),
        "from_status": status,
        "to_status": status,  # a reply alone leaves the status as it was (None: not known)
        "public_comment": replied.public_comment,
        "changed_at": iso(replied.replied_at),
    }
    for rule in r.triggered_by(event.type, replied.model_dump(mode="json")):
        trigger = _trigger(
            event, rule, replied.customer_id, context=context,
            subject=reply_subject(replied.comment_id),
        )  # fmt: skip
        await plan(ctx, batch, trigger, ctx.now())


@routes.on(ComplaintResolved, load=_load_complaints)
async def complaint_resolved(
    ctx: Notifications, event: Event[ComplaintResolved], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    resolved = event.payload
    facts = await _complaint_facts(batch, resolved.complaint_id)
    await _complaint_ended(ctx, batch, resolved.complaint_id, "resolved")
    feedback_url = f"{ctx.portal_url.rstrip('/')}/complaints/{resolved.complaint_id}/feedback"
    context = {
        "complaint_id": resolved.complaint_id,
        "subject": facts.get("subject"),
        "resolution_type": resolved.resolution_type.value,
        "summary": resolved.summary,
        "refund_amount": (
            format(resolved.refund_amount, "f") if resolved.refund_amount is not None else None
        ),
        "currency": resolved.currency,
        "purchase_id": resolved.purchase_id,
        "resolved_at": iso(resolved.resolved_at),
        "feedback_url": feedback_url,
    }
    trigger = _trigger(event, r.COMPLAINT_RESOLVED, resolved.customer_id, context=context)
    await plan(ctx, batch, trigger, ctx.now())


async def _complaint_ended(ctx: Notifications, batch: Batch, complaint_id: str, why: str) -> None:
    batch.change_customers(complaint_ended_write(complaint_id))
    await batch.schedule(daily_id(complaint_id))
    batch.change_schedules(cancel_write({"_id": daily_id(complaint_id)}, why, ctx.now()))


@routes.on(ComplaintClosed, load=_load_complaints)
async def complaint_closed(
    ctx: Notifications, event: Event[ComplaintClosed], uow: UnitOfWork
) -> None:
    await _complaint_ended(ctx, ctx.batch(uow), event.payload.complaint_id, "closed")


@routes.on(ComplaintReopened, load=_load_complaints)
async def complaint_reopened(
    ctx: Notifications, event: Event[ComplaintReopened], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    reopened = event.payload
    await _complaint_opened(batch, reopened.customer_id, reopened.complaint_id)
    facts = await _complaint_facts(batch, reopened.complaint_id)
    facts["status"] = "reopened"
    await start_daily_status(ctx, batch, reopened.customer_id, facts)


@routes.on(ComplaintSlaBreached, load=_load_complaints)
async def sla_breached(
    ctx: Notifications, event: Event[ComplaintSlaBreached], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    breach = event.payload
    facts = await _complaint_facts(batch, breach.complaint_id)
    context = {
        "complaint_id": breach.complaint_id,
        "subject": facts.get("subject"),
        "clock": breach.clock.value,
        "severity": breach.severity.value,
        "due_at": iso(breach.due_at),
        "detected_at": iso(breach.detected_at),
        "priority": breach.priority.value,
        "escalated_to": breach.escalated_to,
    }
    for rule in r.triggered_by(event.type, breach.model_dump(mode="json")):
        trigger = _trigger(
            event, rule, breach.customer_id, context=context, team=breach.escalated_to
        )
        await plan(ctx, batch, trigger, ctx.now())


@routes.on(ChurnRiskChanged, load=_load_churn)
async def churn_risk_changed(
    ctx: Notifications, event: Event[ChurnRiskChanged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    churn = event.payload
    context = {
        "level": churn.level.value,
        "previous_level": churn.previous_level.value if churn.previous_level else None,
        "score": churn.score,
        "reasons": list(churn.reasons),
        "changed_at": iso(churn.changed_at),
    }
    for rule in r.triggered_by(event.type, churn.model_dump(mode="json")):
        trigger = _trigger(event, rule, churn.customer_id, context=context)
        await plan(ctx, batch, trigger, ctx.now())


@routes.on(SignInRequested, load=_load_sign_ins)
async def sign_in_requested(
    ctx: Notifications, event: Event[SignInRequested], uow: UnitOfWork
) -> None:
    """The link goes by e-mail at once, to the address it was asked for, in the language
    it was asked in; a link blanked by an erasure before it was published goes nowhere."""
    request = event.payload
    if not request.sign_in_url.startswith(("https://", "http://")):
        return
    valid_for = request.expires_at - request.requested_at
    context = {
        "sign_in_url": request.sign_in_url,
        "expires_at": iso(request.expires_at),
        "valid_minutes": max(round(valid_for.total_seconds() / 60), 1),
    }
    trigger = _trigger(
        event, r.SIGN_IN_LINK, request.customer_id, context=context,
        address=str(request.email) if request.email else None, locale=request.locale,
    )  # fmt: skip
    await plan(ctx, ctx.batch(uow), trigger, ctx.now())


@routes.on(CustomerRegistered, CustomerUpdated, load=_load_snapshots)
async def customer_snapshot(
    ctx: Notifications, event: Event[CustomerSnapshot], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    snapshot = event.payload
    stored = await batch.customer_document(snapshot.customer_id)
    write = snapshot_write(stored, snapshot)
    if write is None:
        return  # older than what is known, or the customer was erased
    batch.change_customers(write)
    after = await batch.customer_document(snapshot.customer_id)
    assert after is not None
    customer = customer_from(after)
    now = ctx.now()
    await sync_schedules(ctx, batch, customer, now)
    if stored is None or not customer_from(stored).registered:
        batch.change_deliveries(*release_waiting(customer.id, now))


@routes.on(ConsentChanged, load=_load_consents)
async def consent_changed(
    ctx: Notifications, event: Event[ConsentChanged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    consent = event.payload
    stored = await batch.customer_document(consent.customer_id)
    write = consent_write(
        stored, consent.customer_id, consent.channel, consent.purpose, consent.granted
    )
    if write is not None:
        batch.change_customers(write)


@routes.on(CustomerMerged, load=_load_merges)
async def customer_merged(
    ctx: Notifications, event: Event[CustomerMerged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    merged = event.payload
    source, target, undo = merged.source_customer_id, merged.customer_id, merged.undone
    now = ctx.now()
    batch.want(schedules_of=[source, target], moved_from=[source])
    await batch.ready()
    source_document = await batch.customer_document(source)
    await batch.customer_document(target)
    batch.change_customers(*merge_writes(source_document, source, target, undone=undo))
    batch.change_deliveries(*move_pending(source, target, undo=undo))
    daily = {"rule": r.COMPLAINT_DAILY_STATUS}
    personal = {"rule": {"$in": [r.BIRTHDAY_GREETING, r.RENEWAL_REMINDER]}}
    if undo:
        # The source's own birthday and contracts come back; its complaints go back too.
        batch.change_schedules(
            reactivate_write({"customer_id": source, **personal}, "merged", now),
            move_write({"moved_from": source, **daily}, source, None),
        )
    else:
        # The survivor's profile (updated by profiles) carries what the source had.
        batch.change_schedules(
            cancel_write({"customer_id": source, **personal}, "merged", now),
            move_write({"customer_id": source, **daily}, target, source),
        )
    if ctx.inbox is not None:
        await ctx.inbox.move_customer(source, target, undo=undo, session=batch.session)


@routes.on(CustomerErased, load=_load_erasures)
async def customer_erased(
    ctx: Notifications, event: Event[CustomerErased], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    erased = event.payload
    customer_id, now = erased.customer_id, ctx.now()
    batch.want(schedules_of=[customer_id])
    await batch.ready()
    await batch.customer_document(customer_id)
    batch.change_customers(erasure_write(customer_id, erased.erased_at))
    batch.change_deliveries(
        *cancel_pending(customer_id, "customer erased", now), *anonymise(customer_id, now)
    )
    batch.change_schedules(forget_write(customer_id, now))
    batch.forget_preferences(customer_id)
    await ctx.outbox.erase(uow.session, [customer_id])
    if ctx.inbox is not None:
        await ctx.inbox.erase_customer(customer_id, session=uow.session)


@routes.after_batch
async def _wake_the_dispatcher(
    ctx: Notifications, events: Sequence[Event[Any]], uow: UnitOfWork
) -> None:
    """What the batch recorded as due now goes out without waiting for the next poll."""
    if ctx.batch(uow).due_now:
        ctx.wake_dispatcher()
