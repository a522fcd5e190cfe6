"""Builds the profiles service from its settings: the one place that picks adapters."""

from __future__ import annotations

from fastapi import FastAPI

from services.profiles import worker
from services.profiles.settings import ProfilesSettings
from shared import ops
from shared.runtime import ServiceRuntime


def create_app(settings: ProfilesSettings) -> FastAPI:
    runtime = ServiceRuntime.build(
        settings, handlers=worker.handlers(), subscriptions=worker.SUBSCRIPTIONS
    )
    return runtime.http_app([ops.router])
