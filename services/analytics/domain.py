"""Pure analytics: windows, KPIs, RFM scores, segments, loyalty tiers, churn risk, offers.

Nothing here does I/O. Every figure is a function of the facts it is given and of ``now``
(an injected clock), so the same events give the same figures, live or replayed.

Definitions (also in the README):

- A window is the half-open interval ``(now - length, now]`` of event time.
- Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at
  rank ``ceil(p / 100 * n)`` (1-based); no interpolation.
- RFM quintile score of a value among a population of n values: ``1 +`` the number of cut
  points the value exceeds, where cut point k (1..4) is the ``ceil(k * n / 5)``-th
  smallest value. Recency ranks the last purchase time (later is better), frequency the
  number of purchases, monetary the net spend (purchases minus refunds) per currency; a
  customer buying in several currencies gets the best of its monetary scores.
  With fewer than :data:`MIN_POPULATION` buying customers quintiles say nothing, so
  recency and frequency are scored against fixed thresholds instead
  (:data:`RECENCY_DAYS`, :data:`FREQUENCY_FROM`) and monetary is the middle score 3.
- Churn risk adds points for each warning sign (see :data:`CHURN_POINTS`); the score is
  points / 100 capped at 1; high from 0.60, medium from 0.30. Overdue needs a rhythm: at
  least :data:`MIN_RHYTHM_PURCHASES` purchases and a mean interval of at least
  :data:`MIN_RHYTHM` (purchases on the same day are no rhythm).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from shared.events.insights import RiskLevel


class Window(StrEnum):
    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"

    @property
    def length(self) -> timedelta:
        return {
            Window.HOUR: timedelta(hours=1),
            Window.DAY: timedelta(days=1),
            Window.WEEK: timedelta(days=7),
            Window.MONTH: timedelta(days=30),
        }[self]

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        return now - self.length, now


class Bucket(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return {
            Bucket.MINUTE: timedelta(minutes=1),
            Bucket.HOUR: timedelta(hours=1),
            Bucket.DAY: timedelta(days=1),
        }[self]

    def floor(self, moment: datetime) -> datetime:
        moment = moment.astimezone(UTC)
        if self is Bucket.MINUTE:
            return moment.replace(second=0, microsecond=0)
        if self is Bucket.HOUR:
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    @classmethod
    def default_for(cls, window: Window) -> Bucket:
        return {
            Window.HOUR: cls.MINUTE,
            Window.DAY: cls.HOUR,
            Window.WEEK: cls.HOUR,
            Window.MONTH: cls.DAY,
        }[window]


MAX_SERIES_POINTS = 1500


class Metric(StrEnum):
    PURCHASES = "purchases"
    REVENUE = "revenue"
    RETURNS = "returns"
    NEW_CUSTOMERS = "new_customers"
    COMPLAINTS_OPENED = "complaints_opened"
    COMPLAINTS_RESOLVED = "complaints_resolved"
    NOTIFICATIONS_SENT = "notifications_sent"


class Segment(StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL = "potential"
    NEW = "new"
    AT_RISK = "at_risk"
    HIBERNATING = "hibernating"
    LOST = "lost"


class LoyaltyTier(StrEnum):
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"


NEW_CUSTOMER_DAYS = 30
RECENT_DAYS = 90
OVERDUE_FACTOR = 1.5
MIN_RHYTHM_PURCHASES = 3  # two intervals at least
MIN_RHYTHM = timedelta(days=1)
MIN_POPULATION = 5  # fewer buyers than this: fixed RFM thresholds instead of quintiles
RECENCY_DAYS = (180, 90, 60, 30)  # a last purchase within 30 days scores 5, ..., older than 180 1
FREQUENCY_FROM = (2, 3, 6, 12)  # 2 purchases score 2, 3 score 3, 6 score 4, 12 score 5
HIGH_FROM = 60
MEDIUM_FROM = 30
CHURN_POINTS = {
    "overdue": 35,  # no purchase for 1.5 times the customer's own mean interval
    "unresolved_complaint": 25,
    "sla_breached": 15,  # on a complaint opened in the last 90 days
    "low_csat": 20,  # the latest CSAT is 1 or 2
    "recent_complaints": 10,  # two or more opened in the last 90 days
    "returns": 10,  # a return in the last 90 days
}
TIER_FROM = {LoyaltyTier.PLATINUM: 12, LoyaltyTier.GOLD: 6, LoyaltyTier.SILVER: 3}


def money(value: Decimal) -> str:
    return format(value, "f")


def percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 2)


def nearest_rank(values: Sequence[float], p: int) -> float | None:
    """The nearest-rank p-th percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def in_window(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start < moment <= end


# Facts: what the projections keep, as the domain sees them


@dataclass(frozen=True)
class PurchaseFact:
    purchase_id: str
    at: datetime
    currency: str
    total: Decimal
    items: tuple[tuple[str, str, str, int], ...] = ()  # sku, name, category, quantity


@dataclass(frozen=True)
class ReturnFact:
    return_id: str
    at: datetime
    currency: str
    refund: Decimal


@dataclass(frozen=True)
class ComplaintFact:
    complaint_id: str
    opened_at: datetime | None
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved: tuple[datetime, ...] = ()
    reopened: tuple[datetime, ...] = ()
    closed_at: datetime | None = None
    waited_on_customer: bool = False
    breaches: frozenset[str] = frozenset()
    # the due time a breach announcement named (a paused clock's deadline moves)
    first_response_breach_due_at: datetime | None = None
    resolution_breach_due_at: datetime | None = None

    @property
    def first_resolved_at(self) -> datetime | None:
        return min(self.resolved) if self.resolved else None

    @property
    def is_open(self) -> bool:
        if self.closed_at is not None:
            return False
        if not self.resolved:
            return True
        return bool(self.reopened) and max(self.reopened) > max(self.resolved)

    @property
    def resolution_seconds(self) -> float | None:
        first = self.first_resolved_at
        if first is None or self.opened_at is None:
            return None
        return (first - self.opened_at).total_seconds()

    def first_response_settled(self) -> Settled | None:
        """When and how the first-response clock was settled: met when answered by its due
        time, missed at its due time when answered late, never or announced breached
        (counted there once, however late the answer). ``None`` while it runs; a miss whose
        due time is after the window's end is not yet one (the caller filters by window)."""
        due = self.first_response_breach_due_at or self.first_response_due_at
        done = self.acknowledged_at
        if "first_response" in self.breaches:
            return _missed(due, done)
        if due is None or (done is not None and done <= due):
            return None if done is None else Settled(done, met=True)
        return Settled(due, met=False)

    def resolution_settled(self) -> Settled | None:
        """As :meth:`first_response_settled`, for the first resolution. Waiting on the
        customer pauses the clock, moving the deadline by an amount only the complaints
        service knows: then only its breach event (with the moved due time) tells a miss."""
        due = self.resolution_breach_due_at or self.resolution_due_at
        done = self.first_resolved_at
        if "resolution" in self.breaches:
            return _missed(due, done)
        if self.waited_on_customer or due is None or (done is not None and done <= due):
            return None if done is None else Settled(done, met=True)
        return Settled(due, met=False)


@dataclass(frozen=True)
class Settled:
    """An SLA clock's outcome and the event time it counts at."""

    at: datetime
    met: bool


def _missed(due: datetime | None, done: datetime | None) -> Settled | None:
    at = due or done
    return None if at is None else Settled(at, met=False)


def sla_met_pct(settled: Iterable[Settled | None], start: datetime, end: datetime) -> float | None:
    """% of the clocks settled in the window that were met; ``None`` when none was."""
    counted = [s for s in settled if s is not None and in_window(s.at, start, end)]
    return percent(sum(s.met for s in counted), len(counted))


@dataclass(frozen=True)
class FeedbackFact:
    at: datetime
    csat: int
    nps: int | None


@dataclass(frozen=True)
class NotificationFact:
    event_type: str
    at: datetime


# KPIs


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


# Customers


@dataclass(frozen=True)
class Summary:
    """What analytics knows of one customer, rebuilt from that customer's facts."""

    purchases: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    spend: Mapping[str, Decimal] = field(default_factory=dict)
    refunds: Mapping[str, Decimal] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    skus: tuple[tuple[str, str, str], ...] = ()  # sku, name, category
    returns: tuple[datetime, ...] = ()
    complaints: tuple[ComplaintFact, ...] = ()
    feedback: tuple[FeedbackFact, ...] = ()

    @property
    def net(self) -> dict[str, Decimal]:
        currencies = sorted(set(self.spend) | set(self.refunds))
        return {
            cur: self.spend.get(cur, Decimal(0)) - self.refunds.get(cur, Decimal(0))
            for cur in currencies
        }

    @property
    def mean_interval(self) -> timedelta | None:
        if self.purchases < 2 or self.first_purchase_at is None or self.last_purchase_at is None:
            return None
        return (self.last_purchase_at - self.first_purchase_at) / (self.purchases - 1)

    @property
    def usual_interval(self) -> timedelta | None:
        """The mean interval when it is a rhythm to be overdue on: at least two intervals
        and at least :data:`MIN_RHYTHM` apart on average; else None."""
        interval = self.mean_interval
        if self.purchases < MIN_RHYTHM_PURCHASES or interval is None or interval < MIN_RHYTHM:
            return None
        return interval

    def to_document(self) -> dict[str, Any]:
        return {
            "purchases": self.purchases,
            "first_purchase_at": self.first_purchase_at,
            "last_purchase_at": self.last_purchase_at,
            "spend": {cur: money(v) for cur, v in self.spend.items()},
            "refunds": {cur: money(v) for cur, v in self.refunds.items()},
            "categories": list(self.categories),
            "skus": [list(item) for item in self.skus],
            "sku_ids": [item[0] for item in self.skus],
            "returns": list(self.returns),
            "complaints": [complaint_document(c) for c in self.complaints],
            "feedback": [{"at": f.at, "csat": f.csat, "nps": f.nps} for f in self.feedback],
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Summary:
        if not document:
            return cls()
        return cls(
            purchases=document["purchases"],
            first_purchase_at=document["first_purchase_at"],
            last_purchase_at=document["last_purchase_at"],
            spend={cur: Decimal(v) for cur, v in document["spend"].items()},
            refunds={cur: Decimal(v) for cur, v in document["refunds"].items()},
            categories=tuple(document["categories"]),
            skus=tuple((s[0], s[1], s[2]) for s in document["skus"]),
            returns=tuple(document["returns"]),
            complaints=tuple(complaint_from_document(c) for c in document["complaints"]),
            feedback=tuple(
                FeedbackFact(at=f["at"], csat=f["csat"], nps=f["nps"]) for f in document["feedback"]
            ),
        )


def complaint_document(c: ComplaintFact) -> dict[str, Any]:
    return {
        "complaint_id": c.complaint_id,
        "opened_at": c.opened_at,
        "first_response_due_at": c.first_response_due_at,
        "resolution_due_at": c.resolution_due_at,
        "acknowledged_at": c.acknowledged_at,
        "resolved": sorted(c.resolved),
        "reopened": sorted(c.reopened),
        "closed_at": c.closed_at,
        "waited_on_customer": c.waited_on_customer,
        "breaches": sorted(c.breaches),
        "breach_due": {
            clock: due
            for clock, due in (
                ("first_response", c.first_response_breach_due_at),
                ("resolution", c.resolution_breach_due_at),
            )
            if due is not None
        },
    }


def complaint_from_document(d: Mapping[str, Any]) -> ComplaintFact:
    return ComplaintFact(
        complaint_id=d.get("complaint_id") or d["_id"],
        opened_at=d.get("opened_at"),
        first_response_due_at=d.get("first_response_due_at"),
        resolution_due_at=d.get("resolution_due_at"),
        acknowledged_at=d.get("acknowledged_at"),
        resolved=tuple(d.get("resolved") or ()),
        reopened=tuple(d.get("reopened") or ()),
        closed_at=d.get("closed_at"),
        waited_on_customer=bool(d.get("waited_on_customer")),
        breaches=frozenset(d.get("breaches") or ()),
        first_response_breach_due_at=(d.get("breach_due") or {}).get("first_response"),
        resolution_breach_due_at=(d.get("breach_due") or {}).get("resolution"),
    )


def summarise(
    purchases: Iterable[PurchaseFact],
    returns: Iterable[ReturnFact],
    complaints: Iterable[ComplaintFact],
    feedback: Iterable[FeedbackFact],
) -> Summary:
    ordered = sorted(purchases, key=lambda p: (p.at, p.purchase_id))
    spend: dict[str, Decimal] = defaultdict(Decimal)
    skus: dict[str, tuple[str, str, str]] = {}
    for purchase in ordered:
        spend[purchase.currency] += purchase.total
        for sku, name, category, _ in purchase.items:
            skus[sku] = (sku, name, category)  # the latest purchase names it
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    returned = sorted(returns, key=lambda r: (r.at, r.return_id))
    for item in returned:
        refunds[item.currency] += item.refund
    return Summary(
        purchases=len(ordered),
        first_purchase_at=ordered[0].at if ordered else None,
        last_purchase_at=ordered[-1].at if ordered else None,
        spend=dict(sorted(spend.items())),
        refunds=dict(sorted(refunds.items())),
        categories=tuple(sorted({item[2] for item in skus.values()})),
        skus=tuple(skus[sku] for sku in sorted(skus)),
        returns=tuple(r.at for r in returned),
        complaints=tuple(sorted(complaints, key=lambda c: c.complaint_id)),
        feedback=tuple(sorted(feedback, key=lambda f: (f.at, f.csat, f.nps or -1))),
    )


def resummarise(old: Summary, kind: str, facts: Iterable[Any]) -> Summary:
    """``old`` with the part that one kind of fact (a name of :data:`FACT_KINDS`) makes
    rebuilt from all of the customer's facts of that kind: equal to :func:`summarise` of
    every fact when the other parts of ``old`` are up to date."""
    if kind == "purchases":
        new = summarise(facts, (), (), ())
        return replace(
            old,
            purchases=new.purchases,
            first_purchase_at=new.first_purchase_at,
            last_purchase_at=new.last_purchase_at,
            spend=new.spend,
            categories=new.categories,
            skus=new.skus,
        )
    if kind == "returns":
        new = summarise((), facts, (), ())
        return replace(old, refunds=new.refunds, returns=new.returns)
    if kind == "complaints":
        return replace(old, complaints=summarise((), (), facts, ()).complaints)
    if kind == "feedback":
        return replace(old, feedback=summarise((), (), (), facts).feedback)
    raise ValueError(f"no kind of fact {kind!r}")


def with_new_facts(old: Summary, kind: str, facts: Sequence[Any]) -> Summary | None:
    """``old`` (the summary of a customer's facts) with ``facts`` of one kind added, facts
    it does not count yet (a complaint replaces the one with its id): equal to
    :func:`summarise` of every fact. ``None`` when ``old`` cannot tell: a purchase not
    later than the last one counted may change which purchase names a product, so all of
    the customer's purchases are needed then."""
    if not facts:
        return old
    if kind == "purchases":
        last = old.last_purchase_at
        if last is not None and any(purchase.at <= last for purchase in facts):
            return None
        new = summarise(facts, (), (), ())
        skus = {item[0]: item for item in old.skus} | {item[0]: item for item in new.skus}
        return replace(
            old,
            purchases=old.purchases + new.purchases,
            first_purchase_at=old.first_purchase_at or new.first_purchase_at,
            last_purchase_at=new.last_purchase_at,
            spend=_added(old.spend, new.spend),
            categories=tuple(sorted({item[2] for item in skus.values()})),
            skus=tuple(skus[sku] for sku in sorted(skus)),
        )
    if kind == "returns":
        new = summarise((), facts, (), ())
        return replace(
            old,
            refunds=_added(old.refunds, new.refunds),
            returns=tuple(sorted((*old.returns, *new.returns))),
        )
    if kind == "complaints":
        by_id = {c.complaint_id: c for c in old.complaints} | {c.complaint_id: c for c in facts}
        return replace(old, complaints=tuple(by_id[key] for key in sorted(by_id)))
    if kind == "feedback":
        return replace(old, feedback=summarise((), (), (), (*old.feedback, *facts)).feedback)
    raise ValueError(f"no kind of fact {kind!r}")


def _added(old: Mapping[str, Decimal], new: Mapping[str, Decimal]) -> dict[str, Decimal]:
    totals = defaultdict(Decimal, old)
    for currency, amount in new.items():
        totals[currency] += amount
    return dict(sorted(totals.items()))


FACT_KINDS = ("purchases", "returns", "complaints", "feedback")


# RFM


def cut_points(values: Sequence[Any]) -> list[Any]:
    """The four quintile cut points: the ceil(k*n/5)-th smallest value, k = 1..4."""
    if not values:
        return []
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[math.ceil(k * n / 5) - 1] for k in range(1, 5)]


def quintile(value: Any, cuts: Sequence[Any]) -> int:
    return 1 + sum(1 for cut in cuts if value > cut)


@dataclass(frozen=True)
class Population:
    """Quintile cut points of the current population of buying customers."""

    recency: tuple[datetime, ...] = ()
    frequency: tuple[int, ...] = ()
    monetary: Mapping[str, tuple[Decimal, ...]] = field(default_factory=dict)
    size: int = 0

    @classmethod
    def of(cls, summaries: Iterable[Summary]) -> Population:
        buyers = [s for s in summaries if s.purchases > 0 and s.last_purchase_at is not None]
        by_currency: dict[str, list[Decimal]] = defaultdict(list)
        for summary in buyers:
            for cur, net in summary.net.items():
                by_currency[cur].append(net)
        return cls(
            recency=tuple(cut_points([s.last_purchase_at for s in buyers])),
            frequency=tuple(cut_points([s.purchases for s in buyers])),
            monetary={cur: tuple(cut_points(v)) for cur, v in sorted(by_currency.items())},
            size=len(buyers),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "recency": list(self.recency),
            "frequency": list(self.frequency),
            "monetary": {cur: [money(v) for v in cuts] for cur, cuts in self.monetary.items()},
            "size": self.size,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Population:
        if not document:
            return cls()
        return cls(
            recency=tuple(document["recency"]),
            frequency=tuple(document["frequency"]),
            monetary={
                cur: tuple(Decimal(v) for v in cuts) for cur, cuts in document["monetary"].items()
            },
            size=document["size"],
        )


@dataclass(frozen=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int

    def to_document(self) -> dict[str, int]:
        return {"recency": self.recency, "frequency": self.frequency, "monetary": self.monetary}


def rfm(summary: Summary, population: Population, now: datetime) -> Rfm | None:
    if summary.purchases == 0 or summary.last_purchase_at is None:
        return None
    if population.size < MIN_POPULATION:
        age = now - summary.last_purchase_at
        return Rfm(
            recency=1 + sum(1 for days in RECENCY_DAYS if age <= timedelta(days=days)),
            frequency=1 + sum(1 for least in FREQUENCY_FROM if summary.purchases >= least),
            monetary=3,
        )
    monetary = max(
        (quintile(net, population.monetary.get(cur, ())) for cur, net in summary.net.items()),
        default=1,
    )
    return Rfm(
        recency=quintile(summary.last_purchase_at, population.recency),
        frequency=quintile(summary.purchases, population.frequency),
        monetary=monetary,
    )


def segment(
    summary: Summary, scores: Rfm | None, registered_at: datetime | None, now: datetime
) -> Segment:
    """The first rule that holds, top to bottom:

    no purchase yet: new if registered in the last 30 days (or when unknown), else
    hibernating; champions R>=4, F>=4, M>=4; new: one purchase, in the last 30 days;
    loyal R>=3, F>=3; potential R>=3; at_risk R<=2, F>=3; hibernating R=2; lost R=1.
    """
    recent = timedelta(days=NEW_CUSTOMER_DAYS)
    if scores is None:
        if registered_at is None or now - registered_at <= recent:
            return Segment.NEW
        return Segment.HIBERNATING
    r, f, m = scores.recency, scores.frequency, scores.monetary
    if r >= 4 and f >= 4 and m >= 4:
        return Segment.CHAMPIONS
    if (
        summary.purchases == 1
        and summary.last_purchase_at is not None
        and now - summary.last_purchase_at <= recent
    ):
        return Segment.NEW
    if r >= 3 and f >= 3:
        return Segment.LOYAL
    if r >= 3:
        return Segment.POTENTIAL
    if f >= 3:
        return Segment.AT_RISK
    if r == 2:
        return Segment.HIBERNATING
    return Segment.LOST


def loyalty_tier(summary: Summary) -> LoyaltyTier:
    """By lifetime purchases: platinum 12+, gold 6+, silver 3+, bronze below."""
    for tier, least in TIER_FROM.items():
        if summary.purchases >= least:
            return tier
    return LoyaltyTier.BRONZE


# Churn risk


@dataclass(frozen=True)
class Churn:
    level: RiskLevel
    score: float
    reasons: tuple[str, ...]


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f}"


def churn(summary: Summary, now: datetime) -> Churn:
    points = 0
    reasons: list[str] = []
    recent = now - timedelta(days=RECENT_DAYS)
    interval = summary.usual_interval
    if interval is not None and summary.last_purchase_at is not None:
        since = now - summary.last_purchase_at
        if since >= interval * OVERDUE_FACTOR:
            points += CHURN_POINTS["overdue"]
            reasons.append(
                f"overdue: {_days(since)} days since the last purchase, "
                f"usually every {_days(interval)} days"
            )
    open_complaints = [c for c in summary.complaints if c.is_open]
    if open_complaints:
        points += CHURN_POINTS["unresolved_complaint"]
        reasons.append(f"unresolved complaint: {len(open_complaints)} open")
    lately = [c for c in summary.complaints if c.opened_at is not None and c.opened_at > recent]
    breached = [c for c in lately if c.breaches]
    if breached:
        points += CHURN_POINTS["sla_breached"]
        reasons.append(f"SLA breached: on {len(breached)} recent complaint(s)")
    if summary.feedback and summary.feedback[-1].csat <= 2:
        points += CHURN_POINTS["low_csat"]
        reasons.append(f"low satisfaction: latest CSAT {summary.feedback[-1].csat}/5")
    if len(lately) >= 2:
        points += CHURN_POINTS["recent_complaints"]
        reasons.append(f"recent complaints: {len(lately)} in the last {RECENT_DAYS} days")
    returned = [at for at in summary.returns if at > recent]
    if returned:
        points += CHURN_POINTS["returns"]
        reasons.append(f"returns: {len(returned)} in the last {RECENT_DAYS} days")
    points = min(points, 100)
    if points >= HIGH_FROM:
        level = RiskLevel.HIGH
    elif points >= MEDIUM_FROM:
        level = RiskLevel.MEDIUM
    else:
        level = RiskLevel.LOW
    return Churn(level=level, score=points / 100, reasons=tuple(reasons))


def rhythm(summary: Summary, now: datetime) -> dict[str, Any]:
    interval = summary.mean_interval
    usual = summary.usual_interval
    last = summary.last_purchase_at
    since = (now - last) if last else None
    expected = last + usual if last and usual else None
    overdue = (now - expected) if expected and now > expected else timedelta(0)
    return {
        "purchases": summary.purchases,
        "first_purchase_at": summary.first_purchase_at,
        "last_purchase_at": last,
        "mean_interval_days": (
            round(interval.total_seconds() / 86400, 2) if interval is not None else None
        ),
        "days_since_last_purchase": (
            round(since.total_seconds() / 86400, 2) if since is not None else None
        ),
        "next_purchase_expected_at": expected,
        "days_overdue": round(overdue.total_seconds() / 86400, 2) if expected else None,
    }


@dataclass(frozen=True)
class Insight:
    """The stored conclusions about one customer, compared to announce changes."""

    rfm: Rfm | None
    segment: Segment
    loyalty_tier: LoyaltyTier
    churn: Churn

    def to_document(self) -> dict[str, Any]:
        return {
            "rfm": None if self.rfm is None else self.rfm.to_document(),
            "segment": self.segment.value,
            "loyalty_tier": self.loyalty_tier.value,
            "churn_level": self.churn.level.value,
            "churn_score": self.churn.score,
            "churn_reasons": list(self.churn.reasons),
        }


def evaluate(
    summary: Summary, population: Population, registered_at: datetime | None, now: datetime
) -> Insight:
    scores = rfm(summary, population, now)
    return Insight(
        rfm=scores,
        segment=segment(summary, scores, registered_at, now),
        loyalty_tier=loyalty_tier(summary),
        churn=churn(summary, now),
    )


# Next best offer


def next_best_offers(
    own: Summary, peers: Iterable[Summary], limit: int = 3
) -> list[dict[str, Any]]:
    """Categories the customer has not bought that customers who bought the same
    categories did, ranked by how many such customers there are (the evidence)."""
    mine = set(own.categories)
    if not mine:
        return []
    together: dict[str, Counter[str]] = defaultdict(Counter)
    buyers: Counter[str] = Counter()
    products: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for peer in peers:
        theirs = set(peer.categories)
        shared = mine & theirs
        if not shared:
            continue
        for category in theirs - mine:
            buyers[category] += 1
            for bought in shared:
                together[category][bought] += 1
        for sku, name, category in peer.skus:
            if category not in mine:
                products[category][(sku, name)] += 1
    ranked = sorted(buyers, key=lambda c: (-buyers[c], c))[:limit]
    offers = []
    for category in ranked:
        top = sorted(products[category].items(), key=lambda kv: (-kv[1], kv[0]))
        offers.append(
            {
                "category": category,
                "customers": buyers[category],
                "evidence": [
                    {"bought": bought, "customers_who_bought_both": count}
                    for bought, count in sorted(
                        together[category].items(), key=lambda kv: (-kv[1], kv[0])
                    )
                ],
                "product": (
                    {"sku": top[0][0][0], "name": top[0][0][1], "customers": top[0][1]}
                    if top
                    else None
                ),
            }
        )
    return offers
