"""Builds the complaints service from its settings: the one place that picks adapters."""

from __future__ import annotations

from fastapi import FastAPI

from services.complaints import worker
from services.complaints.settings import ComplaintsSettings
from shared import ops
from shared.runtime import ServiceRuntime


def create_app(settings: ComplaintsSettings) -> FastAPI:
    runtime = ServiceRuntime.build(
        settings, handlers=worker.handlers(), subscriptions=worker.SUBSCRIPTIONS
    )
    return runtime.http_app([ops.router])
