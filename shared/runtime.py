"""The running parts every service has, built from its settings and started together.

A service process runs its HTTP API and its stream worker on one event loop: uvicorn
serves FastAPI, whose lifespan starts the MongoDB client, the process's one producer, the
outbox relay and the stream worker (its consumer group), and stops them in reverse. The
stream worker connects in the background, so the API serves at once. Every service
also keeps the customer tokens signed out (``revoked_tokens``, :mod:`shared.revocation`),
which its API refuses; a service that consumes ``crm.customers`` binds
``shared.revocation.routes`` to learn them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI
from pymongo.errors import ConnectionFailure

from shared.auth import TokenService
from shared.consumer import EventConsumer
from shared.http import create_http_app
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient, connect, ping
from shared.outbox import Outbox, OutboxRelay
from shared.revocation import RevocationStore
from shared.routing import BoundRoutes
from shared.settings import ServiceSettings
from shared.stream import StreamWorker
from shared.topics import TopicNames
from shared.unit_of_work import UnitsOfWork

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 3.0
# What a dependency that is down (or still starting) raises.
UNREACHABLE: tuple[type[Exception], ...] = (ConnectionFailure, KafkaError)


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    client: MongoClient
    db: Database
    publisher: AiokafkaPublisher
    outbox: Outbox
    relay: OutboxRelay
    units: UnitsOfWork
    workers: list[StreamWorker]  # ``consumer_streams`` of them, each with its consumer
    tokens: TokenService
    topics: TopicNames
    revocations: RevocationStore
    subscriptions: list[str] = field(default_factory=list)
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _steps: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    _starting: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: ServiceSettings, *, subscriptions: Sequence[str]) -> ServiceRuntime:
        """Wire the adapters; nothing connects until :meth:`start`. The service then
        names its event handlers with :meth:`handle`."""
        name = settings.service_name
        topics = TopicNames(settings.topic_prefix)
        client = connect(settings, app_name=f"rapport-{name}")
        db = client[settings.mongodb_database]
        publisher = AiokafkaPublisher(settings.kafka_servers, client_id=f"rapport-{name}")
        outbox = Outbox(db, topics)
        relay = OutboxRelay(
            db, publisher, name, poll_interval=settings.outbox_poll_interval_seconds
        )
        subscribed = [topics(topic) for topic in subscriptions]
        workers = [
            StreamWorker(
                EventConsumer(
                    service=name,
                    client=client,
                    db=db,
                    publisher=publisher,
                    routes=BoundRoutes(),
                    topics=topics,
                    outbox=outbox,
                    relay=relay,
                    max_attempts=settings.consumer_max_attempts,
                ),
                bootstrap_servers=settings.kafka_servers,
                group_id=settings.consumer_group,
                topics=subscribed,
                batch_size=settings.consumer_batch_size,
                linger=settings.consumer_linger_ms / 1000,
                session_timeout_ms=settings.consumer_session_timeout_ms,
            )
            for _ in range(settings.consumer_streams)
        ]
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        return cls(
            settings=settings,
            client=client,
            db=db,
            publisher=publisher,
            outbox=outbox,
            relay=relay,
            units=UnitsOfWork(client, outbox, relay),
            workers=workers,
            tokens=TokenService(settings.secret, admin_token=admin_token),
            topics=topics,
            revocations=RevocationStore(db),
            subscriptions=subscribed,
        )

    @property
    def consumer(self) -> EventConsumer:
        """The first stream's consumer (they all share the service's collections)."""
        return self.workers[0].consumer

    def handle(self, routes: BoundRoutes) -> None:
        """Also apply ``routes`` to each consumed batch, after the routes named before;
        all of a batch's handlers run in one unit of work: all their effects or none."""
        for worker in self.workers:
            worker.consumer.routes = worker.consumer.routes + routes

    async def start(self) -> None:
        """Start every part. When Kafka or MongoDB cannot be reached (a broker restarting
        after a crash), keep trying in the background with backoff: the API serves at
        once and ``/readyz`` answers 503 saying what is missing."""
        self._steps = [
            self.outbox.ensure_indexes,
            self.consumer.ensure_indexes,
            self.revocations.ensure_indexes,
            *self.startup,  # e.g. the service's own indexes and background loops
            self.publisher.start,
            self.relay.start,
            self._start_workers,
        ]
        try:
            await self._next_steps()
        except UNREACHABLE as error:
            log.warning("cannot start yet (%s: %s); retrying", type(error).__name__, error)
            self._starting = asyncio.create_task(self._keep_starting(), name="runtime-start")

    async def _next_steps(self) -> None:
        while self._steps:
            await self._steps[0]()
            self._steps.pop(0)
        log.info(
            "%s started",
            self.settings.service_name,
            extra={"settings": self.settings.describe(), "subscriptions": self.subscriptions},
        )

    async def _keep_starting(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._next_steps()
                return
            except UNREACHABLE as error:
                delay = min(delay * 2, 30.0)
                log.warning("still cannot start (%s); retrying in %.0f s", error, delay)

    async def _start_workers(self) -> None:
        for worker in self.workers:
            await worker.start()

    @property
    def started(self) -> bool:
        return not self._steps

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        # The stream workers first: each finishes (or abandons) its batch and leaves the group
        # while the producer can still take what that batch dead-letters.
        await asyncio.gather(*(worker.stop() for worker in self.workers))
        for finish in reversed(self.shutdown):  # e.g. the service's background tasks
            await finish()
        with contextlib.suppress(*UNREACHABLE):  # the lease expires by itself
            await self.relay.stop()
        await self.publisher.stop()
        await self.client.close()

    async def readiness(self) -> dict[str, str]:
        async def check(probe: Any) -> str:
            try:
                await asyncio.wait_for(probe, READINESS_TIMEOUT)
            except Exception as error:
                return f"unreachable: {type(error).__name__}: {error}"[:300]
            return "ok"

        kafka, mongodb = await asyncio.gather(
            check(self.publisher.ping()), check(ping(self.client))
        )
        stream = next((s for w in self.workers if (s := w.readiness()) != "ok"), "ok")
        checks = {"kafka": kafka, "mongodb": mongodb, "stream": stream}
        if not self.started:
            checks["startup"] = "waiting for the dependencies above"
        return checks

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def http_app(
        self,
        routers: Sequence[APIRouter],
        exception_handlers: Mapping[type[Exception], Any] | None = None,
        larger_bodies: dict[str, int] | None = None,
        **state: Any,
    ) -> FastAPI:
        app = create_http_app(
            larger_bodies=larger_bodies,
            cors_origins=self.settings.portal_origins,
            service=self.settings.service_name,
            lifespan=self.lifespan,
            readiness=self.readiness,
            routers=routers,
            # ``revocations``: the customer tokens signed out, which ``authenticate`` refuses.
            state={
                "tokens": self.tokens,
                "revocations": self.revocations,
                "runtime": self,
                **state,
            },
        )
        for error, handler in (exception_handlers or {}).items():
            app.add_exception_handler(error, handler)
        return app
