"""Transactional outbox: a crash can neither lose an event nor apply one twice."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import Sequence

from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events import Event, KafkaRecord
from shared.events.customers import CustomerErased
from shared.kafka import AiokafkaPublisher, EventPublisher
from shared.mongo import Database, MongoClient
from shared.observability import span_from
from shared.outbox import Outbox, OutboxRelay
from shared.routing import Routes
from shared.topics import CUSTOMERS, TopicNames
from shared.unit_of_work import UnitOfWork
from tests.kafka_reading import Records, read_topic
from tests.service_harness import commit_to_outbox, erased, relay_once


def records_with_id(records: Records, event_id: str) -> Records:
    return [record for record in records if event_id.encode() in (record.value or b"")]


async def test_event_committed_before_a_crash_is_published_exactly_once_after_restart(
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    event_id = str(uuid.uuid4())
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.outbox_crash_child",
        mongodb_uri,
        db.name,
        topics.prefix,
        event_id,
    )
    assert await child.wait() == -signal.SIGKILL

    # The change and its event were committed together; nothing is published yet.
    assert await db["customers"].find_one({"_id": "c-9"}) is not None
    topic = topics(CUSTOMERS)
    assert records_with_id(await read_topic(kafka_bootstrap, topic), event_id) == []

    relay = OutboxRelay(db, publisher, "tests")
    assert await relay.acquire_lease()
    assert await relay.publish_pending() == 1
    restarted = OutboxRelay(db, publisher, "tests", lease_ttl=relay.lease_ttl)
    await relay.stop()  # hands the lease over, as a clean shutdown does
    assert await restarted.acquire_lease()
    assert await restarted.publish_pending() == 0
    assert await restarted.pending_count() == 0

    published = records_with_id(await read_topic(kafka_bootstrap, topic), event_id)
    assert len(published) == 1
    assert published[0].key == b"c-9"


class DiesAfterPublishing:
    """Publishes, then fails as a process killed before marking the batch would."""

    def __init__(self, inner: EventPublisher) -> None:
        self.inner = inner

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        await self.inner.publish(records)
        raise ConnectionResetError("killed after publishing, before marking")


async def test_event_republished_after_a_crash_is_applied_once(
    kafka_bootstrap: str,
    mongo_client: MongoClient,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    event = erased("c-7")
    await commit_to_outbox(mongo_client, Outbox(db, topics), event)
    crashing = OutboxRelay(db, DiesAfterPublishing(publisher), "tests")
    assert await crashing.acquire_lease()
    with contextlib.suppress(ConnectionResetError):
        await crashing.publish_pending()
    assert await crashing.pending_count() == 1  # not marked: it will be published again
    await crashing.stop()
    assert await relay_once(db, publisher) == 1

    copies = records_with_id(await read_topic(kafka_bootstrap, topics(CUSTOMERS)), event.id)
    assert len(copies) == 2
    applied: list[str] = []

    routes: Routes[None] = Routes()

    @routes.on(CustomerErased)
    async def erase(_: None, received: Event[CustomerErased], uow: UnitOfWork) -> None:
        applied.append(received.id)

    consumer = EventConsumer(
        service="tests",
        client=mongo_client,
        db=db,
        publisher=publisher,
        routes=routes.bind(None),
        topics=topics,
        outbox=Outbox(db, topics),
    )
    outcomes = [
        await consumer.handle(
            IncomingMessage(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                list(record.headers),
            )
        )
        for record in copies
    ]
    assert outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE]
    assert applied == [event.id]


async def test_only_one_relay_publishes_at_a_time(
    db: Database, publisher: AiokafkaPublisher
) -> None:
    first = OutboxRelay(db, publisher, "tests")
    second = OutboxRelay(db, publisher, "tests")
    assert await first.acquire_lease()
    assert not await second.acquire_lease()
    assert await first.acquire_lease()  # renewing its own lease
    await first.stop()
    assert await second.acquire_lease()


async def test_the_running_relay_publishes_events_with_the_current_trace(
    kafka_bootstrap: str,
    mongo_client: MongoClient,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    outbox = Outbox(db, topics)
    relay = OutboxRelay(db, publisher, "tests", poll_interval=0.05)
    await relay.start()
    trace_id = uuid.uuid4().hex
    event = erased("c-5")
    try:
        with span_from({"traceparent": f"00-{trace_id}-{'1' * 16}-01"}, "request"):
            await commit_to_outbox(mongo_client, outbox, event)
        relay.wake()
        published = await read_topic(
            kafka_bootstrap,
            topics(CUSTOMERS),
            until=lambda records: bool(records_with_id(records, event.id)),
        )
    finally:
        await relay.stop()
    [record] = records_with_id(published, event.id)
    assert f'"traceparent": "00-{trace_id}-'.encode() in record.value
