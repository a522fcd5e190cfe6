"""The complaints stream worker: the contract topics it consumes.

The shared consumer (``shared.consumer``) takes a batch per poll, applies each event once
(by event id) in one unit of work and dead-letters what cannot be applied; the routes
(``handlers.routes``) move complaints with a customer merge and anonymise them on erasure;
the community's (``community.routes``) do the same for members' posts, and keep each
member's loyalty tier from analytics' ``crm.customer.segment_changed``.
"""

from __future__ import annotations

from shared.topics import CUSTOMERS, INSIGHTS

SUBSCRIPTIONS = [CUSTOMERS, INSIGHTS]
