"""Reading a topic back in tests, without a consumer group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

Records = list[ConsumerRecord[bytes, bytes]]


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[Records], bool] | None = None,
    timeout: float = 30.0,
) -> Records:
    """Records of ``topic`` from the beginning.

    Without ``until``: everything up to the end offsets as of the call. With ``until``:
    keeps polling until it holds or ``timeout`` passes, and returns what it read, so an
    assertion on the result says what was missing.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = sorted(await _partitions(consumer, topic))
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end_offsets = await consumer.end_offsets(assigned)
        records: Records = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
            if until is not None:
                if until(records):
                    break
            elif await _reached_all(consumer, end_offsets):
                break
        return records
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, wait: float = 15.0) -> set[int]:
    """The topic's partitions; a topic created a moment ago may take a little while to
    appear in the metadata the broker serves, so look again for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        metadata = await consumer._client.fetch_all_metadata()  # aiokafka has no public call
        partitions = metadata.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        assert time.monotonic() < deadline, f"topic {topic} does not exist"
        await asyncio.sleep(0.2)


async def _reached_all(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
