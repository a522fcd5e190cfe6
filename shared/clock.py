"""The clock use cases take as a parameter, so tests move time instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, timezone-aware UTC: the default ``Clock``."""
    return datetime.now(UTC)
