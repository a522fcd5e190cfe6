"""The notifications stream worker: topics it consumes and the handler per event type."""

from __future__ import annotations

from shared.consumer import Handler
from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, CUSTOMERS, INSIGHTS, PURCHASES]


def handlers() -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return {}
