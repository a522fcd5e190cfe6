"""The analytics stream worker: the contract topics it consumes and the handler per event type.

The shared Faust agent (``shared.consumer``) decodes each event, applies it once (by event
id, in one MongoDB transaction with the effect) and dead-letters what cannot be applied;
the handlers (``handlers.event_handlers``) keep the read models. Its own ``crm.insights``
events are read and acknowledged without effect, so figures never feed on themselves.
"""

from __future__ import annotations

from services.analytics.handlers import Analytics, event_handlers
from shared.consumer import Handler
from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, CUSTOMERS, INSIGHTS, NOTIFICATIONS, PURCHASES]


def handlers(analytics: Analytics) -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return event_handlers(analytics)
