"""The analytics stream worker: the contract topics it consumes.

The shared consumer (``shared.consumer``) takes a batch per poll, applies each event once
(by event id, in one unit of work with the effect) and dead-letters what cannot be
applied; the routes (``handlers.routing``) keep the read models. Its own ``crm.insights``
events are read and acknowledged without effect, so figures never feed on themselves.
"""

from __future__ import annotations

from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, CUSTOMERS, INSIGHTS, NOTIFICATIONS, PURCHASES]
