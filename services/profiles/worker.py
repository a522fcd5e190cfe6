"""The profiles stream worker: the contract topics it consumes and a handler per event type.

The shared Faust agent (``shared.consumer``) decodes each event, applies it once (by event
id) and dead-letters what cannot be applied; the handlers here are the use cases.
"""

from __future__ import annotations

from shared.consumer import Handler
from shared.topics import COMPLAINTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, NOTIFICATIONS, PURCHASES]


def handlers() -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return {}
