"""Read side of analytics: KPIs, series, segments, churn risks, insights, offers.

Window figures are computed at query time from the facts whose event time falls in the
window, with "now" from the injected clock, so they are exactly reproducible.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from services.analytics.domain.figures import MAX_SERIES_POINTS, Bucket, Metric, Window, money
from services.analytics.domain.insights import RECENT_DAYS, evaluate, rhythm
from services.analytics.domain.kpis import fill_series, series_buckets
from services.analytics.domain.kpis import kpis as window_kpis
from services.analytics.domain.offers import next_best_offers
from services.analytics.domain.segments import Population, Segment
from services.analytics.domain.summaries import Summary
from services.analytics.handlers.context import Analytics
from services.analytics.handlers.recompute import judge_population
from services.analytics.store import AnalyticsStore
from shared.errors import Gone, InvalidInput, NotFound
from shared.events.insights import RiskLevel
from shared.pagination import Position, decode_cursor, page_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def kpis(store: AnalyticsStore, window: Window, now: datetime) -> dict[str, Any]:
    start, end = window.bounds(now)
    return window_kpis(await store.kpi_facts(start, end), window, now)


async def series(
    store: AnalyticsStore,
    metric: Metric,
    window: Window,
    bucket: Bucket | None,
    currency: str | None,
    now: datetime,
) -> dict[str, Any]:
    chosen = bucket or Bucket.default_for(window)
    buckets = series_buckets(window, chosen, now)
    if len(buckets) > MAX_SERIES_POINTS:
        raise InvalidInput(
            f"{len(buckets)} {chosen.value} buckets in {window.value} is more than"
            f" {MAX_SERIES_POINTS}; choose a coarser bucket",
            max_points=MAX_SERIES_POINTS,
        )
    start, end = window.bounds(now)
    if metric is Metric.REVENUE and currency is None:
        currency = await store.main_currency(start, end) or "EUR"
    values = await store.series_values(metric, start, end, currency)
    return {
        "metric": metric.value,
        "window": window.value,
        "bucket": chosen.value,
        "currency": currency if metric is Metric.REVENUE else None,
        "points": fill_series(buckets, chosen, values, as_money=metric is Metric.REVENUE),
    }


async def segment_counts(store: AnalyticsStore) -> dict[str, Any]:
    counts: Counter[str] = Counter(await store.segments_of_live_customers())
    return {
        "total": sum(counts.values()),
        "segments": [{"segment": s.value, "count": counts[s.value]} for s in Segment],
    }


def _member(document: dict[str, Any]) -> dict[str, Any]:
    insight = document.get("insight") or {}
    return {
        "customer_id": document["_id"],
        "name": document.get("name"),
        "segment": insight.get("segment"),
        "loyalty_tier": insight.get("loyalty_tier"),
        "rfm": insight.get("rfm"),
    }


async def segment_members(
    store: AnalyticsStore, segment: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    if segment not in {s.value for s in Segment}:
        raise NotFound(f"no segment {segment!r}", segments=[s.value for s in Segment])
    position = decode_cursor(cursor, scope=f"segment:{segment}")
    after = None if position is None else position[1]
    found = await store.segment_members_page(segment, after, limit + 1)
    page, next_cursor = page_of(found, limit, lambda d: (EPOCH, d["_id"]), f"segment:{segment}")
    return {"items": [_member(d) for d in page], "next_cursor": next_cursor}


async def churn_risks(
    store: AnalyticsStore, level: RiskLevel | None, cursor: str | None, limit: int
) -> dict[str, Any]:
    levels = [level.value] if level else [RiskLevel.HIGH.value, RiskLevel.MEDIUM.value]
    scope = f"churn:{','.join(levels)}"
    position = decode_cursor(cursor, scope=scope)
    after: tuple[float, str] | None = None
    if position is not None:
        points, _, customer_id = position[1].partition("|")
        if not points.isdigit():
            raise InvalidInput("cursor is not one this API issued")
        after = int(points) / 100, customer_id
    found = await store.churn_risks_page(levels, after, limit + 1)
    page, next_cursor = page_of(found, limit, _churn_position, scope)
    return {
        "items": [
            {
                "customer_id": d["_id"],
                "name": d.get("name"),
                "level": d["insight"]["churn_level"],
                "score": d["insight"]["churn_score"],
                "reasons": d["insight"]["churn_reasons"],
                "changed_at": d["insight"].get("churn_changed_at"),
            }
            for d in page
        ],
        "next_cursor": next_cursor,
    }


def _churn_position(document: dict[str, Any]) -> Position:
    """Highest score first, then by id: the score in whole points and the id."""
    points = round(document["insight"]["churn_score"] * 100)
    return EPOCH, f"{points:03d}|{document['_id']}"


async def _live_customer(store: AnalyticsStore, customer_id: str) -> dict[str, Any]:
    document = await store.customer(customer_id)
    if document is None:
        raise NotFound(f"analytics knows no customer {customer_id}")
    if document.get("erased"):
        raise Gone(f"customer {customer_id} was erased")
    if document.get("merged_into"):
        raise NotFound(
            f"customer {customer_id} was merged into {document['merged_into']}",
            merged_into=document["merged_into"],
        )
    return document


async def _offers(store: AnalyticsStore, customer_id: str, summary: Summary) -> list[Any]:
    if not summary.categories:
        return []
    peers = await store.peers_of(customer_id, list(summary.categories))
    return next_best_offers(summary, [Summary.from_document(d.get("summary")) for d in peers])


async def next_best_offer(store: AnalyticsStore, customer_id: str) -> dict[str, Any]:
    document = await _live_customer(store, customer_id)
    summary = Summary.from_document(document.get("summary"))
    return {
        "customer_id": customer_id,
        "bought": list(summary.categories),
        "offers": await _offers(store, customer_id, summary),
    }


async def insights(
    ctx: Analytics, customer_id: str, now: datetime, population: Population | None = None
) -> dict[str, Any]:
    store = ctx.store
    document = await _live_customer(store, customer_id)
    summary = Summary.from_document(document.get("summary"))
    population = population or await store.population()
    insight = evaluate(summary, population, document.get("registered_at"), now)
    stored = document.get("insight") or {}
    recent = [
        c
        for c in summary.complaints
        if c.opened_at is not None and (now - c.opened_at).days < RECENT_DAYS
    ]
    feedback = summary.feedback
    scored = [f.nps for f in feedback if f.nps is not None]
    return {
        "customer_id": customer_id,
        "name": document.get("name"),
        "evaluated_at": now,
        "segment": insight.segment.value,
        "loyalty_tier": insight.loyalty_tier.value,
        "rfm": None if insight.rfm is None else insight.rfm.to_document(),
        "churn": {
            "level": insight.churn.level.value,
            "score": insight.churn.score,
            "reasons": list(insight.churn.reasons),
            "changed_at": stored.get("churn_changed_at"),
        },
        "purchases": {
            "count": summary.purchases,
            "spend": {cur: money(v) for cur, v in summary.spend.items()},
            "refunds": {cur: money(v) for cur, v in summary.refunds.items()},
            "net": {cur: money(v) for cur, v in summary.net.items()},
            "returns": len(summary.returns),
            "categories": list(summary.categories),
        },
        "rhythm": rhythm(summary, now),
        "complaints": {
            "total": len(summary.complaints),
            "open": sum(c.is_open for c in summary.complaints),
            "recent": len(recent),
            "sla_breached": sum(bool(c.breaches) for c in summary.complaints),
        },
        "satisfaction": {
            "responses": len(feedback),
            "csat_average": round(sum(f.csat for f in feedback) / len(feedback), 2)
            if feedback
            else None,
            "latest_csat": feedback[-1].csat if feedback else None,
            "latest_nps": scored[-1] if scored else None,
        },
        "next_best_offers": await _offers(store, customer_id, summary),
    }


async def bought_together(
    store: AnalyticsStore, sku: str | None, category: str | None, limit: int
) -> dict[str, Any]:
    if (sku is None) == (category is None):
        raise InvalidInput("give exactly one of sku or category")
    field, value = ("skus", sku) if sku is not None else ("categories", category)
    assert value is not None  # exactly one was given
    in_purchases: Counter[str] = Counter()
    names: dict[str, tuple[str, str]] = {}
    purchases = 0
    for purchase in await store.purchases_with(field, value):
        purchases += 1
        for other in purchase[field]:
            if other != value:
                in_purchases[other] += 1
        for line in purchase.get("items", ()):
            names[line["sku"]] = (line["name"], line["category"])
    customer_field = "summary.sku_ids" if sku is not None else "summary.categories"
    by_customers: Counter[str] = Counter()
    customers = 0
    for document in await store.live_customers_with(customer_field, value):
        customers += 1
        summary = document.get("summary") or {}
        held = summary.get("sku_ids" if sku is not None else "categories") or []
        for other in held:
            if other != value:
                by_customers[other] += 1
    others = sorted(
        set(in_purchases) | set(by_customers),
        key=lambda o: (-in_purchases[o], -by_customers[o], o),
    )[:limit]
    items = []
    for other in others:
        item: dict[str, Any] = {
            "purchases_together": in_purchases[other],
            "customers_together": by_customers[other],
        }
        if sku is not None:
            name, of_category = names.get(other, (None, None))
            item = {"sku": other, "name": name, "category": of_category, **item}
        else:
            item = {"category": other, **item}
        items.append(item)
    return {
        "sku": sku,
        "category": category,
        "purchases": purchases,
        "customers": customers,
        "items": items,
    }


async def recent_notifications(store: AnalyticsStore, limit: int) -> dict[str, Any]:
    found = await store.latest_notifications(limit)
    names = await store.names_of(list({d["customer_id"] for d in found}))
    return {
        "items": [
            {
                "event_type": d["event_type"],
                "customer_id": d["customer_id"],
                "name": names.get(d["customer_id"]),
                "channel": d["channel"],
                "rule": d["rule"],
                "reason": d.get("reason"),
                "at": d["at"],
            }
            for d in found
        ]
    }


async def snapshot(ctx: Analytics, now: datetime) -> dict[str, Any]:
    """Every figure analytics answers with at ``now``, judged afresh from the read models
    (nothing is written): what a replay is compared on. Times a change was noticed at
    (``changed_at``) depend on when events arrived, not on which, so they are left out."""
    store = ctx.store
    population, judged = await judge_population(store, now)
    segments: Counter[str] = Counter(item.insight.segment.value for item in judged)
    return {
        "now": now,
        "kpis": {window.value: await kpis(store, window, now) for window in Window},
        "series": {
            metric.value: (await series(store, metric, Window.DAY, Bucket.HOUR, None, now))[
                "points"
            ]
            for metric in Metric
        },
        "segments": {s.value: segments[s.value] for s in Segment},
        "customers": {
            item.customer_id: {
                "name": item.name,
                **item.insight.to_document(),
                "summary": item.summary.to_document(),
            }
            for item in judged
        },
        "insights": {
            item.customer_id: _without_changed_at(
                await insights(ctx, item.customer_id, now, population)
            )
            for item in judged
        },
    }


def _without_changed_at(document: dict[str, Any]) -> dict[str, Any]:
    churn = {k: v for k, v in document["churn"].items() if k != "changed_at"}
    return {**document, "churn": churn}
