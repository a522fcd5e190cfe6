"""The complaints stream worker: the contract topics it consumes and the handler per event type.

The shared Faust agent (``shared.consumer``) decodes each event, applies it once (by event
id) and dead-letters what cannot be applied; the handlers (``handlers.event_handlers``)
move complaints with a customer merge and anonymise them on erasure.
"""

from __future__ import annotations

from services.complaints.handlers import Complaints, event_handlers
from shared.consumer import Handler
from shared.topics import CUSTOMERS

SUBSCRIPTIONS = [CUSTOMERS]


def handlers(complaints: Complaints) -> dict[str, Handler]:
    """Event type to handler; types without one are acknowledged and skipped."""
    return event_handlers(complaints)
