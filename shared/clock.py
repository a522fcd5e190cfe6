"""The clock use cases take as a parameter, so tests move time instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, timezone-aware UTC: the default ``Clock``."""
    return datetime.now(UTC)


def to_millisecond(moment: datetime) -> datetime:
    """``moment`` as the store keeps it (BSON dates): UTC, to the millisecond, so what is
    held in memory equals what is read back."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
