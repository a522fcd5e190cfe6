"""Facts: what the projections keep, as the domain sees them (purchases, returns,
complaints with their SLA clocks, feedback, notifications)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.analytics.domain.figures import in_window, percent


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
