"""Builds the notifications service from its settings: the one place that picks adapters."""

from __future__ import annotations

from fastapi import FastAPI

from services.notifications import worker
from services.notifications.settings import NotificationsSettings
from shared import ops
from shared.runtime import ServiceRuntime


def create_app(settings: NotificationsSettings) -> FastAPI:
    runtime = ServiceRuntime.build(
        settings, handlers=worker.handlers(), subscriptions=worker.SUBSCRIPTIONS
    )
    return runtime.http_app([ops.router])
