"""Builds the analytics service from its settings: the one place that picks adapters."""

from __future__ import annotations

from fastapi import FastAPI

from services.analytics import api, dashboard, worker
from services.analytics.handlers.context import Analytics
from services.analytics.handlers.recompute import Recomputer
from services.analytics.handlers.routing import routes
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import ops, revocation
from shared.runtime import ServiceRuntime


def create_app(settings: AnalyticsSettings) -> FastAPI:
    runtime = ServiceRuntime.build(settings, subscriptions=worker.SUBSCRIPTIONS)
    store = AnalyticsStore(runtime.db)
    analytics = Analytics(
        client=runtime.client, store=store, outbox=runtime.outbox, relay=runtime.relay
    )
    runtime.handle(routes.bind(analytics))
    runtime.handle(revocation.routes.bind(runtime.revocations))  # customers' sign-outs
    recomputer = Recomputer(
        analytics, settings.recompute_interval_seconds, settle=settings.regrade_settle_seconds
    )
    analytics.regrade, analytics.regrade_growth = recomputer.wake, settings.regrade_growth
    runtime.startup += [store.ensure_indexes, recomputer.start]
    runtime.shutdown.append(recomputer.stop)
    routers = [ops.router, api.router, dashboard.router]
    return runtime.http_app(routers, analytics=analytics, recomputer=recomputer)
