"""The notifications stream worker: the topics it consumes and the handler per event type.

The shared Faust agent (``shared.consumer``) decodes each event, applies it once (by event
id) in a MongoDB transaction and dead-letters what cannot be applied; the handlers
(``handlers.event_handlers``) keep the customer directory and the schedules up to date and
record each notification decision in that same transaction.
"""

from __future__ import annotations

from services.notifications.handlers import Notifications, event_handlers
from shared.consumer import Handler
from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, CUSTOMERS, INSIGHTS, PURCHASES]


def handlers(notifications: Notifications) -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return event_handlers(notifications)
