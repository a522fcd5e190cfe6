"""Analytics use cases: project events into read models, keep each customer's insight, and
announce segment and churn-risk changes (through the outbox, only on change).

Each event handler runs inside the consumer's transaction (with the event id recorded),
so a redelivered event changes nothing. A customer's summary is rebuilt from that
customer's facts and judged with the injected clock; the periodic :class:`Recomputer`
judges everyone again, because overdue-ness and the population's quintiles move with time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from services.analytics import domain
from services.analytics.domain import Insight, Population, Summary
from services.analytics.store import AnalyticsStore, is_identity_key
from shared.clock import Clock, utc_now
from shared.consumer import Handler, RejectEvent
from shared.events import Event, new_event
from shared.events.base import EventPayload
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatus,
    ComplaintStatusChanged,
    SlaSeverity,
)
from shared.events.customers import (
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerSnapshot,
    CustomerUpdated,
)
from shared.events.insights import ChurnRiskChanged, RfmScores, RiskLevel, SegmentChanged
from shared.events.notifications import (
    NotificationEvent,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.lease import Lease
from shared.mongo import Document, MongoClient, Session, in_transaction
from shared.outbox import Outbox, OutboxRelay

log = logging.getLogger(__name__)

SOURCE = "/rapport/analytics"
ANONYMOUS_PREFIX = "anonymous-"
POPULATION_TTL = 2.0


@dataclass
class Analytics:
    """What the analytics use cases need: the store, the outbox and the clock."""

    client: MongoClient
    store: AnalyticsStore
    outbox: Outbox
    relay: OutboxRelay | None = None
    clock: Clock = utc_now
    announce: bool = True  # a replay rebuilds figures but announces nothing
    # Judge everyone again soon (the recomputer's wake) once the buyers have grown by this
    # fraction since the population was last judged; 0 leaves it to the periodic run.
    regrade_growth: float = 0.0
    regrade: Callable[[], None] | None = None
    new_buyers: int = 0
    # The judged population, read again at most every POPULATION_TTL (monotonic seconds):
    # it changes once a recompute, and every event needs it.
    _population: tuple[float, Population] | None = field(default=None, init=False, repr=False)

    def now(self) -> datetime:
        moment = self.clock().astimezone(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    async def population(self, session: Session) -> Population:
        cached = self._population
        if cached is not None and time.monotonic() - cached[0] < POPULATION_TTL:
            return cached[1]
        population = await self.store.population(session)
        self._population = (time.monotonic(), population)
        return population

    def judged(self, population: Population) -> None:
        """The population a recompute judged everyone against, now the current one."""
        self._population = (time.monotonic(), population)

    def noticed_new_buyer(self, population: Population) -> None:
        """A customer bought for the first time: past a growth of ``regrade_growth`` of the
        judged population, its quintiles are stale, so everyone is judged again soon."""
        self.new_buyers += 1
        if self.regrade is None or self.regrade_growth <= 0:
            return
        if self.new_buyers >= max(1.0, population.size * self.regrade_growth):
            self.regrade()

    async def publish(self, session: Session, payloads: list[EventPayload], now: datetime) -> None:
        if self.announce and payloads:
            await self.outbox.add(
                session, [new_event(p, source=SOURCE, time=now) for p in payloads]
            )


# Judging a customer


def _changes(
    customer_id: str, before: Document | None, insight: Insight, now: datetime
) -> tuple[dict[str, Any], list[EventPayload]]:
    """The insight fields to store and the events announcing what changed."""
    old = (before or {}).get("insight") or {}
    stored = insight.to_document()
    stored["segment_changed_at"] = old.get("segment_changed_at")
    stored["churn_changed_at"] = old.get("churn_changed_at")
    payloads: list[EventPayload] = []
    scores = insight.rfm or domain.Rfm(1, 1, 1)
    if old.get("segment") != insight.segment.value:
        stored["segment_changed_at"] = now
        payloads.append(
            SegmentChanged(
                customer_id=customer_id,
                previous_segment=old.get("segment"),
                segment=insight.segment.value,
                loyalty_tier=insight.loyalty_tier.value,
                rfm=RfmScores(
                    recency=scores.recency, frequency=scores.frequency, monetary=scores.monetary
                ),
                changed_at=now,
            )
        )
    previous_level = RiskLevel(old.get("churn_level") or RiskLevel.LOW)
    if previous_level is not insight.churn.level:
        stored["churn_changed_at"] = now
        payloads.append(
            ChurnRiskChanged(
                customer_id=customer_id,
                previous_level=previous_level,
                level=insight.churn.level,
                score=insight.churn.score,
                reasons=list(insight.churn.reasons),
                changed_at=now,
            )
        )
    return stored, payloads


def _same(before: Document | None, stored: dict[str, Any]) -> bool:
    old = (before or {}).get("insight")
    return old is not None and all(old.get(key) == value for key, value in stored.items())


async def refresh(
    ctx: Analytics, session: Session, customer_id: str, now: datetime, changed: str | None = None
) -> None:
    """Rebuild the customer's summary from its facts (only the ``changed`` kind of fact
    when it has a stored one: every other kind's facts call for a refresh as they change),
    judge it, announce what changed."""
    if customer_id.startswith(ANONYMOUS_PREFIX) or is_identity_key(customer_id):
        return
    before = await ctx.store.customer(customer_id, session)
    if before is not None and (before.get("erased") or before.get("merged_into")):
        await ctx.store.customers.update_one(
            {"_id": customer_id},
            {"$set": {"summary": None, "insight": None}, "$inc": {"version": 1}},
            session=session,
        )
        return
    stored_summary = (before or {}).get("summary")
    known = None if stored_summary is None else Summary.from_document(stored_summary)
    summary = await ctx.store.summary_of(customer_id, session, known=known, changed=changed)
    population = await ctx.population(session)
    registered_at = (before or {}).get("registered_at")
    insight = domain.evaluate(summary, population, registered_at, now)
    stored, payloads = _changes(customer_id, before, insight, now)
    if summary.purchases and not ((before or {}).get("summary") or {}).get("purchases"):
        ctx.noticed_new_buyer(population)
    await ctx.store.customers.update_one(
        {"_id": customer_id},
        {
            "$set": {"summary": summary.to_document(), "insight": stored},
            "$setOnInsert": {"name": None, "registered_at": None, "merged_into": None},
            "$inc": {"version": 1},
        },
        upsert=True,
        session=session,
    )
    await ctx.publish(session, payloads, now)


# Event handlers


def _payload(event: Event[Any], kind: type[EventPayload]) -> Any:
    payload = event.payload
    assert isinstance(payload, kind)
    return payload


def _named(purchase: PurchaseCompleted) -> str:
    """How a purchase names its buyer: the customer id, else an external id or e-mail,
    which a profile on ``crm.customers`` later ties to a customer."""
    if purchase.customer_id:
        return purchase.customer_id
    if purchase.customer_external_id:
        system, _, value = purchase.customer_external_id.partition(":")
        return f"external:{system}:{value}"
    return f"email:{(purchase.customer_email or '').strip().lower()}"


async def _attribution(store: AnalyticsStore, named: str, session: Session) -> tuple[str, str]:
    """The id a new fact keeps as named, and the customer it counts for; a fact about an
    erased customer keeps neither its id."""
    customer_id = await store.resolve(named, session)
    if customer_id.startswith(ANONYMOUS_PREFIX):
        return customer_id, customer_id
    return named, customer_id


async def on_customer_snapshot(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    snapshot = _payload(event, CustomerSnapshot)
    before = await store.customer(snapshot.customer_id, session)
    if before is not None and before.get("erased"):
        return
    name = snapshot.preferred_name or " ".join(
        part for part in (snapshot.given_name, snapshot.family_name) if part
    )
    await store.customers.update_one(
        {"_id": snapshot.customer_id},
        {
            "$set": {"name": name or None, "registered_at": snapshot.created_at},
            "$setOnInsert": {"merged_into": None},
        },
        upsert=True,
        session=session,
    )
    keys = [f"email:{email.lower()}" for email in snapshot.emails]
    keys += [f"external:{system}:{value}" for system, value in snapshot.external_ids.items()]
    await store.record_identities(snapshot.customer_id, keys, session)
    touched = await store.reattribute(keys, session)  # purchases that named these
    now = ctx.now()
    for customer_id in sorted(touched | {snapshot.customer_id}):
        await refresh(ctx, session, customer_id, now)


async def on_customer_merged(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    merged = _payload(event, CustomerMerged)
    survivor, source = merged.customer_id, merged.source_customer_id
    if survivor == source:
        raise RejectEvent("a customer cannot be merged into itself")
    names = await store.named_for(source, session) | await store.named_for(survivor, session)
    await store.customers.update_one(
        {"_id": source},
        {
            "$set": {"merged_into": None if merged.undone else survivor},
            "$setOnInsert": {"name": None, "registered_at": None},
        },
        upsert=True,
        session=session,
    )
    touched = await store.reattribute(names, session)
    now = ctx.now()
    for customer_id in sorted(touched | {survivor, source}):
        await refresh(ctx, session, customer_id, now)


async def on_customer_erased(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    erased = _payload(event, CustomerErased)
    customer_id = erased.customer_id
    before = await store.customer(customer_id, session)
    if before is not None and before.get("erased"):
        return
    token = f"{ANONYMOUS_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, event.id).hex[:16]}"
    names = await store.named_for(customer_id, session)
    # Aggregates keep counting (registered_at stays for "new customers"); who it was goes.
    await store.customers.replace_one(
        {"_id": customer_id},
        {
            "_id": customer_id,
            "erased": True,
            "anonymous_id": token,
            "erased_at": erased.erased_at,
            "registered_at": (before or {}).get("registered_at"),
            "merged_into": None,
            "name": None,
            "summary": None,
            "insight": None,
        },
        upsert=True,
        session=session,
    )
    for name in names:
        await store.anonymise_facts(name, token, session)
    await store.identities.delete_many({"customer_id": customer_id}, session=session)
    await ctx.outbox.forget(session, [customer_id], lambda payload: payload)


async def on_purchase_completed(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    purchase = _payload(event, PurchaseCompleted)
    named = _named(purchase)
    named, customer_id = await _attribution(store, named, session)
    items = [
        {
            "sku": item.sku,
            "name": item.name,
            "category": item.category,
            "quantity": item.quantity,
            "unit_price": format(item.unit_price, "f"),
        }
        for item in purchase.items
    ]
    document = {
        "named": named,
        "customer_id": customer_id,
        "at": purchase.purchased_at or event.time,
        "currency": purchase.currency,
        "total": format(purchase.total_amount, "f"),
        "channel": purchase.channel,
        "items": items,
        "skus": sorted({item["sku"] for item in items}),
        "categories": sorted({item["category"] for item in items}),
    }
    result = await store.purchases.update_one(
        {"_id": purchase.purchase_id}, {"$setOnInsert": document}, upsert=True, session=session
    )
    if result.upserted_id is not None:  # a purchase id seen before counts once
        await refresh(ctx, session, customer_id, ctx.now(), changed="purchases")


async def on_purchase_returned(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    returned = _payload(event, PurchaseReturned)
    named, customer_id = await _attribution(store, returned.customer_id, session)
    document = {
        "named": named,
        "customer_id": customer_id,
        "purchase_id": returned.purchase_id,
        "at": returned.returned_at or event.time,
        "currency": returned.currency,
        "refund": format(returned.refund_amount, "f"),
    }
    result = await store.returns.update_one(
        {"_id": returned.return_id}, {"$setOnInsert": document}, upsert=True, session=session
    )
    if result.upserted_id is not None:
        await refresh(ctx, session, customer_id, ctx.now(), changed="returns")


async def on_complaint(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    payload = event.payload
    named = payload.customer_key()
    named, customer_id = await _attribution(store, named, session)
    change: dict[str, Any] = {
        "$setOnInsert": {"named": named},
        "$set": {"customer_id": customer_id},
    }
    if isinstance(payload, ComplaintOpened):
        change["$set"].update(
            opened_at=payload.opened_at,
            first_response_due_at=payload.first_response_due_at,
            resolution_due_at=payload.resolution_due_at,
            priority=payload.priority.value,
            category=payload.category,
        )
    elif isinstance(payload, ComplaintAcknowledged):
        change["$min"] = {"acknowledged_at": payload.acknowledged_at}
    elif isinstance(payload, ComplaintStatusChanged):
        if payload.to_status is not ComplaintStatus.WAITING_ON_CUSTOMER:
            return
        change["$set"]["waited_on_customer"] = True
    elif isinstance(payload, ComplaintResolved):
        change["$addToSet"] = {"resolved": payload.resolved_at}
        change["$min"] = {"first_resolved_at": payload.resolved_at}
    elif isinstance(payload, ComplaintReopened):
        change["$addToSet"] = {"reopened": payload.reopened_at}
    elif isinstance(payload, ComplaintClosed):
        change["$min"] = {"closed_at": payload.closed_at}
    elif isinstance(payload, ComplaintSlaBreached):
        if payload.severity is not SlaSeverity.BREACH:
            return
        change["$addToSet"] = {"breaches": payload.clock.value}
        change["$min"] = {f"breach_due.{payload.clock.value}": payload.due_at}
    previous = await store.complaints.find_one_and_update(
        {"_id": payload.complaint_id},
        change,
        {"customer_id": 1},
        upsert=True,
        session=session,
    )
    now = ctx.now()
    await refresh(ctx, session, customer_id, now, changed="complaints")
    moved_from = (previous or {}).get("customer_id")
    if moved_from is not None and moved_from != customer_id:  # rebuilt whole: it lost one
        await refresh(ctx, session, str(moved_from), now)


async def on_feedback_received(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    feedback = _payload(event, ComplaintFeedbackReceived)
    named, customer_id = await _attribution(store, feedback.customer_id, session)
    await store.feedback.insert_one(
        {
            "_id": event.id,
            "named": named,
            "customer_id": customer_id,
            "complaint_id": feedback.complaint_id,
            "at": feedback.received_at,
            "csat": feedback.csat,
            "nps": feedback.nps,
        },
        session=session,
    )
    await refresh(ctx, session, customer_id, ctx.now(), changed="feedback")


async def on_notification(ctx: Analytics, event: Event[Any], session: Session) -> None:
    store = ctx.store
    payload = _payload(event, NotificationEvent)
    at = getattr(payload, "sent_at", None) or getattr(payload, "failed_at", None)
    at = at or getattr(payload, "suppressed_at", None) or event.time
    named, customer_id = await _attribution(store, payload.customer_id, session)
    await store.notifications.insert_one(
        {
            "_id": event.id,
            "event_type": event.type,
            "notification_id": payload.notification_id,
            "named": named,
            "customer_id": customer_id,
            "channel": payload.channel.value,
            "rule": payload.rule,
            "reason": getattr(payload, "reason", None),
            "at": at,
        },
        session=session,
    )


COMPLAINT_TYPES = (
    ComplaintOpened,
    ComplaintAcknowledged,
    ComplaintStatusChanged,
    ComplaintResolved,
    ComplaintReopened,
    ComplaintClosed,
    ComplaintSlaBreached,
)


def event_handlers(ctx: Analytics) -> dict[str, Handler]:
    return {
        CustomerRegistered.event_type: partial(on_customer_snapshot, ctx),
        CustomerUpdated.event_type: partial(on_customer_snapshot, ctx),
        CustomerMerged.event_type: partial(on_customer_merged, ctx),
        CustomerErased.event_type: partial(on_customer_erased, ctx),
        PurchaseCompleted.event_type: partial(on_purchase_completed, ctx),
        PurchaseReturned.event_type: partial(on_purchase_returned, ctx),
        **{kind.event_type: partial(on_complaint, ctx) for kind in COMPLAINT_TYPES},
        ComplaintFeedbackReceived.event_type: partial(on_feedback_received, ctx),
        NotificationSent.event_type: partial(on_notification, ctx),
        NotificationFailed.event_type: partial(on_notification, ctx),
        NotificationSuppressed.event_type: partial(on_notification, ctx),
    }


# Judging everyone


@dataclass(frozen=True)
class Judged:
    customer_id: str
    name: str | None
    summary: Summary
    insight: Insight
    document: Document  # as read: its stored insight and version


async def judge_population(store: AnalyticsStore, now: datetime) -> tuple[Population, list[Judged]]:
    """Every live customer judged against the current population at ``now``; reads only."""
    documents = [
        document
        async for document in store.customers.find(
            store.live_customers(),
            {"summary": 1, "registered_at": 1, "name": 1, "insight": 1, "version": 1},
        ).sort("_id", 1)
    ]
    summaries = [Summary.from_document(d.get("summary")) for d in documents]
    population = Population.of(summaries)
    judged = [
        Judged(
            customer_id=document["_id"],
            name=document.get("name"),
            summary=summary,
            insight=domain.evaluate(summary, population, document.get("registered_at"), now),
            document=document,
        )
        for document, summary in zip(documents, summaries, strict=True)
    ]
    return population, judged


async def recompute(ctx: Analytics, now: datetime | None = None) -> int:
    """Judge every customer again at ``now``; store and announce what changed. Returns
    how many customers changed. Safe beside a second instance: a customer written by
    someone else meanwhile (its version moved) is left to them, judged by that writer."""
    moment = now or ctx.now()
    ctx.new_buyers = 0
    population, judged = await judge_population(ctx.store, moment)
    await ctx.store.save_population(population, moment)
    ctx.judged(population)
    changed = 0
    for item in judged:
        stored, payloads = _changes(item.customer_id, item.document, item.insight, moment)
        if _same(item.document, stored):
            continue  # the usual case: no transaction at all

        async def work(
            session: Session,
            item: Judged = item,
            stored: Document = stored,
            payloads: list[EventPayload] = payloads,
        ) -> bool:
            result = await ctx.store.customers.update_one(
                {
                    **ctx.store.live_customers(),
                    "_id": item.customer_id,
                    "version": item.document.get("version"),
                },
                {"$set": {"insight": stored}, "$inc": {"version": 1}},
                session=session,
            )
            if result.matched_count == 0:
                return False
            await ctx.publish(session, payloads, moment)
            return True

        if await in_transaction(ctx.client, work):
            changed += 1
    if changed and ctx.relay is not None:
        ctx.relay.wake()
    return changed


@dataclass
class Recomputer:
    """Runs :func:`recompute` every ``interval`` seconds while it holds the lease, so two
    instances do not judge everyone twice; sooner when woken (the population grew), once
    ``settle`` seconds have let the rest of a burst arrive."""

    ctx: Analytics
    interval: float
    settle: float = 5.0
    lease_ttl: timedelta = timedelta(minutes=2)
    owner: str = field(default_factory=lambda: f"analytics-{uuid.uuid4()}")
    _task: asyncio.Task[None] | None = None
    _woken: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.lease = Lease(self.ctx.store.state, "recompute_lease", self.owner, self.lease_ttl)

    def wake(self) -> None:
        """Judge everyone again soon rather than at the next interval."""
        self._woken.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="analytics-recompute")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.lease.release()

    async def claim(self) -> bool:
        return await self.lease.acquire()

    async def _behind(self) -> bool:
        """Whether more customers have bought than the population last judged holds."""
        store = self.ctx.store
        return await store.buyer_count() > (await store.population()).size

    async def _run(self) -> None:
        woken = again = False
        while True:
            try:
                if await self.claim():
                    await recompute(self.ctx)
                    # A buyer that woke us may have committed only as we read: once more.
                    again = woken and not again and await self._behind()
                    if again:
                        self._woken.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recomputing insights failed; trying again at the next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=self.interval)
            woken = self._woken.is_set()
            if woken:
                await asyncio.sleep(min(self.settle, self.interval))
                self._woken.clear()
