"""A service runtime wired to this test's topics and database, with handlers of the test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic_settings import SettingsConfigDict

from shared.events import Event, new_event
from shared.events.customers import CustomerErased
from shared.kafka import EventPublisher
from shared.mongo import Database, MongoClient, Session, in_transaction
from shared.outbox import Outbox, OutboxRelay
from shared.routing import BoundRoutes
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.topics import TopicNames


class HarnessSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_HARNESS_", extra="ignore")
    service_name: ClassVar[str] = "harness"


def harness_settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, database: str, **extra: Any
) -> HarnessSettings:
    return HarnessSettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        mongodb_database=database,
        **extra,
    )


@asynccontextmanager
async def running_runtime(
    settings: ServiceSettings, routes: BoundRoutes, subscriptions: Sequence[str]
) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime.build(settings, subscriptions=subscriptions)
    runtime.handle(routes)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 45.0, message: str = ""
) -> None:
    """Wait until ``check`` holds; fail with ``message`` when it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(message or "condition not reached in time")


def erased(customer_id: str, source: str = "/tests") -> Event[CustomerErased]:
    """A small, valid event to push through the outbox."""
    payload = CustomerErased.model_validate(
        {"customer_id": customer_id, "erased_at": "2026-11-22T12:00:00Z"}
    )
    return new_event(payload, source=source)


async def commit_to_outbox(client: MongoClient, outbox: Outbox, *events: Event[Any]) -> None:
    """Store events in the outbox in one transaction, as a service's handler does."""

    async def change(session: Session) -> None:
        await outbox.add(session, list(events))

    await in_transaction(client, change)


async def relay_once(db: Database, publisher: EventPublisher) -> int:
    """Publish what is pending with a relay that holds the lease, then hand it back."""
    relay = OutboxRelay(db, publisher, "tests")
    assert await relay.acquire_lease()
    try:
        return await relay.publish_pending()
    finally:
        await relay.stop()


class DrivenClock:
    """The service's clock; tests move it instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment.astimezone(UTC)
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
