"""The profiles stream worker: the contract topics it consumes and the routes of its events.

The shared consumer (``shared.consumer``) takes a batch per poll, applies each event once
(by event id) in one unit of work and dead-letters what cannot be applied; the routes
are the use cases: purchases, returns and complaint refunds reach the ledger
(``purchases.routes``), complaint and notification events the timeline
(``timeline.routes``). A refunding resolution is both, in the same transaction.
"""

from __future__ import annotations

from shared.topics import COMPLAINTS, NOTIFICATIONS, PURCHASES

SUBSCRIPTIONS = [COMPLAINTS, NOTIFICATIONS, PURCHASES]
