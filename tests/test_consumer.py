"""Consumer plumbing on a real broker and store: idempotency, retries, DLQ, offsets."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.consumer import RejectEvent
from shared.events import Event, KafkaRecord, encode, new_event
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, Session
from shared.routing import BoundRoutes, Routes
from shared.topics import PURCHASES, TopicNames
from shared.unit_of_work import UnitOfWork
from tests.kafka_reading import read_topic
from tests.service_harness import (
    HarnessSettings,
    eventually,
    harness_settings,
    running_runtime,
)


def purchase(purchase_id: str, customer_id: str = "c-1") -> Event[PurchaseCompleted]:
    payload = PurchaseCompleted.model_validate(
        {
            "purchase_id": purchase_id,
            "customer_id": customer_id,
            "items": [
                {
                    "sku": "S1",
                    "name": "Kettle",
                    "category": "kitchen",
                    "quantity": 1,
                    "unit_price": "30.00",
                }
            ],
            "total_amount": "30.00",
            "currency": "EUR",
            "channel": "store",
        }
    )
    return new_event(payload, source="/tests")


class RecordingHandler:
    """Writes an effect per purchase; fails, flakes or rejects on request by purchase id."""

    def __init__(self, db: Database) -> None:
        self.effects = db["effects"]
        self.calls: Counter[str] = Counter()

    async def apply(self, event: Event[PurchaseCompleted], session: Session) -> None:
        purchase_id = event.payload.purchase_id
        self.calls[purchase_id] += 1
        # The session belongs to the service's own client: write through that client.
        await session.client[self.effects.database.name]["effects"].insert_one(
            {"event_id": event.id, "purchase_id": purchase_id}, session=session
        )
        if purchase_id.startswith("fail"):
            raise RuntimeError(f"cannot apply {purchase_id}")
        if purchase_id.startswith("flaky") and self.calls[purchase_id] == 1:
            raise RuntimeError("transient trouble")
        if purchase_id.startswith("reject"):
            raise RejectEvent(f"purchase {purchase_id} names an unknown customer")

    async def count(self, purchase_id: str) -> int:
        return await self.effects.count_documents({"purchase_id": purchase_id})


recording: Routes[RecordingHandler] = Routes()


@recording.on(PurchaseCompleted)
async def record_purchase(
    handler: RecordingHandler, event: Event[PurchaseCompleted], uow: UnitOfWork
) -> None:
    await handler.apply(event, uow.session)


async def publish(publisher: AiokafkaPublisher, topic: str, *records: KafkaRecord) -> None:
    await publisher.publish([(topic, record) for record in records])


@pytest.fixture
def settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> HarnessSettings:
    return harness_settings(kafka_bootstrap, mongodb_uri, topics, db.name)


def dlq_headers(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


async def test_same_event_delivered_twice_has_one_effect(
    settings: HarnessSettings,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
    kafka_bootstrap: str,
) -> None:
    handler = RecordingHandler(db)
    first, sentinel = purchase("p-1"), purchase("p-2")
    record = encode(first)
    async with running_runtime(settings, recording.bind(handler), [PURCHASES]):
        # Same key, so same partition: the sentinel is consumed after both copies.
        await publish(publisher, topics(PURCHASES), record, record, encode(sentinel))
        await eventually(lambda: _has_effect(handler, "p-2"), message="sentinel not applied")

    assert await handler.count("p-1") == 1
    assert handler.calls["p-1"] == 1
    marker = await db["processed_events"].find_one({"_id": first.id})
    assert marker is not None
    assert marker["topic"] == topics(PURCHASES)


async def test_poison_event_goes_to_the_dlq_and_the_worker_keeps_consuming(
    settings: HarnessSettings,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
    kafka_bootstrap: str,
) -> None:
    handler = RecordingHandler(db)
    poison = KafkaRecord(key=b"c-1", value=b'{"oops": ', headers=[("origin", b"legacy-pos")])
    async with running_runtime(settings, recording.bind(handler), [PURCHASES]):
        await publish(publisher, topics(PURCHASES), poison, encode(purchase("p-after")))
        await eventually(lambda: _has_effect(handler, "p-after"), message="worker stopped")

    source = await read_topic(kafka_bootstrap, topics(PURCHASES))
    poison_offset = next(record for record in source if record.value == poison.value)
    dead = await read_topic(kafka_bootstrap, topics.dlq(topics(PURCHASES)), until=bool)
    assert len(dead) == 1
    headers = dlq_headers(dead[0])
    assert dead[0].value == poison.value
    assert dead[0].key == b"c-1"
    assert "not JSON" in headers["dlq-reason"]
    assert headers["dlq-source-topic"] == topics(PURCHASES)
    assert headers["dlq-source-partition"] == str(poison_offset.partition)
    assert headers["dlq-source-offset"] == str(poison_offset.offset)
    assert headers["dlq-consumer"] == "harness"
    assert headers["origin"] == "legacy-pos"


async def test_failing_handler_is_retried_a_bounded_number_of_times_then_dead_lettered(
    kafka_bootstrap: str,
    settings: HarnessSettings,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    handler = RecordingHandler(db)
    assert settings.consumer_max_attempts == 3
    events = [purchase("fail-1"), purchase("flaky-1"), purchase("reject-1"), purchase("p-last")]
    async with running_runtime(settings, recording.bind(handler), [PURCHASES]):
        await publish(publisher, topics(PURCHASES), *(encode(event) for event in events))
        await eventually(lambda: _has_effect(handler, "p-last"), message="worker stopped")

    # In a batch the failing event is first tried with its neighbours (each split of the
    # batch once, at most log2(4) = 2 times), then alone: at most 3 more attempts.
    assert 3 <= handler.calls["fail-1"] <= 3 + 2
    assert await handler.count("fail-1") == 0  # each failed attempt rolled back
    assert handler.calls["flaky-1"] >= 2
    assert await handler.count("flaky-1") == 1
    assert await handler.count("reject-1") == 0
    assert await handler.count("p-last") == 1
    dead = await read_topic(
        kafka_bootstrap, topics.dlq(topics(PURCHASES)), until=lambda records: len(records) >= 2
    )
    by_reason = {dlq_headers(record)["dlq-error-type"]: dlq_headers(record) for record in dead}
    assert set(by_reason) == {"RuntimeError", "RejectEvent"}
    assert by_reason["RuntimeError"]["dlq-attempts"] == "3"
    assert by_reason["RejectEvent"]["dlq-attempts"] == "1"  # alone, a rejection is final
    assert "cannot apply fail-1" in by_reason["RuntimeError"]["dlq-reason"]
    assert "unknown customer" in by_reason["RejectEvent"]["dlq-reason"]


async def test_offsets_are_committed_once_effects_are_stored(
    settings: HarnessSettings,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
    kafka_bootstrap: str,
) -> None:
    handler = RecordingHandler(db)
    events = [purchase(f"p-{number}", customer_id=f"c-{number}") for number in range(6)]
    async with running_runtime(settings, recording.bind(handler), [PURCHASES]):
        await publish(publisher, topics(PURCHASES), *(encode(event) for event in events))
        await eventually(
            lambda: _effects_at_least(handler, len(events)), message="events not applied"
        )
    # A restarted worker of the same group starts after what was applied: no redelivery.
    async with running_runtime(settings, recording.bind(handler), [PURCHASES]):
        await publish(publisher, topics(PURCHASES), encode(purchase("p-new", "c-0")))
        await eventually(lambda: _has_effect(handler, "p-new"), message="restart stalled")
    assert all(handler.calls[f"p-{number}"] == 1 for number in range(6))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topics(PURCHASES), p) for p in range(6)]
        ends = await consumer.end_offsets(partitions)
        committed = {partition: await consumer.committed(partition) for partition in partitions}
        for partition in partitions:
            assert committed[partition] == (ends[partition] or None)
        assert sum(ends.values()) == len(events) + 1
    finally:
        await consumer.stop()


async def _has_effect(handler: RecordingHandler, purchase_id: str) -> bool:
    return await handler.count(purchase_id) > 0


async def _effects_at_least(handler: RecordingHandler, count: int) -> bool:
    return await handler.effects.count_documents({}) >= count


async def test_the_process_producer_is_idempotent_with_acks_all(
    settings: HarnessSettings,
) -> None:
    async with running_runtime(settings, BoundRoutes(), [PURCHASES]) as runtime:
        producer = runtime.publisher._connected()
        # aiokafka refuses idempotence with anything but acks=all, so this checks both.
        assert producer._txn_manager is not None, "idempotence is off"
        assert producer._sender._acks == -1


async def test_every_handler_registered_for_an_event_applies_it_once(
    settings: HarnessSettings,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    first, second = RecordingHandler(db), RecordingHandler(db)
    async with running_runtime(
        settings, recording.bind(first) + recording.bind(second), [PURCHASES]
    ):
        await publish(publisher, topics(PURCHASES), encode(purchase("p-both")))
        await eventually(lambda: _effects_at_least(first, 2), message="not applied")
    assert first.calls["p-both"] == second.calls["p-both"] == 1
