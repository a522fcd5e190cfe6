"""HTTP conventions and auth, on a real service app against the real broker and store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field, ValidationError

from devstack.ports import free_port
from services.profiles.bootstrap import create_app
from services.profiles.settings import ProfilesSettings
from shared.auth import Principal, Role, TokenService
from shared.errors import Conflict, Forbidden
from shared.http import create_http_app
from shared.mongo import Database
from shared.topics import TopicNames

PROBLEM = "application/problem+json"
ADMIN_TOKEN = "static-admin-token-for-tests"


@pytest.fixture
def settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> ProfilesSettings:
    return ProfilesSettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        mongodb_database=db.name,
        admin_token=ADMIN_TOKEN,
    )


async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://profiles") as client:
            yield client


@pytest.fixture
async def client(settings: ProfilesSettings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(create_app(settings)):
        yield client


@pytest.fixture
def tokens(settings: ProfilesSettings) -> TokenService:
    return TokenService(settings.secret)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_health_readiness_metrics_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    # The stream worker joins its group in the background; readiness waits for it.
    for _ in range(100):
        ready = await client.get("/readyz")
        if ready.status_code == 200:
            break
        assert ready.json()["checks"]["stream"] == "connecting"
        await asyncio.sleep(0.1)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"kafka": "ok", "mongodb": "ok", "stream": "ok"}
    metrics = await client.get("/metrics")
    assert (
        'rapport_http_requests_total{method="GET",route="/readyz",service="profiles"'
        in metrics.text
    )
    openapi = (await client.get("/openapi.json")).json()
    assert "/api/v1/me" in openapi["paths"]


async def test_readiness_is_503_when_the_store_is_unreachable(
    settings: ProfilesSettings,
) -> None:
    unreachable = settings.model_copy(
        update={
            "mongodb_uri": "mongodb://127.0.0.1:9/?retryWrites=false&serverSelectionTimeoutMS=500"
        }
    )
    app = create_app(unreachable)
    runtime = app.state.runtime
    # Index creation needs the store, so start only what readiness needs to report on.
    await runtime.publisher.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            response = await client.get("/readyz")
    finally:
        await runtime.publisher.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    checks = response.json()["checks"]
    assert checks["kafka"] == "ok"
    assert checks["mongodb"].startswith("unreachable")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer"),
        ({"Authorization": "Bearer not-a-jwt"}, "not valid"),
    ],
)
async def test_requests_without_a_valid_token_get_401_problem(
    client: httpx.AsyncClient, headers: dict[str, str], detail: str
) -> None:
    response = await client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["status"] == 401
    assert detail in body["detail"]


async def test_expired_and_foreign_tokens_are_refused(
    client: httpx.AsyncClient, tokens: TokenService
) -> None:
    expired = tokens.mint("ana", {Role.AGENT}, ttl=timedelta(seconds=-1))
    forged = TokenService("some-other-secret-of-at-least-32-characters").mint("eve", {Role.ADMIN})
    for token, detail in ((expired, "expired"), (forged, "not valid")):
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert detail in response.json()["detail"]


async def test_roles_are_enforced_with_403(client: httpx.AsyncClient, tokens: TokenService) -> None:
    agent = tokens.mint("ana", {Role.AGENT})
    customer = tokens.mint("self", {Role.CUSTOMER}, customer_id="c-1")
    for token in (agent, customer):
        response = await client.get("/api/v1/outbox", headers=bearer(token))
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM
        assert "admin" in response.json()["detail"]
    admin = tokens.mint("root", {Role.ADMIN})
    for token in (admin, ADMIN_TOKEN):
        response = await client.get("/api/v1/outbox", headers=bearer(token))
        assert response.status_code == 200
        assert response.json() == {"service": "profiles", "pending": 0}


async def test_a_customer_token_is_bound_to_its_customer(
    client: httpx.AsyncClient, tokens: TokenService
) -> None:
    token = tokens.mint("self", {Role.CUSTOMER}, customer_id="c-1")
    me = (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert me == {"subject": "self", "roles": ["customer"], "customer_id": "c-1"}
    principal = Principal("self", frozenset({Role.CUSTOMER}), customer_id="c-1")
    principal.ensure_may_access_customer("c-1")
    with pytest.raises(Forbidden):
        principal.ensure_may_access_customer("c-2")
    Principal("ana", frozenset({Role.AGENT})).ensure_may_access_customer("c-2")
    with pytest.raises(ValueError, match="bound to one customer"):
        tokens.mint("self", {Role.CUSTOMER})


async def test_trace_context_from_the_request_comes_back(client: httpx.AsyncClient) -> None:
    trace_id = uuid.uuid4().hex
    response = await client.get("/healthz", headers={"traceparent": f"00-{trace_id}-{'2' * 16}-01"})
    assert response.headers["traceparent"].split("-")[1] == trace_id


class Order(BaseModel):
    quantity: int = Field(ge=1)


async def test_errors_are_problem_json_with_the_right_status(
    settings: ProfilesSettings,
) -> None:
    router = APIRouter()

    @router.post("/orders")
    async def order(body: Order) -> dict[str, int]:
        if body.quantity == 7:
            raise Conflict("order 7 exists", existing_id="o-7")
        if body.quantity == 13:
            raise RuntimeError("database exploded at /var/secret")
        return {"quantity": body.quantity}

    app = create_app(settings)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
        invalid = await client.post("/orders", json={"quantity": 0})
        conflict = await client.post("/orders", json={"quantity": 7})
        missing = await client.get("/nowhere")
        crash = await client.post("/orders", json={"quantity": 13})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == PROBLEM
    assert invalid.json()["errors"][0]["location"] == ["body", "quantity"]
    assert conflict.status_code == 409
    assert conflict.json()["existing_id"] == "o-7"
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert crash.status_code == 500
    assert crash.headers["content-type"] == PROBLEM
    assert "secret" not in crash.text


async def test_oversize_bodies_get_413_declared_or_streamed(settings: ProfilesSettings) -> None:
    router = APIRouter()

    @router.post("/orders")
    async def order(body: Order) -> dict[str, int]:
        return {"quantity": body.quantity}

    app = create_app(settings)
    app.include_router(router)
    big = b'{"quantity": 1, "padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
        declared = await client.post(
            "/orders", content=big, headers={"Content-Type": "application/json"}
        )
        chunked = await client.post(
            "/orders", content=streamed(), headers={"Content-Type": "application/json"}
        )
        small = await client.post("/orders", json={"quantity": 2})
    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
    assert small.json() == {"quantity": 2}


class Forwarder:
    """A TCP port that refuses connections until :meth:`open`, then forwards them to
    ``target``: a dependency that is down at a service's start and comes up later."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.mark.parametrize("dependency", ["mongodb", "kafka"])
