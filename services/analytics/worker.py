"""The analytics stream worker: the contract topics it consumes and the handler per event type."""

from __future__ import annotations

from shared.consumer import Handler
from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, CUSTOMERS, INSIGHTS, NOTIFICATIONS, PURCHASES]


def handlers() -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return {}
