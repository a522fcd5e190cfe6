"""Runs a service's FastAPI app (API and stream worker on one loop) under uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shared.observability import configure_logging, configure_tracing
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def serve(settings: S, create_app: Callable[[S], FastAPI]) -> None:
    configure_logging(settings.log_level, settings.service_name)
    configure_tracing(settings.service_name)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
