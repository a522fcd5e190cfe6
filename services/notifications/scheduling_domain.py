"""Schedules, their rules: birthdays, renewal reminders and daily complaint status reports,
what a schedule is and when it is next due (in the customer's time zone, as UTC), the ids
that make a schedule one per customer, contract or complaint (pure: no I/O; kept by
``scheduling_store.py``, fired by ``scheduling.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from services.notifications.policy import zone
from services.notifications.rules import (
    BIRTHDAY_GREETING,
    COMPLAINT_DAILY_STATUS,
    RENEWAL_REMINDER,
)

# -- when things are due -------------------------------------------------------------------


def _on(day: date, at: time, time_zone: str) -> datetime:
    """``at`` on ``day`` in the zone, as UTC; a wall time a DST gap skips moves forward."""
    tz = zone(time_zone)
    local = datetime.combine(day, at, tzinfo=tz)
    roundtrip = local.astimezone(UTC).astimezone(tz)
    if roundtrip.replace(tzinfo=None) != local.replace(tzinfo=None):
        local = roundtrip
    return local.astimezone(UTC)


def birthday_in(birthday: date, year: int) -> date:
    """The birthday in ``year``; 29 February is kept on the 28th in common years."""
    try:
        return birthday.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def next_birthday(
    birthday: date, at: time, time_zone: str, now: datetime, fired: str | None
) -> tuple[datetime, str]:
    """The next greeting (UTC) and its occurrence (the year): the first one still ahead
    that was not fired already."""
    year = now.astimezone(zone(time_zone)).year - 1
    while True:
        due = _on(birthday_in(birthday, year), at, time_zone)
        if due >= now and (fired is None or year > int(fired)):
            return due, str(year)
        year += 1


def following_birthday(
    birthday: date, at: time, time_zone: str, fired: str
) -> tuple[datetime, str]:
    year = int(fired) + 1
    return _on(birthday_in(birthday, year), at, time_zone), str(year)


def renewal_due(ends_on: date, days_before: int, at: time, time_zone: str) -> datetime:
    return _on(ends_on - timedelta(days=days_before), at, time_zone)


def next_daily(at: time, time_zone: str, after: datetime) -> tuple[datetime, str]:
    """The first ``at`` on a later local day than ``after``'s, and that day."""
    day = after.astimezone(zone(time_zone)).date() + timedelta(days=1)
    return _on(day, at, time_zone), day.isoformat()


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Schedule:
    id: str
    rule: str
    customer_id: str
    due_at: datetime
    occurrence: str  # what the next firing is: a year, a local date, a renewal date
    status: ScheduleStatus
    params: Mapping[str, Any]
    fired: str | None
    version: int


class StaleSchedule(Exception):
    """Another scheduler fired or changed the schedule first."""


def birthday_id(customer_id: str) -> str:
    return f"{BIRTHDAY_GREETING}:{customer_id}"


def renewal_id(customer_id: str, contract_id: str, days_before: int) -> str:
    return f"{RENEWAL_REMINDER}:{customer_id}:{contract_id}:{days_before}"


def daily_id(complaint_id: str) -> str:
    return f"{COMPLAINT_DAILY_STATUS}:{complaint_id}"


def wanted_renewals(
    contracts: Iterable[tuple[str, str, date | None, bool]], offsets: Iterable[int]
) -> dict[tuple[str, int], tuple[str, date]]:
    """(contract, days before) → (product, end date) for every active contract with a date."""
    offsets = list(offsets)
    return {
        (contract_id, offset): (product, ends_on)
        for contract_id, product, ends_on, active in contracts
        if active and ends_on is not None
        for offset in offsets
    }
