"""The KPIs of one window, and the buckets of a time series."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.analytics.domain.facts import (
    ComplaintFact,
    FeedbackFact,
    NotificationFact,
    PurchaseFact,
    ReturnFact,
    sla_met_pct,
)
from services.analytics.domain.figures import (
    Bucket,
    Window,
    in_window,
    money,
    nearest_rank,
    percent,
)


@dataclass(frozen=True)
class KpiFacts:
    """The facts whose event time falls in one window (complaints: any of their times)."""

    purchases: Sequence[PurchaseFact]
    returns: Sequence[ReturnFact]
    new_customers: int
    complaints: Sequence[ComplaintFact]
    notifications: Sequence[NotificationFact]
    feedback: Sequence[FeedbackFact]


def kpis(facts: KpiFacts, window: Window, now: datetime) -> dict[str, Any]:
    start, end = window.bounds(now)
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    orders: Counter[str] = Counter()
    purchases = [p for p in facts.purchases if in_window(p.at, start, end)]
    for purchase in purchases:
        revenue[purchase.currency] += purchase.total
        orders[purchase.currency] += 1
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    returns = [r for r in facts.returns if in_window(r.at, start, end)]
    for returned in returns:
        refunds[returned.currency] += returned.refund
    opened = [c for c in facts.complaints if in_window(c.opened_at, start, end)]
    resolved = [c for c in facts.complaints if in_window(c.first_resolved_at, start, end)]
    durations = [c.resolution_seconds for c in resolved if c.resolution_seconds is not None]
    notified = Counter(
        n.event_type.rsplit(".", 1)[-1] for n in facts.notifications if in_window(n.at, start, end)
    )
    feedback = [f for f in facts.feedback if in_window(f.at, start, end)]
    scored = [f.nps for f in feedback if f.nps is not None]
    return {
        "window": window.value,
        "from": start,
        "to": end,
        "purchases": len(purchases),
        "returns": len(returns),
        "returns_rate": percent(len(returns), len(purchases)),
        "revenue": {cur: money(total) for cur, total in sorted(revenue.items())},
        "refunds": {cur: money(total) for cur, total in sorted(refunds.items())},
        "average_order_value": {
            cur: money((total / orders[cur]).quantize(Decimal("0.01")))
            for cur, total in sorted(revenue.items())
        },
        "new_customers": facts.new_customers,
        "complaints": {
            "opened": len(opened),
            "resolved": len(resolved),
            "resolution_time_p50_seconds": nearest_rank(durations, 50),
            "resolution_time_p90_seconds": nearest_rank(durations, 90),
            "first_response_sla_met_pct": sla_met_pct(
                (c.first_response_settled() for c in facts.complaints), start, end
            ),
            "resolution_sla_met_pct": sla_met_pct(
                (c.resolution_settled() for c in facts.complaints), start, end
            ),
        },
        "notifications": {
            "sent": notified["sent"],
            "failed": notified["failed"],
            "suppressed": notified["suppressed"],
        },
        "satisfaction": {
            "responses": len(feedback),
            "csat_average": (
                round(sum(f.csat for f in feedback) / len(feedback), 2) if feedback else None
            ),
            "nps": (
                round(
                    100 * (sum(s >= 9 for s in scored) - sum(s <= 6 for s in scored)) / len(scored),
                    2,
                )
                if scored
                else None
            ),
        },
    }


def series_buckets(window: Window, bucket: Bucket, now: datetime) -> list[datetime]:
    start, end = window.bounds(now)
    first, last = bucket.floor(start), bucket.floor(end)
    count = int((last - first) / bucket.length) + 1
    return [first + bucket.length * index for index in range(count)]


def fill_series(
    buckets: Sequence[datetime],
    bucket: Bucket,
    values: Iterable[tuple[datetime, Decimal]],
    *,
    as_money: bool,
) -> list[dict[str, Any]]:
    """Sum each value into its bucket; empty buckets are 0."""
    totals: dict[datetime, Decimal] = {moment: Decimal(0) for moment in buckets}
    for moment, value in values:
        key = bucket.floor(moment)
        if key in totals:
            totals[key] += value
    return [
        {"at": moment, "value": money(total) if as_money else int(total)}
        for moment, total in totals.items()
    ]
