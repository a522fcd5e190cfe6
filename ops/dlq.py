"""Dead letters: read what a consumer gave up on, and send it back to be applied again.

A service dead-letters an event to ``<topic>.dlq`` with its reason and its origin in
``dlq-*`` headers (``shared.consumer``). Reading never joins a consumer group (nothing is
committed, so listing twice shows the same letters). A redrive publishes the original
key, value and headers (without the ``dlq-*`` ones) to the source topic, where each
service applies it once: the event id is the idempotency key, so a letter redriven twice,
or one some other service had already applied, has one effect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ops.kafka import partitions_of
from shared.consumer import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
)
from shared.events.envelope import KafkaRecord
from shared.kafka import AiokafkaPublisher
from shared.topics import CONTRACT_PARTITIONS, TopicNames

REDRIVEN_FROM = "rapport-redriven-from"  # header on a redriven record: dlq topic:partition:offset


@dataclass(frozen=True)
class Selection:
    """Which dead letters: of one contract topic or all, within a time and offset range."""

    topic: str | None = None  # a contract topic (crm.purchases) or its DLQ; None: all
    since: datetime | None = None
    until: datetime | None = None
    partition: int | None = None
    from_offset: int | None = None  # inclusive, in each chosen DLQ partition
    to_offset: int | None = None  # inclusive

    def dlq_topics(self, names: TopicNames) -> list[str]:
        if self.topic is None:
            return [names.dlq(names(topic)) for topic in CONTRACT_PARTITIONS]
        contract = self.topic.removesuffix(".dlq").removeprefix(names.prefix)
        if contract not in CONTRACT_PARTITIONS:
            known = ", ".join(CONTRACT_PARTITIONS)
            raise ValueError(f"unknown topic {self.topic!r}; the contract's topics: {known}")
        return [names.dlq(names(contract))]

    def admits(self, letter: DeadLetter) -> bool:
        if self.partition is not None and letter.partition != self.partition:
            return False
        if self.from_offset is not None and letter.offset < self.from_offset:
            return False
        if self.to_offset is not None and letter.offset > self.to_offset:
            return False
        if self.since is not None and letter.dead_at < self.since:
            return False
        return self.until is None or letter.dead_at <= self.until


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the DLQ topic
    partition: int
    offset: int
    dead_at: datetime  # when the broker took the letter
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def id(self) -> str:
        """How ``rapport dlq show`` names it: ``<dlq topic>:<partition>:<offset>``."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def reason(self) -> str:
        return self.header(DLQ_REASON) or "(no reason recorded)"

    @property
    def source_topic(self) -> str:
        return self.header(DLQ_SOURCE_TOPIC) or self.topic.removesuffix(".dlq")

    @property
    def event(self) -> dict[str, Any] | None:
        """The CloudEvent as sent (None if the value is not JSON)."""
        try:
            found = json.loads(self.value)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def summary(self) -> dict[str, Any]:
        event = self.event or {}
        return {
            "id": self.id,
            "dead_at": self.dead_at.isoformat(),
            "source": f"{self.source_topic}:{self.header(DLQ_SOURCE_PARTITION)}"
            f":{self.header(DLQ_SOURCE_OFFSET)}",
            "consumer": self.header(DLQ_CONSUMER),
            "event_type": event.get("type") or self.header("ce_type"),
            "event_id": event.get("id") or self.header("ce_id"),
            "reason": self.reason,
        }

    def details(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "error_type": self.header(DLQ_ERROR),
            "attempts": self.header(DLQ_ATTEMPTS),
            "failed_at": self.header(DLQ_FAILED_AT),
            "key": self.key.decode(errors="replace"),
            "headers": {k: v.decode(errors="replace") for k, v in self.headers},
            "value": self.event if self.event is not None else self.value.decode(errors="replace"),
        }

    def redriven(self) -> KafkaRecord:
        """The original record, to publish again to its source topic."""
        headers = [(k, v) for k, v in self.headers if not k.startswith("dlq-")]
        headers = [(k, v) for k, v in headers if k != REDRIVEN_FROM]
        headers.append((REDRIVEN_FROM, self.id.encode()))
        return KafkaRecord(key=self.key, value=self.value, headers=headers)


def parse_id(letter_id: str) -> tuple[str, int, int]:
    """``<dlq topic>:<partition>:<offset>`` as printed by ``rapport dlq list``."""
    topic, _, rest = letter_id.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic or not partition.isdigit() or not rest.isdigit():
        raise ValueError(
            f"a dead letter is named <dlq topic>:<partition>:<offset>, not {letter_id!r}"
        )
    return topic, int(partition), int(rest)


async def read(bootstrap: list[str], names: TopicNames, selection: Selection) -> list[DeadLetter]:
    """Every dead letter the selection admits, oldest first per partition."""
    found = await partitions_of(bootstrap, selection.dlq_topics(names))
    partitions = [
        TopicPartition(topic, number)
        for topic, numbers in found.items()
        for number in numbers
        if selection.partition is None or number == selection.partition
    ]
    consumer: Any = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, client_id="rapport-cli", enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await _read_partitions(consumer, partitions, selection)
    finally:
        await consumer.stop()


async def _read_partitions(
    consumer: Any, partitions: list[TopicPartition], selection: Selection
) -> list[DeadLetter]:
    if not partitions:
        return []
    consumer.assign(partitions)
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    if selection.since is not None:  # skip what is older without reading it
        since_ms = int(selection.since.timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        starts = {tp: (found[tp].offset if found[tp] else ends[tp]) for tp in partitions}
    for tp in partitions:
        start = max(starts[tp], selection.from_offset or 0)
        consumer.seek(tp, start)
    waiting = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    letters: list[DeadLetter] = []
    while waiting:
        batch = await consumer.getmany(*waiting, timeout_ms=1000)
        for tp, records in batch.items():
            for record in records:
                if record.offset >= ends[tp]:
                    break
                letter = DeadLetter(
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=record.offset,
                    dead_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
                    key=record.key or b"",
                    value=record.value or b"",
                    headers=tuple(record.headers or ()),
                )
                if selection.admits(letter):
                    letters.append(letter)
            if await consumer.position(tp) >= ends[tp] or (
                selection.to_offset is not None
                and await consumer.position(tp) > selection.to_offset
            ):
                waiting.discard(tp)
    letters.sort(key=lambda letter: (letter.topic, letter.partition, letter.offset))
    return letters


async def show(bootstrap: list[str], letter_id: str) -> DeadLetter | None:
    topic, partition, offset = parse_id(letter_id)
    if partition not in (await partitions_of(bootstrap, [topic])).get(topic, []):
        return None
    consumer: Any = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, client_id="rapport-cli", enable_auto_commit=False
    )
    await consumer.start()
    try:
        selection = Selection(partition=partition, from_offset=offset, to_offset=offset)
        found = await _read_partitions(consumer, [TopicPartition(topic, partition)], selection)
        return found[0] if found else None
    finally:
        await consumer.stop()


async def redrive(bootstrap: list[str], letters: Sequence[DeadLetter]) -> int:
    """Publish each letter's original record to its source topic; returns how many."""
    if not letters:
        return 0
    publisher = AiokafkaPublisher(bootstrap, client_id="rapport-cli")
    await publisher.start()
    try:
        await publisher.publish([(letter.source_topic, letter.redriven()) for letter in letters])
    finally:
        await publisher.stop()
    return len(letters)
