"""Events on ``crm.insights``: what analytics concluded about a customer."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from shared.events.base import EventPayload, Identifier, Record, ShortText, Timestamp
from shared.topics import INSIGHTS


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RfmScores(Record):
    recency: int = Field(ge=1, le=5)
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)


class SegmentChanged(EventPayload):
    """Analytics judged the customer again and the segment or the loyalty tier changed
    (or both): ``previous_segment`` equals ``segment`` when only the tier moved. Each
    ``previous_*`` is null on the customer's first judgement; ``previous_loyalty_tier``
    is also absent from events of producers that predate it."""

    event_type = "crm.customer.segment_changed"
    topic = INSIGHTS

    customer_id: Identifier
    previous_segment: ShortText | None = None
    segment: ShortText
    previous_loyalty_tier: ShortText | None = None
    loyalty_tier: ShortText | None = None
    rfm: RfmScores
    changed_at: Timestamp


class ChurnRiskChanged(EventPayload):
    event_type = "crm.customer.churn_risk_changed"
    topic = INSIGHTS

    customer_id: Identifier
    previous_level: RiskLevel | None = None
    level: RiskLevel
    score: float = Field(ge=0, le=1)
    reasons: list[ShortText] = Field(default_factory=list)
    changed_at: Timestamp
