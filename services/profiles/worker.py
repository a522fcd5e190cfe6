"""The profiles stream worker: the contract topics it consumes and a handler per event type.

The shared Faust agent (``shared.consumer``) decodes each event, applies it once (by event
id) and dead-letters what cannot be applied; the handlers here are the use cases. One
event type may have several handlers (a refunding resolution is a ledger entry and a
timeline entry); they run in one transaction.
"""

from __future__ import annotations

from services.profiles import purchases
from services.profiles.purchases import Ledger
from services.profiles.timeline import RECORDED_EVENT_TYPES
from shared.consumer import Handler
from shared.topics import COMPLAINTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, NOTIFICATIONS, PURCHASES]


def handlers(ledger: Ledger, timeline_recorder: Handler) -> list[tuple[str, Handler]]:
    """(event type, handler) pairs; types without one are acknowledged and skipped."""
    pairs = list(purchases.handlers(ledger).items())
    pairs += [(event_type, timeline_recorder) for event_type in RECORDED_EVENT_TYPES]
    return pairs
