"""Builds the analytics service from its settings: the one place that picks adapters."""

from __future__ import annotations

from fastapi import FastAPI

from services.analytics import worker
from services.analytics.settings import AnalyticsSettings
from shared import ops
from shared.runtime import ServiceRuntime


def create_app(settings: AnalyticsSettings) -> FastAPI:
    runtime = ServiceRuntime.build(
        settings, handlers=worker.handlers(), subscriptions=worker.SUBSCRIPTIONS
    )
    return runtime.http_app([ops.router])
