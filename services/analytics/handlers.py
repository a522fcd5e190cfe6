"""Analytics use cases: project events into read models, keep each customer's insight, and
announce segment and churn-risk changes (through the outbox, only on change).

Events are applied a batch at a time, inside the consumer's unit of work (with the event
ids recorded), so a redelivered event changes nothing. The routes' ``load`` steps say what
the batch's events will ask for and the first handler reads it all at once
(``services.analytics.batch``); each handler then applies its event in memory, seeing what
earlier events of the batch did. Once the batch is applied, each customer it touched has
its summary rebuilt and judged once (:func:`judge_touched`), and every change is written
with one bulk write per collection. The periodic :class:`Recomputer` judges everyone
again, because overdue-ness and the population's quintiles move with time, and stores
what changed in bulk too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo import ReplaceOne, UpdateOne

from services.analytics import domain
from services.analytics.batch import Batch
from services.analytics.domain import Insight, Population, Summary
from services.analytics.store import ANONYMOUS_PREFIX, FACTS, AnalyticsStore, stored_time
from shared.clock import Clock, to_millisecond, utc_now
from shared.consumer import RejectEvent
from shared.events import Event, new_event
from shared.events.base import EventPayload
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
    ResolutionType,
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
from shared.mongo import Collection, Document, MongoClient, Session
from shared.outbox import Outbox, OutboxRelay
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork, UnitsOfWork

log = logging.getLogger(__name__)

SOURCE = "/rapport/analytics"
POPULATION_TTL = 2.0
RECOMPUTE_CHUNK = 500  # customers whose new judgement one transaction stores


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
    # it changes once a recompute, and every batch needs it.
    _population: tuple[float, Population] | None = field(default=None, init=False, repr=False)
    # What each batch in hand holds in memory, by its unit of work (gone with it).
    batches: weakref.WeakKeyDictionary[UnitOfWork, Batch] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False
    )

    def now(self) -> datetime:
        return to_millisecond(self.clock())

    def batch(self, uow: UnitOfWork) -> Batch:
        """The batch ``uow`` applies, as analytics holds it (the load steps fill it)."""
        batch = self.batches.get(uow)
        if batch is None:
            batch = self.batches[uow] = Batch(self.store)
        return batch

    async def ready(self, uow: UnitOfWork) -> Batch:
        """The batch, with what its load steps asked for read (once, by the first handler)."""
        batch = self.batch(uow)
        await batch.fetch(uow)
        return batch

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

    def announcements(
        self, payloads: Sequence[EventPayload], now: datetime, trace: dict[str, str] | None = None
    ) -> list[Event[Any]]:
        if not self.announce:
            return []
        return [new_event(p, source=SOURCE, time=now, extensions=trace) for p in payloads]


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


# Event handlers: each applies its event to what the batch holds in memory

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


def _named(purchase: PurchaseCompleted) -> str:
    """How a purchase names its buyer: the customer id, else an external id or e-mail,
    which a profile on ``crm.customers`` later ties to a customer."""
    if purchase.customer_id:
        return purchase.customer_id
    if purchase.customer_external_id:
        system, _, value = purchase.customer_external_id.partition(":")
        return f"external:{system}:{value}"
    return f"email:{(purchase.customer_email or '').strip().lower()}"


def _identity_keys(snapshot: CustomerSnapshot) -> list[str]:
    keys = [f"email:{email.lower()}" for email in snapshot.emails]
    return keys + [f"external:{system}:{value}" for system, value in snapshot.external_ids.items()]


async def load_snapshots(
    ctx: Analytics, events: Sequence[Event[CustomerSnapshot]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    ids = [event.payload.customer_id for event in events]
    keys = [key for event in events for key in _identity_keys(event.payload)]
    batch.want_names(ids)
    for kind in FACTS:
        batch.want_facts(kind, "named", keys)  # facts that named them are theirs now
    for kind in domain.FACT_KINDS:
        batch.want_facts(kind, "customer_id", ids)  # their summaries are rebuilt whole


@routes.on(CustomerRegistered, CustomerUpdated, load=load_snapshots)
async def on_customer_snapshot(
    ctx: Analytics, event: Event[CustomerSnapshot], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    snapshot = event.payload
    before = await batch.customer(uow, snapshot.customer_id)
    if before is not None and before.get("erased"):
        return
    name = snapshot.preferred_name or " ".join(
        part for part in (snapshot.given_name, snapshot.family_name) if part
    )
    batch.put_customer(
        uow,
        {
            **(before or {"_id": snapshot.customer_id, "merged_into": None}),
            "name": name or None,
            "registered_at": stored_time(snapshot.created_at),
        },
    )
    keys = _identity_keys(snapshot)
    for key in keys:
        batch.own(uow, key, snapshot.customer_id)
    touched = await batch.reattribute(uow, keys)  # purchases that named these
    for customer_id in sorted(touched | {snapshot.customer_id}):
        batch.touch(customer_id)


async def load_merges(
    ctx: Analytics, events: Sequence[Event[CustomerMerged]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    ids = [
        id_
        for event in events
        for id_ in (event.payload.customer_id, event.payload.source_customer_id)
    ]
    batch.want_names(ids)
    batch.want_names_of(ids)


@routes.on(CustomerMerged, load=load_merges)
async def on_customer_merged(ctx: Analytics, event: Event[CustomerMerged], uow: UnitOfWork) -> None:
    merged = event.payload
    survivor, source = merged.customer_id, merged.source_customer_id
    if survivor == source:
        raise RejectEvent("a customer cannot be merged into itself")
    batch = await ctx.ready(uow)
    names = await batch.named_for(uow, source) | await batch.named_for(uow, survivor)
    before = await batch.customer(uow, source)
    batch.put_customer(
        uow,
        {
            **(before or {"_id": source, "name": None, "registered_at": None}),
            "merged_into": None if merged.undone else survivor,
        },
    )
    touched = await batch.reattribute(uow, names)
    for customer_id in sorted(touched | {survivor, source}):
        batch.touch(customer_id)


async def load_erasures(
    ctx: Analytics, events: Sequence[Event[CustomerErased]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    ids = [event.payload.customer_id for event in events]
    batch.want_names(ids)
    batch.want_names_of(ids)
    batch.want_identities_of(ids)


@routes.on(CustomerErased, load=load_erasures)
async def on_customer_erased(ctx: Analytics, event: Event[CustomerErased], uow: UnitOfWork) -> None:
    batch = await ctx.ready(uow)
    erased = event.payload
    customer_id = erased.customer_id
    before = await batch.customer(uow, customer_id)
    if before is not None and before.get("erased"):
        return
    token = f"{ANONYMOUS_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, event.id).hex[:16]}"
    names = await batch.named_for(uow, customer_id)
    # Aggregates keep counting (registered_at stays for "new customers"); who it was goes.
    batch.put_customer(
        uow,
        {
            "_id": customer_id,
            "erased": True,
            "anonymous_id": token,
            "erased_at": stored_time(erased.erased_at),
            "registered_at": (before or {}).get("registered_at"),
            "merged_into": None,
            "name": None,
            "summary": None,
            "insight": None,
        },
    )
    await batch.anonymise(uow, names, token)
    await batch.disown_all(uow, customer_id)
    batch.untouch(customer_id)  # nothing to judge, nothing to announce
    await ctx.outbox.forget(uow.session, [customer_id], lambda payload: payload)


async def load_purchases(
    ctx: Analytics, events: Sequence[Event[PurchaseCompleted]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    batch.want_names(_named(event.payload) for event in events)
    batch.want_facts("purchases", "_id", (event.payload.purchase_id for event in events))


@routes.on(PurchaseCompleted, load=load_purchases)
async def on_purchase_completed(
    ctx: Analytics, event: Event[PurchaseCompleted], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    purchase = event.payload
    purchases = batch.facts["purchases"]
    if await purchases.get(uow, purchase.purchase_id) is not None:
        return  # a purchase id seen before counts once
    named, customer_id = await batch.attribution(uow, _named(purchase))
    purchases.add(
        {
            "_id": purchase.purchase_id,
            "named": named,
            "customer_id": customer_id,
            "at": stored_time(purchase.purchased_at or event.time),
            "currency": purchase.currency,
            "total": format(purchase.total_amount, "f"),
            "channel": purchase.channel,
            "items": [
                {
                    "sku": item.sku,
                    "name": item.name,
                    "category": item.category,
                    "quantity": item.quantity,
                    "unit_price": format(item.unit_price, "f"),
                }
                for item in purchase.items
            ],
            "skus": sorted({item.sku for item in purchase.items}),
            "categories": sorted({item.category for item in purchase.items}),
        }
    )
    batch.touch(customer_id, "purchases", purchase.purchase_id)


async def load_returns(
    ctx: Analytics, events: Sequence[Event[PurchaseReturned]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    batch.want_names(event.payload.customer_id for event in events)
    batch.want_facts("returns", "_id", (event.payload.return_id for event in events))


@routes.on(PurchaseReturned, load=load_returns)
async def on_purchase_returned(
    ctx: Analytics, event: Event[PurchaseReturned], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    returned = event.payload
    returns = batch.facts["returns"]
    if await returns.get(uow, returned.return_id) is not None:
        return
    named, customer_id = await batch.attribution(uow, returned.customer_id)
    returns.add(
        {
            "_id": returned.return_id,
            "named": named,
            "customer_id": customer_id,
            "purchase_id": returned.purchase_id,
            "at": stored_time(returned.returned_at or event.time),
            "currency": returned.currency,
            "refund": format(returned.refund_amount, "f"),
        }
    )
    batch.touch(customer_id, "returns", returned.return_id)


# A complaint resolved with a refund is a refund, as the profiles ledger books it: a
# refund or return resolution naming the amount, the currency and the purchase, kept as
# the return ``complaint:<complaint id>``. That id is the rule against counting it twice: a
# second resolution of the complaint, or a ``crm.purchase.returned`` carrying that return
# id, is the same refund (the first one met counts), as the ledger keeps one entry an id.
REFUNDING_RESOLUTIONS = frozenset({ResolutionType.REFUND, ResolutionType.RETURN})


def complaint_return_id(complaint_id: str) -> str:
    """The id of the refund a complaint resolution grants (the ledger's, too)."""
    return f"complaint:{complaint_id}"


def refund_of(resolved: ComplaintResolved) -> tuple[Decimal, str, str] | None:
    """The refund (amount, currency, purchase id) a resolution grants, if it grants one."""
    amount, currency, purchase_id = (
        resolved.refund_amount,
        resolved.currency,
        resolved.purchase_id,
    )
    if resolved.resolution_type not in REFUNDING_RESOLUTIONS:
        return None
    if amount is None or currency is None or purchase_id is None:
        return None
    return amount, currency, purchase_id


async def load_refunds(
    ctx: Analytics, events: Sequence[Event[ComplaintResolved]], uow: UnitOfWork
) -> None:
    refunds = [event.payload for event in events if refund_of(event.payload) is not None]
    if not refunds:
        return
    batch = ctx.batch(uow)
    batch.want_names(resolved.customer_id for resolved in refunds)
    ids = (complaint_return_id(resolved.complaint_id) for resolved in refunds)
    batch.want_facts("returns", "_id", ids)


@routes.on(ComplaintResolved, load=load_refunds)
async def on_complaint_refund(
    ctx: Analytics, event: Event[ComplaintResolved], uow: UnitOfWork
) -> None:
    """A refunding resolution counts as a return (refunds, net spend, RFM money), once."""
    resolved = event.payload
    refund = refund_of(resolved)
    if refund is None:
        return
    amount, currency, purchase_id = refund
    batch = await ctx.ready(uow)
    return_id = complaint_return_id(resolved.complaint_id)
    returns = batch.facts["returns"]
    if await returns.get(uow, return_id) is not None:
        return  # resolved again, or already met as crm.purchase.returned
    named, customer_id = await batch.attribution(uow, resolved.customer_id)
    returns.add(
        {
            "_id": return_id,
            "named": named,
            "customer_id": customer_id,
            "purchase_id": purchase_id,
            "complaint_id": resolved.complaint_id,
            "at": stored_time(resolved.resolved_at),
            "currency": currency,
            "refund": format(amount, "f"),
        }
    )
    batch.touch(customer_id, "returns", return_id)


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


async def load_notifications(
    ctx: Analytics, events: Sequence[Event[NotificationEvent]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want_names(event.payload.customer_id for event in events)


@routes.on(NotificationSent, NotificationFailed, NotificationSuppressed, load=load_notifications)
async def on_notification(ctx: Analytics, event: Event[NotificationEvent], uow: UnitOfWork) -> None:
    batch = await ctx.ready(uow)
    payload = event.payload
    at = getattr(payload, "sent_at", None) or getattr(payload, "failed_at", None)
    at = at or getattr(payload, "suppressed_at", None) or event.time
    named, customer_id = await batch.attribution(uow, payload.customer_id)
    batch.facts["notifications"].add(
        {
            "_id": event.id,
            "event_type": event.type,
            "notification_id": payload.notification_id,
            "named": named,
            "customer_id": customer_id,
            "channel": payload.channel.value,
            "rule": payload.rule,
            "reason": getattr(payload, "reason", None),
            "at": stored_time(at),
        }
    )


# Once per batch: each touched customer judged once, everything written in bulk


@routes.after_batch
async def judge_touched(ctx: Analytics, events: Sequence[Event[Any]], uow: UnitOfWork) -> None:
    """Rebuild and judge each customer the batch touched, once, and queue every change
    of the batch (facts, customers, announcements) in its unit of work."""
    batch = ctx.batches.pop(uow, None)
    if batch is None:
        return
    await batch.fetch(uow)
    customers = ctx.store.customers
    await uow.load(customers, batch.touched)
    documents = {
        customer_id: await batch.customer(uow, customer_id) for customer_id in batch.touched
    }
    summaries = await batch.summaries(uow, documents)
    batch.save(uow)  # after the last read of the facts: queued writes land at commit
    now = ctx.now()
    population = await ctx.population(uow.session) if batch.touched else Population()
    for customer_id, touched in batch.touched.items():
        before = documents[customer_id]
        version = (before or {}).get("version") or 0
        if customer_id not in summaries:  # erased or merged: it has none
            gone = before or {"_id": customer_id}
            _replace(
                uow, customers, {**gone, "summary": None, "insight": None, "version": version + 1}
            )
            continue
        summary = summaries[customer_id]
        insight = domain.evaluate(summary, population, (before or {}).get("registered_at"), now)
        stored, payloads = _changes(customer_id, before, insight, now)
        if summary.purchases and not ((before or {}).get("summary") or {}).get("purchases"):
            ctx.noticed_new_buyer(population)
        new = {"_id": customer_id, "name": None, "registered_at": None, "merged_into": None}
        document = {
            **(before or new),
            "summary": summary.to_document(),
            "insight": stored,
            "version": version + 1,
        }
        _replace(uow, customers, document)
        uow.emit(ctx.announcements(payloads, now, touched.trace))


def _replace(uow: UnitOfWork, collection: Collection, document: Document) -> None:
    """Store ``document`` whole at commit. The batch's last change of it: nothing reads it
    again, so it is queued as it is (``uow.put`` would keep a copy in the identity map)."""
    uow.write(collection, ReplaceOne({"_id": document["_id"]}, document, upsert=True))


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


@dataclass(frozen=True)
class _Judgement:
    customer_id: str
    version: Any  # as judged: stored only if the customer is still at it
    stored: Document
    payloads: list[EventPayload]


async def recompute(
    ctx: Analytics, now: datetime | None = None, chunk: int = RECOMPUTE_CHUNK
) -> int:
    """Judge every customer again at ``now``; store and announce what changed, ``chunk``
    customers a transaction (one bulk write). Returns how many customers changed. Safe
    beside a second instance: a customer written by someone else meanwhile (its version
    moved) is left to them, judged by that writer."""
    moment = now or ctx.now()
    ctx.new_buyers = 0
    population, judged = await judge_population(ctx.store, moment)
    await ctx.store.save_population(population, moment)
    ctx.judged(population)
    changes = []
    for item in judged:
        stored, payloads = _changes(item.customer_id, item.document, item.insight, moment)
        if not _same(item.document, stored):  # the usual case: nothing to store
            changes.append(
                _Judgement(item.customer_id, item.document.get("version"), stored, payloads)
            )
    units = UnitsOfWork(ctx.client, ctx.outbox, ctx.relay)
    changed = 0
    for start in range(0, len(changes), chunk):
        part = changes[start : start + chunk]
        changed += await units.run(functools.partial(_store_judgements, ctx, part, moment))
    return changed


async def _store_judgements(
    ctx: Analytics, judgements: Sequence[_Judgement], now: datetime, uow: UnitOfWork
) -> int:
    """Store the judgements of customers still as they were judged (their version read in
    one query), with one bulk write, and announce them; returns how many were stored."""
    customers = ctx.store.customers
    live = ctx.store.live_customers()
    uow.reads += 1
    found = customers.find(
        {**live, "_id": {"$in": [j.customer_id for j in judgements]}},
        {"version": 1},
        session=uow.session,
    )
    versions = {document["_id"]: document.get("version") async for document in found}
    stored = 0
    for judgement in judgements:
        key = judgement.customer_id
        if key not in versions or versions[key] != judgement.version:
            continue  # changed since judged: its writer judged it
        uow.write(
            customers,
            UpdateOne(
                {**live, "_id": key, "version": judgement.version},
                {"$set": {"insight": judgement.stored}, "$inc": {"version": 1}},
            ),
            key=key,
        )
        uow.emit(ctx.announcements(judgement.payloads, now))
        stored += 1
    return stored


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
