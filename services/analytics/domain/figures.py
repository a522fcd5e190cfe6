"""Time windows, series buckets and metrics, and the small helpers every figure is
measured with (money, percentages, nearest-rank percentiles, window membership)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum


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
