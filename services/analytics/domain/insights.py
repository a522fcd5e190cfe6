"""Churn risk, purchase rhythm, and a customer's insight (RFM, segment, tier, churn)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.analytics.domain.segments import (
    LoyaltyTier,
    Population,
    Rfm,
    Segment,
    loyalty_tier,
    rfm,
    segment,
)
from services.analytics.domain.summaries import Summary
from shared.events.insights import RiskLevel

RECENT_DAYS = 90
OVERDUE_FACTOR = 1.5
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
