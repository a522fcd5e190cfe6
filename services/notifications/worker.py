"""The notifications stream worker: the contract topics it consumes.

The shared consumer (``shared.consumer``) takes a batch per poll, applies each event once
(by event id) in one unit of work and dead-letters what cannot be applied; the routes
(``handlers.routes``) keep the customer directory and the schedules up to date and record
each notification decision in that same transaction.
"""

from __future__ import annotations

from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, CUSTOMERS, INSIGHTS, PURCHASES]
