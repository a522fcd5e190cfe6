"""Judging a customer: the insight fields to store and the events announcing what
changed; once per batch (``after_batch``), each customer the batch touched is rebuilt and
judged once, and every change is written in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne

from services.analytics.domain.insights import Insight, evaluate
from services.analytics.domain.segments import Population, Rfm
from services.analytics.handlers.context import Analytics
from shared.events import Event
from shared.events.base import EventPayload
from shared.events.insights import ChurnRiskChanged, RfmScores, RiskLevel, SegmentChanged
from shared.mongo import Collection, Document
from shared.observability import trace_context_of
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

routes: Routes[Analytics] = Routes()


def _changes(
    customer_id: str, before: Document | None, insight: Insight, now: datetime
) -> tuple[dict[str, Any], list[EventPayload]]:
    """The insight fields to store and the events announcing what changed."""
    old = (before or {}).get("insight") or {}
    stored = insight.to_document()
    stored["segment_changed_at"] = old.get("segment_changed_at")
    stored["churn_changed_at"] = old.get("churn_changed_at")
    payloads: list[EventPayload] = []
    scores = insight.rfm or Rfm(1, 1, 1)
    segment_moved = old.get("segment") != insight.segment.value
    if segment_moved:
        stored["segment_changed_at"] = now
    # A tier that moves while the segment stays is announced too: consumers (the
    # community) show the tier from this event.
    if segment_moved or old.get("loyalty_tier") != insight.loyalty_tier.value:
        payloads.append(
            SegmentChanged(
                customer_id=customer_id,
                previous_segment=old.get("segment"),
                segment=insight.segment.value,
                previous_loyalty_tier=old.get("loyalty_tier"),
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
        insight = evaluate(summary, population, (before or {}).get("registered_at"), now)
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
        uow.emit(ctx.announcements(payloads, now, trace_context_of(touched.span)))


def _replace(uow: UnitOfWork, collection: Collection, document: Document) -> None:
    """Store ``document`` whole at commit. The batch's last change of it: nothing reads it
    again, so it is queued as it is (``uow.put`` would keep a copy in the identity map)."""
    uow.write(collection, ReplaceOne({"_id": document["_id"]}, document, upsert=True))