async def test_a_service_whose_dependency_is_down_at_start_serves_and_recovers_when_it_comes_up(
    dependency: str, settings: ProfilesSettings, mongodb_uri: str, kafka_bootstrap: str
) -> None:
    """MongoDB or Kafka down at start (a broker restarting after a crash): the service
    does not exit; it serves HTTP at once, says 503 "startup" on /readyz, retries with
    backoff and becomes ready when the dependency comes up."""
    if dependency == "mongodb":
        target = mongodb_uri.removeprefix("mongodb://").split("/", 1)[0]
        down = Forwarder(target)
        later = settings.model_copy(
            update={"mongodb_uri": f"mongodb://127.0.0.1:{down.port}/?retryWrites=false"}
        )
    else:
        # Only the bootstrap goes through the forwarder; the broker's metadata then names
        # its own listener, which is as good as the broker coming up.
        down = Forwarder(kafka_bootstrap.split(",", maxsplit=1)[0])
        later = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{down.port}"})
    app = create_app(later)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
                assert (await client.get("/healthz")).status_code == 200
                waiting = await client.get("/readyz")
                assert waiting.status_code == 503
                assert waiting.json()["checks"][dependency].startswith("unreachable")
                assert "startup" in waiting.json()["checks"]

                await down.open()
                for _ in range(300):
                    ready = await client.get("/readyz")
                    if ready.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
                assert ready.status_code == 200, ready.json()
                me = await client.get("/api/v1/me", headers=bearer(ADMIN_TOKEN))
                assert me.status_code == 200
    finally:
        await down.close()


PORTAL = "http://127.0.0.1:8001"


def app_with_cors(*origins: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    async def ready() -> dict[str, str]:
        return {}

    router = APIRouter()

    @router.get("/api/v1/thing")
    async def thing() -> dict[str, str]:
        return {"thing": "yes"}

    @router.get("/api/v1/refused")
    async def refused() -> dict[str, str]:
        raise Forbidden("not yours")

    return create_http_app(
        service="t", lifespan=lifespan, readiness=ready, routers=[router], cors_origins=origins
    )


async def test_the_portal_may_call_from_its_origin_and_no_other_origin_may() -> None:
    transport = httpx.ASGITransport(app=app_with_cors(PORTAL))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        preflight = await http.options(
            "/api/v1/thing",
            headers={
                "Origin": PORTAL,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,content-type,if-match",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PORTAL
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        assert "if-match" in preflight.headers["access-control-allow-headers"].lower()
        # Tokens travel in a header, never as cookies: no credentials, ever.
        assert "access-control-allow-credentials" not in preflight.headers

        answer = await http.get("/api/v1/thing", headers={"Origin": PORTAL})
        assert answer.headers["access-control-allow-origin"] == PORTAL
        assert "etag" in answer.headers["access-control-expose-headers"].lower()
        refused = await http.get("/api/v1/refused", headers={"Origin": PORTAL})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["access-control-allow-origin"] == PORTAL  # the page reads why

        stranger = await http.options(
            "/api/v1/thing",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers
        read = await http.get("/api/v1/thing", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in read.headers

    transport = httpx.ASGITransport(app=app_with_cors())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        unset = await http.get("/api/v1/thing", headers={"Origin": PORTAL})
        assert "access-control-allow-origin" not in unset.headers


def test_portal_origins_are_plain_origins_never_a_wildcard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_PORTAL_ORIGINS", f"{PORTAL}, HTTP://LOCALHOST:8001")
    assert ProfilesSettings().portal_origins == [PORTAL, "http://localhost:8001"]
    monkeypatch.setenv("RAPPORT_PORTAL_ORIGINS", f'["{PORTAL}"]')  # as the Helm chart says it
    assert ProfilesSettings().portal_origins == [PORTAL]
    monkeypatch.delenv("RAPPORT_PORTAL_ORIGINS")
    assert ProfilesSettings().portal_origins == []
    for wrong in ("*", "http://portal.example/portal", "portal.example", "https://*.example.com"):
        with pytest.raises(ValidationError, match="is not an origin"):
            ProfilesSettings(portal_origins=wrong)
