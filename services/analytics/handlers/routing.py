"""The analytics routes: every handler module's routes, in the order they run.

Several handlers of one payload type run in the order they were registered, so the order
here is the order of the former single module: a refunding ``ComplaintResolved`` counts as
a return (``purchases``) before the complaint itself is applied (``complaints``), and the
``after_batch`` step (``judging``) runs once every event of the batch was applied.
"""

from __future__ import annotations

from services.analytics.handlers import complaints, customers, judging, notifications, purchases
from services.analytics.handlers.context import Analytics
from shared.routing import Routes

routes: Routes[Analytics] = Routes()
for part in (
    customers.routes,
    purchases.routes,
    complaints.routes,
    notifications.routes,
    judging.routes,
):
    routes.include(part)
