"""The complaints stream worker: the contract topics it consumes.

The shared consumer (``shared.consumer``) takes a batch per poll, applies each event once
(by event id) in one unit of work and dead-letters what cannot be applied; the routes
(``handlers.routes``) move complaints with a customer merge and anonymise them on erasure.
"""

from __future__ import annotations

from shared.topics import CUSTOMERS

SUBSCRIPTIONS = [CUSTOMERS]
