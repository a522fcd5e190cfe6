"""Applying a batch of Kafka records: decode, deduplicate, apply in one unit of work.

Every record of a batch is decoded and validated; an invalid one goes to ``<topic>.dlq``
with the reason. Event ids already applied are dropped with one ``$in`` read of the
markers. The rest are applied in one MongoDB transaction: their markers (``insert_many``,
keyed by event id, so a redelivered event has no second effect), the routes' loads (one
query per collection for the whole batch), each event's handlers in batch order, the
routes' ``after_batch`` steps, and one bulk write per collection plus the outbox. Records
of one partition keep their order, so events of one customer (the Kafka key) are applied
in the order they were published.

When the batch fails, it is split in halves, applied in order, until the failing event is
alone: its neighbours are applied, it is retried a bounded number of times and then
dead-lettered with its reason, and the worker keeps consuming. Only an unreachable
database is retried without bound, because dead-lettering everything during an outage
would lose ordering for nothing. The caller commits offsets only after this returns, that
is after every record was applied, found a duplicate, ignored or dead-lettered.

A batch is handled in two steps: :meth:`EventConsumer.prepare` decodes it and reads its
markers (no write, no side effect), :meth:`EventConsumer.apply` does the rest. The stream
worker prepares the next batch while the current one's transaction is in flight; a read
of markers made then may predate that transaction, so what the batch before applied
counts as applied as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

from shared.events.envelope import Event, InvalidEvent, KafkaRecord, decode
from shared.events.registry import DEFAULT_REGISTRY, EventRegistry
from shared.kafka import EventPublisher
from shared.mongo import Database, MongoClient, find_in
from shared.observability import BATCH_SECONDS, BATCH_SIZE, EVENTS_CONSUMED, span_from
from shared.outbox import Outbox, OutboxRelay
from shared.routing import BoundRoutes
from shared.topics import TopicNames
from shared.unit_of_work import UnitOfWork, UnitsOfWork

log = logging.getLogger(__name__)

# The index on the markers' ``processed_at`` that earlier versions made; nothing reads it.
LEGACY_MARKER_INDEX = "processed_at_1"

# Records decoded between two yields to the event loop while a batch is prepared.
DECODE_SLICE = 50

DLQ_REASON = "dlq-reason"
DLQ_ERROR = "dlq-error-type"
DLQ_SOURCE_TOPIC = "dlq-source-topic"
DLQ_SOURCE_PARTITION = "dlq-source-partition"
DLQ_SOURCE_OFFSET = "dlq-source-offset"
DLQ_CONSUMER = "dlq-consumer"
DLQ_ATTEMPTS = "dlq-attempts"
DLQ_FAILED_AT = "dlq-failed-at"


class RejectEvent(Exception):
    """Raised by a handler for an event that can never be applied: straight to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()

    @classmethod
    def of(cls, record: Any) -> IncomingMessage:
        """From an aiokafka ``ConsumerRecord`` (raw bytes)."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=list(record.headers or ()),
        )


@dataclass(frozen=True)
class _Decoded:
    message: IncomingMessage
    event: Event[Any]


@dataclass
class Prepared:
    """A batch decoded and checked against the markers, not applied yet
    (:meth:`EventConsumer.prepare`)."""

    messages: Sequence[IncomingMessage]
    decoded: list[tuple[int, _Decoded]] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # (index, event type)
    applied: set[str] | None = None  # event ids found applied; None: not read yet


class EventConsumer:
    """Applies batches of events to a service's state, once per event id."""

    def __init__(
        self,
        *,
        service: str,
        client: MongoClient,
        db: Database,
        publisher: EventPublisher,
        routes: BoundRoutes,
        topics: TopicNames,
        outbox: Outbox,
        relay: OutboxRelay | None = None,
        registry: EventRegistry = DEFAULT_REGISTRY,
        max_attempts: int = 3,
        retry_delay: float = 0.2,
    ) -> None:
        self.service = service
        self.client = client
        self.processed = db["processed_events"]
        self.publisher = publisher
        self.routes = routes
        self.topics = topics
        self.outbox = outbox
        self.units = UnitsOfWork(client, outbox, relay)
        self.registry = registry
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self._outage_delay = retry_delay
        self._applied_last: set[str] = set()  # the event ids of the batch applied last

    async def ensure_indexes(self) -> None:
        """The markers are found by ``_id`` only. No secondary index: each one costs the
        store a write per applied event (on the development store about 130 µs, twice what
        the marker itself costs), and nothing reads them by time. An index an earlier
        version made is dropped."""
        with contextlib.suppress(OperationFailure):  # absent, or a replica dropped it first
            await self.processed.drop_index(LEGACY_MARKER_INDEX)

    async def handle(self, message: IncomingMessage) -> Outcome:
        """One record alone (a batch of one)."""
        return (await self.handle_batch([message]))[0]

    async def handle_batch(self, messages: Sequence[IncomingMessage]) -> list[Outcome]:
        """Apply ``messages`` (in order); returns each one's outcome, in order."""
        return await self.apply(await self.prepare(messages))

    async def prepare(self, messages: Sequence[IncomingMessage]) -> Prepared:
        """Decode ``messages`` and read which of their event ids are applied already; no
        write and no side effect, so the stream worker prepares the next batch while this
        one's transaction is in flight. A failed read is left to :meth:`apply`."""
        prepared = Prepared(messages)
        for index, message in enumerate(messages):
            if index and not index % DECODE_SLICE:
                await asyncio.sleep(0)  # (let the batch in flight take its replies)
            try:
                event = decode(message.value, message.headers, self.registry)
            except InvalidEvent as invalid:
                prepared.invalid.append((index, invalid.reason))
                continue
            if not self.routes.handles(event.type):
                prepared.ignored.append((index, event.type))
                continue
            prepared.decoded.append((index, _Decoded(message, event)))
        with contextlib.suppress(Exception):
            prepared.applied = await self._applied(prepared.decoded)
        return prepared

    async def apply(self, prepared: Prepared) -> list[Outcome]:
        """Apply a prepared batch: dead-letter what is invalid, drop what was applied
        before, apply the rest in one unit of work; returns each record's outcome."""
        messages = prepared.messages
        BATCH_SIZE.labels(self.service).observe(len(messages))
        with BATCH_SECONDS.labels(self.service).time():
            outcomes: dict[int, Outcome] = {}
            for index, reason in prepared.invalid:
                await self.dead_letter(messages[index], reason, "InvalidEvent", attempts=1)
                self._count(messages[index], "invalid", Outcome.DEAD_LETTERED)
                outcomes[index] = Outcome.DEAD_LETTERED
            for index, event_type in prepared.ignored:
                outcomes[index] = Outcome.IGNORED
                self._count(messages[index], event_type, Outcome.IGNORED)
            applied = prepared.applied
            if applied is None:
                applied = await self._applied(prepared.decoded)
            # (prepared while the batch before was in flight, its read may predate that
            # batch's markers: what that batch applied counts as applied too)
            fresh = self._not_yet_applied(prepared.decoded, applied | self._applied_last, outcomes)
            for item, outcome in zip(fresh, await self._apply(list(fresh)), strict=True):
                outcomes[item[0]] = outcome
            self._applied_last = {
                item.event.id
                for index, item in prepared.decoded
                if outcomes[index] in (Outcome.PROCESSED, Outcome.DUPLICATE)
            }
            return [outcomes[index] for index in range(len(messages))]

    async def _applied(self, decoded: Sequence[tuple[int, _Decoded]]) -> set[str]:
        """Which of these event ids have their marker (one ``$in`` read)."""
        ids = list(dict.fromkeys(item.event.id for _, item in decoded))
        if not ids:
            return set()
        found = await find_in(self.processed, "_id", ids, projection={"_id": 1})
        return {document["_id"] for document in found}

    def _not_yet_applied(
        self,
        decoded: list[tuple[int, _Decoded]],
        applied: set[str],
        outcomes: dict[int, Outcome],
    ) -> list[tuple[int, _Decoded]]:
        """Drop repeats within the batch and event ids already applied."""
        fresh: list[tuple[int, _Decoded]] = []
        seen: set[str] = set()
        for index, item in decoded:
            if item.event.id in applied or item.event.id in seen:
                outcomes[index] = Outcome.DUPLICATE
                self._count(item.message, item.event.type, Outcome.DUPLICATE)
                continue
            seen.add(item.event.id)
            fresh.append((index, item))
        return fresh

    def _count(self, message: IncomingMessage, event_type: str, outcome: Outcome) -> None:
        EVENTS_CONSUMED.labels(self.service, message.topic, event_type, outcome).inc()

    async def _apply(self, batch: list[tuple[int, _Decoded]]) -> list[Outcome]:
        """Apply ``batch`` in one transaction; split it when that fails."""
        if not batch:
            return []
        items = [item for _, item in batch]
        if len(items) == 1:
            outcome = await self._apply_alone(items[0])
            self._count(items[0].message, items[0].event.type, outcome)
            return [outcome]
        while True:
            try:
                await self._transaction(items)
                break
            except ConnectionFailure:
                await self._outage()
            except Exception as error:
                log.warning(
                    "a batch of %d failed (%s: %s); splitting it to find the event at fault",
                    len(items),
                    type(error).__name__,
                    error,
                )
                middle = len(batch) // 2
                first = await self._apply(batch[:middle])
                return first + await self._apply(batch[middle:])
        self._outage_delay = self.retry_delay
        for item in items:
            self._count(item.message, item.event.type, Outcome.PROCESSED)
        return [Outcome.PROCESSED] * len(items)

    async def _apply_alone(self, item: _Decoded) -> Outcome:
        """One event: bounded retries, then the DLQ; an unreachable store waits."""
        event = item.event
        attempts = 0
        while True:
            try:
                await self._transaction([item])
                return Outcome.PROCESSED
            except RejectEvent as rejected:
                await self.dead_letter(item.message, rejected.reason, "RejectEvent", attempts + 1)
                return Outcome.DEAD_LETTERED
            except ConnectionFailure:
                await self._outage()
                continue
            except (DuplicateKeyError, BulkWriteError) as duplicate:
                # A concurrent delivery of the same event (a rebalance) committed first
                # (the markers' insert_many says so with a BulkWriteError).
                if await self.processed.find_one({"_id": event.id}, {"_id": 1}):
                    return Outcome.DUPLICATE
                failure: Exception = duplicate
            except Exception as error:
                failure = error
            attempts += 1
            if attempts >= self.max_attempts:
                log.error(
                    "giving up on %s %s after %d attempts",
                    event.type,
                    event.id,
                    attempts,
                    exc_info=failure,
                )
                reason = f"{type(failure).__name__}: {failure}"
                await self.dead_letter(item.message, reason, type(failure).__name__, attempts)
                return Outcome.DEAD_LETTERED
            log.warning("attempt %d of %s failed; retrying", attempts, event.id, exc_info=failure)
            await asyncio.sleep(self.retry_delay * 2 ** (attempts - 1))

    async def _outage(self) -> None:
        """The store is unreachable: wait (growing pauses) rather than dead-letter."""
        log.warning("database unreachable; retrying the batch", exc_info=True)
        self._outage_delay = min(self._outage_delay * 2, 10.0)
        await asyncio.sleep(self._outage_delay)

    async def _transaction(self, items: Sequence[_Decoded]) -> None:
        now = datetime.now(UTC)
        markers = [
            {
                "_id": item.event.id,
                "type": item.event.type,
                "topic": item.message.topic,
                "partition": item.message.partition,
                "offset": item.message.offset,
                "processed_at": now,
            }
            for item in items
        ]
        events = [item.event for item in items]

        async def work(uow: UnitOfWork) -> None:
            await self.processed.insert_many(markers, ordered=False, session=uow.session)
            await self.routes.load(events, uow)
            for event in events:
                with span_from(event.extensions, f"{self.service} consume {event.type}"):
                    await self.routes.apply(event, uow)
            await self.routes.finish(events, uow)

        await self.units.run(work)
        self._outage_delay = self.retry_delay

    async def dead_letter(
        self, message: IncomingMessage, reason: str, error_type: str, attempts: int
    ) -> None:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
        )
        headers = [
            *[(name, value) for name, value in message.headers if not name.startswith("dlq-")],
            (DLQ_REASON, reason.encode()),
            (DLQ_ERROR, error_type.encode()),
            (DLQ_SOURCE_TOPIC, message.topic.encode()),
            (DLQ_SOURCE_PARTITION, str(message.partition).encode()),
            (DLQ_SOURCE_OFFSET, str(message.offset).encode()),
            (DLQ_CONSUMER, self.service.encode()),
            (DLQ_ATTEMPTS, str(attempts).encode()),
            (DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]
        record = KafkaRecord(key=message.key or b"", value=message.value or b"", headers=headers)
        delay = self.retry_delay
        while True:  # losing a poison event is worse than waiting for the broker
            try:
                await self.publisher.publish([(self.topics.dlq(message.topic), record)])
                return
            except Exception:
                log.exception("cannot publish to the DLQ; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
