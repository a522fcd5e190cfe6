"""HTTP conventions of every service: problem+json errors, health, readiness, metrics.

Routes raise domain errors (:mod:`shared.errors`); one handler maps them to RFC 9457
``application/problem+json``, as it does for validation errors, unknown routes and
crashes (whose details are logged, never sent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import RapportError, validation_errors
from shared.observability import HTTP_LATENCY, HTTP_REQUESTS, current_trace_context, span_from

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(jsonable_encoder(extensions))
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RapportError)
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return problem(
            error.status,
            error.title,
            error.detail,
            instance=request.url.path,
            headers=headers,
            **error.extensions,
        )

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return problem(
            422,
            "Invalid request",
            "the request does not match the API's schema",
            instance=request.url.path,
            errors=validation_errors(error.errors()),
        )

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return problem(
            error.status_code,
            _title(error.status_code),
            str(error.detail) if error.detail else None,
            instance=request.url.path,
            headers=dict(error.headers) if error.headers else None,
        )

    async def crash(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal server error", instance=request.url.path)

    app.add_exception_handler(RapportError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


DEFAULT_MAX_BODY = 1024 * 1024
# What a browser page (the customer portal) on another origin may send and read.
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type", "If-Match", "Accept-Language", "traceparent")
CORS_EXPOSED = ("ETag", "Location")


class BodySizeLimit:
    """Refuses request bodies over a limit with 413, before the app reads them.

    The declared ``Content-Length`` is checked first; a body sent without one is counted
    as it streams in. ``larger`` names paths that may take more (e.g. file imports).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The app sees the body end here; whatever it answers is replaced.
                    exceeded = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if exceeded:
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(
            413, "Payload too large", f"the request body is larger than {limit} bytes"
        )
        await response(scope, receive, send)


def create_http_app(
    *,
    service: str,
    lifespan: Lifespan,
    readiness: ReadinessCheck,
    routers: Sequence[APIRouter] = (),
    state: dict[str, Any] | None = None,
    larger_bodies: dict[str, int] | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The FastAPI app of a service, with the platform's conventions built in.

    ``cors_origins`` may call the API from a browser page (the customer portal). Bearer
    tokens are sent in a header, never as cookies, so credentials are not allowed.
    """
    app = FastAPI(
        title=f"Rapport {service}",
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        responses={
            401: {"description": "Missing or invalid bearer token (problem+json)"},
            403: {"description": "The token's role may not do this (problem+json)"},
            422: {"description": "Invalid request (problem+json)"},
        },
    )
    app.add_middleware(BodySizeLimit, larger=larger_bodies)
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    install_problem_handlers(app)

    @app.middleware("http")
    async def trace_and_measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        with span_from(dict(request.headers), f"{request.method} {request.url.path}"):
            response = await call_next(request)
            response.headers.update(current_trace_context())
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(service, request.method, template, response.status_code).inc()
        HTTP_LATENCY.labels(service, template).observe(time.perf_counter() - started)
        return response

    if cors_origins:  # added last, so outermost: refusals (401, 413, ...) carry it too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_credentials=False,
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_HEADERS),
            expose_headers=list(CORS_EXPOSED),
            max_age=600,
        )

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["operations"], summary="Kafka and MongoDB are reachable")
    async def readyz() -> Response:
        checks = await readiness()
        if all(result == "ok" for result in checks.values()):
            return JSONResponse({"status": "ready", "service": service, "checks": checks})
        return problem(503, "Service Unavailable", "a dependency is unreachable", checks=checks)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
