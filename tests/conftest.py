"""Fixtures: a real broker and store per session (devstack), isolation per test.

Every test gets its own topic prefix (so its own topics and consumer groups) and its own
database, so tests can run side by side against the same servers, external ones included.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient, create_client
from shared.topics import TopicNames, ensure_topics

pytest_plugins = ["devstack.pytest_plugin"]


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def topics(kafka_bootstrap: str, test_id: str) -> AsyncIterator[TopicNames]:
    """The contract's topics under a prefix of this test's own, deleted afterwards.

    Deleting them (and the stream workers' internal topics under the same prefix) keeps
    the session's broker small: each partition holds open files.
    """
    names = TopicNames(f"test-{test_id}.")
    await ensure_topics([kafka_bootstrap], names)
    await visible(kafka_bootstrap, set(names.all()))
    yield names
    await delete_topics(kafka_bootstrap, names.prefix)


async def visible(kafka_bootstrap: str, wanted: set[str], wait: float = 15.0) -> None:
    """Wait until the broker's metadata lists ``wanted``: creation returns once the
    controller has the topics, a moment before every listener serves them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="rapport-tests")
    await admin.start()
    try:
        deadline = time.monotonic() + wait
        while missing := wanted - set(await admin.list_topics()):
            assert time.monotonic() < deadline, f"topics never appeared: {sorted(missing)}"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(kafka_bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="rapport-tests")
    await admin.start()
    try:
        mine = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine, timeout_ms=30_000)
    finally:
        await admin.close()


@pytest.fixture
async def mongo_client(mongodb_uri: str) -> AsyncIterator[MongoClient]:
    client = create_client(mongodb_uri, app_name="rapport-tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def db(mongo_client: MongoClient, test_id: str) -> AsyncIterator[Database]:
    database = mongo_client[f"test_{test_id}"]
    try:
        yield database
    finally:
        await mongo_client.drop_database(database.name)


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[AiokafkaPublisher]:
    producer = AiokafkaPublisher([kafka_bootstrap], client_id="rapport-tests")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
