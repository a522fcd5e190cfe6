"""Business time: SLA clocks count working hours only, in the calendar's own zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from services.complaints.calendar import BusinessCalendar, Weekday, WorkingHours

ZAGREB = BusinessCalendar()  # Mon-Fri 09:00-17:00 Europe/Zagreb


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_eight_hours_opened_friday_afternoon_fall_due_monday_across_the_weekend() -> None:
    # Friday 2026-11-20 15:00 Zagreb (UTC+1): 2 h left that day, 6 h on Monday.
    due = ZAGREB.add(at("2026-11-20T15:00:00+01:00"), timedelta(hours=8))
    assert due == at("2026-11-23T15:00:00+01:00")


def test_a_holiday_is_skipped_like_a_weekend() -> None:
    calendar = ZAGREB.model_copy(update={"holidays": [date(2026, 11, 23)]})
    due = calendar.add(at("2026-11-20T15:00:00+01:00"), timedelta(hours=8))
    assert due == at("2026-11-24T15:00:00+01:00")
    assert calendar.between(at("2026-11-20T15:00:00+01:00"), due) == timedelta(hours=8)


def test_time_outside_working_hours_starts_counting_at_the_next_opening() -> None:
    saturday_night = at("2026-11-21T23:00:00+01:00")
    assert ZAGREB.add(saturday_night, timedelta(0)) == at("2026-11-23T09:00:00+01:00")
    assert ZAGREB.add(saturday_night, timedelta(hours=1)) == at("2026-11-23T10:00:00+01:00")
    assert ZAGREB.between(saturday_night, at("2026-11-23T08:59:00+01:00")) == timedelta(0)


def test_business_time_between_counts_only_working_hours() -> None:
    start, end = at("2026-11-19T16:00:00+01:00"), at("2026-11-24T10:30:00+01:00")
    # Thu 1 h, Fri 8 h, Mon 8 h, Tue 1.5 h
    assert ZAGREB.between(start, end) == timedelta(hours=18, minutes=30)
    assert ZAGREB.between(end, start) == timedelta(0)


def test_daylight_saving_change_keeps_local_working_hours() -> None:
    # Zagreb moves to summer time on Sunday 2026-03-29; Monday opens at 09:00 CEST (07:00 UTC).
    due = ZAGREB.add(at("2026-03-27T16:00:00+01:00"), timedelta(hours=2))
    assert due == at("2026-03-30T10:00:00+02:00")


def test_split_working_hours_and_other_time_zones() -> None:
    calendar = BusinessCalendar(
        time_zone="Asia/Tehran",
        week={
            Weekday.SAT: [
                WorkingHours(start=time(8), end=time(12)),
                WorkingHours(start=time(13), end=time(16)),
            ]
        },
    )
    start = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)  # Saturday 14:30 in Tehran
    # 1.5 h until 16:00, the remaining 0.5 h next Saturday from 08:00 (04:30 UTC)
    assert calendar.add(start, timedelta(hours=2)) == datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "week",
    [
        {},
        {"mon": [{"start": "17:00", "end": "09:00"}]},
        {"mon": [{"start": "09:00", "end": "13:00"}, {"start": "12:00", "end": "17:00"}]},
    ],
)
def test_a_calendar_without_sane_working_hours_is_refused(week: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BusinessCalendar.model_validate({"week": week})


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="IANA"):
        BusinessCalendar.model_validate({"time_zone": "Mars/Olympus"})
