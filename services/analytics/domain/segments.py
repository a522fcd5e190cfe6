"""RFM scores against the population's quintiles, segments and loyalty tiers."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from services.analytics.domain.figures import money
from services.analytics.domain.summaries import Summary


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
MIN_POPULATION = 5  # fewer buyers than this: fixed RFM thresholds instead of quintiles
RECENCY_DAYS = (180, 90, 60, 30)  # a last purchase within 30 days scores 5, ..., older than 180 1
FREQUENCY_FROM = (2, 3, 6, 12)  # 2 purchases score 2, 3 score 3, 6 score 4, 12 score 5
TIER_FROM = {LoyaltyTier.PLATINUM: 12, LoyaltyTier.GOLD: 6, LoyaltyTier.SILVER: 3}


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
