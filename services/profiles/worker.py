"""The profiles stream worker: the contract topics it consumes and the handler per event type."""

from __future__ import annotations

from shared.consumer import Handler
from shared.topics import COMPLAINTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, NOTIFICATIONS, PURCHASES]


def handlers() -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return {}
