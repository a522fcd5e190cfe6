"""Service-level agreements: the targets a complaint's clocks run against, and the clocks.

Pure: no I/O. A policy names the first-response and resolution targets for a priority
(optionally one category) in business time on a calendar; a clock counts business time
used, pauses while the customer has the ball, and knows when it warns and runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from services.complaints.calendar import DEFAULT_CALENDAR, BusinessCalendar
from shared.events.complaints import Priority

ESCALATION = {
    Priority.LOW: Priority.NORMAL,
    Priority.NORMAL: Priority.HIGH,
    Priority.HIGH: Priority.URGENT,
    Priority.URGENT: Priority.URGENT,
}


class SlaPolicy(BaseModel):
    """The targets for complaints of one priority (and, optionally, one category)."""

    model_config = ConfigDict(extra="forbid")

    priority: Priority
    category: str | None = None
    first_response_minutes: int = Field(gt=0, le=60 * 24 * 365)
    resolution_minutes: int = Field(gt=0, le=60 * 24 * 365)
    calendar: str = DEFAULT_CALENDAR


DEFAULT_POLICIES = {
    Priority.URGENT: SlaPolicy(
        priority=Priority.URGENT, first_response_minutes=60, resolution_minutes=8 * 60
    ),
    Priority.HIGH: SlaPolicy(
        priority=Priority.HIGH, first_response_minutes=4 * 60, resolution_minutes=16 * 60
    ),
    Priority.NORMAL: SlaPolicy(
        priority=Priority.NORMAL, first_response_minutes=8 * 60, resolution_minutes=40 * 60
    ),
    Priority.LOW: SlaPolicy(
        priority=Priority.LOW, first_response_minutes=16 * 60, resolution_minutes=80 * 60
    ),
}


def choose_policy(policies: list[SlaPolicy], priority: Priority, category: str) -> SlaPolicy:
    """The category's own policy for the priority, else the priority's, else the default."""
    for policy in policies:
        if policy.priority is priority and policy.category == category:
            return policy
    for policy in policies:
        if policy.priority is priority and policy.category is None:
            return policy
    return DEFAULT_POLICIES[priority]


class SlaRules(BaseModel):
    """The SLA configuration a decision needs: policies, calendars, warning share."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    policies: list[SlaPolicy] = Field(default_factory=list)
    calendars: dict[str, BusinessCalendar] = Field(default_factory=dict)
    warning_share: float = 0.8
    escalation_team: str = "escalations"
    reopen_window: timedelta = timedelta(days=14)

    def calendar(self, name: str) -> BusinessCalendar:
        return self.calendars.get(name) or BusinessCalendar()

    def policy(self, priority: Priority, category: str) -> SlaPolicy:
        return choose_policy(self.policies, priority, category)


class ClockState(BaseModel):
    """One SLA clock: business time used, when it runs out, and what was announced."""

    target_seconds: float
    elapsed_seconds: float = 0.0  # business time used before ``running_since``
    running: bool = True
    running_since: datetime | None = None
    due_at: datetime | None = None
    warn_at: datetime | None = None
    stopped_at: datetime | None = None
    warned_at: datetime | None = None
    breached_at: datetime | None = None

    def planned(self, calendar: BusinessCalendar, share: float) -> ClockState:
        """With ``due_at``/``warn_at`` worked out from when it last started running."""
        if not self.running or self.running_since is None:
            return self.model_copy(update={"due_at": None, "warn_at": None})
        left = timedelta(seconds=max(self.target_seconds - self.elapsed_seconds, 0))
        warn_left = timedelta(seconds=max(self.target_seconds * share - self.elapsed_seconds, 0))
        return self.model_copy(
            update={
                "due_at": calendar.add(self.running_since, left),
                "warn_at": calendar.add(self.running_since, warn_left),
            }
        )

    def paused(self, now: datetime, calendar: BusinessCalendar) -> ClockState:
        if not self.running or self.running_since is None:
            return self
        used = calendar.between(self.running_since, now).total_seconds()
        return self.model_copy(
            update={
                "elapsed_seconds": self.elapsed_seconds + used,
                "running": False,
                "running_since": None,
                "due_at": None,
                "warn_at": None,
            }
        )

    def stopped(self, now: datetime, calendar: BusinessCalendar) -> ClockState:
        """Met (or given up): it keeps its due time for reporting but never fires."""
        due, warn = self.due_at, self.warn_at
        if self.stopped_at is not None:
            return self
        return self.paused(now, calendar).model_copy(
            update={"stopped_at": now, "due_at": due, "warn_at": warn}
        )

    def resumed(self, now: datetime, calendar: BusinessCalendar, share: float) -> ClockState:
        if self.running and self.stopped_at is None:
            return self
        return self.model_copy(
            update={"running": True, "running_since": now, "stopped_at": None}
        ).planned(calendar, share)
