"""The running parts every service has, built from its settings and started together.

A service process runs its HTTP API and its stream worker on one event loop: uvicorn
serves FastAPI, whose lifespan starts the MongoDB client, the Faust app (its consumer
group and the process's one producer) and the outbox relay, and stops them in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI

from shared.auth import TokenService
from shared.consumer import EventConsumer, Handler, attach_agent
from shared.events import Event
from shared.http import create_http_app
from shared.kafka import FaustPublisher, create_faust_app
from shared.mongo import Database, MongoClient, Session, create_client, ping
from shared.outbox import Outbox, OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import TopicNames

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 3.0
FAUST_STOP_TIMEOUT = 30.0


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    client: MongoClient
    db: Database
    faust_app: Any
    publisher: FaustPublisher
    outbox: Outbox
    relay: OutboxRelay
    consumer: EventConsumer
    tokens: TokenService
    topics: TopicNames
    subscriptions: list[str] = field(default_factory=list)
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: ServiceSettings,
        *,
        handlers: Mapping[str, Handler],
        subscriptions: Sequence[str],
    ) -> ServiceRuntime:
        """Wire the adapters; nothing connects until :meth:`start`."""
        name = settings.service_name
        topics = TopicNames(settings.topic_prefix)
        client = create_client(settings.mongodb_uri, app_name=f"rapport-{name}")
        db = client[settings.mongodb_database]
        faust_app = create_faust_app(
            settings.consumer_group,
            settings.kafka_servers,
            datadir=str(settings.state_dir / settings.consumer_group),
        )
        publisher = FaustPublisher(faust_app)
        consumer = EventConsumer(
            service=name,
            client=client,
            db=db,
            publisher=publisher,
            handlers=handlers,
            topics=topics,
            max_attempts=settings.consumer_max_attempts,
        )
        subscribed = [topics(topic) for topic in subscriptions]
        if subscribed:
            attach_agent(faust_app, subscribed, consumer)
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        return cls(
            settings=settings,
            client=client,
            db=db,
            faust_app=faust_app,
            publisher=publisher,
            outbox=Outbox(db, topics),
            relay=OutboxRelay(
                db, publisher, name, poll_interval=settings.outbox_poll_interval_seconds
            ),
            consumer=consumer,
            tokens=TokenService(settings.secret, admin_token=admin_token),
            topics=topics,
            subscriptions=subscribed,
        )

    def on(self, event_type: str, handler: Handler) -> None:
        """Also handle ``event_type`` with ``handler``, after any handler it already has.

        Handlers of one event run in the same transaction: all their effects or none.
        """
        earlier = self.consumer.handlers.get(event_type)
        if earlier is None:
            self.consumer.handlers[event_type] = handler
            return

        async def both(event: Event[Any], session: Session) -> None:
            await earlier(event, session)
            await handler(event, session)

        self.consumer.handlers[event_type] = both

    async def start(self) -> None:
        await self.outbox.ensure_indexes()
        await self.consumer.ensure_indexes()
        for prepare in self.startup:  # e.g. the service's own indexes
            await prepare()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)  # Faust makes one level
        await self.faust_app.start()
        await self.relay.start()
        log.info(
            "%s started",
            self.settings.service_name,
            extra={"settings": self.settings.describe(), "subscriptions": self.subscriptions},
        )

    async def stop(self) -> None:
        for finish in reversed(self.shutdown):  # e.g. the service's background tasks
            await finish()
        await self.relay.stop()
        try:
            # Faust's shutdown can hang on its consumer thread (seen once in CI). Giving up
            # loses nothing: at worst the last uncommitted offsets are delivered again, to
            # idempotent handlers.
            await asyncio.wait_for(self.faust_app.stop(), FAUST_STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the stream worker did not stop within %s s", FAUST_STOP_TIMEOUT)
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
        return {"kafka": kafka, "mongodb": mongodb}

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
            service=self.settings.service_name,
            lifespan=self.lifespan,
            readiness=self.readiness,
            routers=routers,
            state={"tokens": self.tokens, "runtime": self, **state},
        )
        for error, handler in (exception_handlers or {}).items():
            app.add_exception_handler(error, handler)
        return app
