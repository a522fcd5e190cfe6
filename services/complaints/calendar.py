"""Business time: the working hours an SLA clock counts, in a calendar's own time zone.

Pure. A calendar names its working hours per weekday (local wall-clock time), its time
zone and its holidays; :meth:`BusinessCalendar.add` finds the instant a given amount of
business time after a start, :meth:`BusinessCalendar.between` measures the business time
between two instants. Arithmetic is done on UTC instants, so days with a daylight-saving
change count the hours that really pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

DEFAULT_CALENDAR = "default"
# A calendar that finds no working time within this horizon is treated as broken.
HORIZON_DAYS = 366 * 5


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


WEEKDAYS = list(Weekday)


def check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Zagreb'") from None
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(check_time_zone)]


class WorkingHours(BaseModel):
    """One stretch of working time in a day, local time, ``start`` inclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("working hours are local times, without a zone")
        if self.end <= self.start:
            raise ValueError(f"working hours end ({self.end}) must be after they start")
        return self


class BusinessCalendar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: TimeZone = "Europe/Zagreb"
    week: dict[Weekday, Annotated[list[WorkingHours], Field(max_length=8)]] = Field(
        default_factory=lambda: {
            day: [WorkingHours(start=time(9), end=time(17))] for day in WEEKDAYS[:5]
        }
    )
    holidays: list[date] = Field(default_factory=list, max_length=2000)

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if not any(self.week.values()):
            raise ValueError("a calendar needs working hours on at least one weekday")
        for day, hours in self.week.items():
            ordered = sorted(hours, key=lambda stretch: stretch.start)
            for earlier, later in pairwise(ordered):
                if later.start < earlier.end:
                    raise ValueError(f"working hours on {day} overlap")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def _windows(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working windows (UTC) from the local day of ``start`` on, in order."""
        zone = self.zone
        holidays = set(self.holidays)
        day = start.astimezone(zone).date()
        for _ in range(HORIZON_DAYS):
            if day not in holidays:
                hours = self.week.get(WEEKDAYS[day.weekday()], [])
                for stretch in sorted(hours, key=lambda s: s.start):
                    opens = datetime.combine(day, stretch.start, zone).astimezone(UTC)
                    closes = datetime.combine(day, stretch.end, zone).astimezone(UTC)
                    if closes > start:
                        yield max(opens, start), closes
            day += timedelta(days=1)

    def add(self, start: datetime, business: timedelta) -> datetime:
        """The instant ``business`` working time after ``start`` (the next working
        moment when ``business`` is zero)."""
        remaining = max(business, timedelta(0))
        for opens, closes in self._windows(_utc(start)):
            available = closes - opens
            if remaining <= available:
                return opens + remaining
            remaining -= available
        raise ValueError("the calendar has no working time within five years")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time from ``start`` to ``end`` (zero when ``end`` is not later)."""
        start, end = _utc(start), _utc(end)
        total = timedelta(0)
        if end <= start:
            return total
        for opens, closes in self._windows(start):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("business time needs timezone-aware instants")
    return moment.astimezone(UTC)
