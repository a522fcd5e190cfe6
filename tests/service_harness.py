"""A service runtime wired to this test's topics and database, with handlers of the test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from pydantic_settings import SettingsConfigDict

from shared.consumer import Handler
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
    settings: ServiceSettings, handlers: Mapping[str, Handler], subscriptions: Sequence[str]
) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime.build(settings, handlers=handlers, subscriptions=subscriptions)
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
