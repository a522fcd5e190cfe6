"""Consumer plumbing for Faust agents: decode, deduplicate, apply, or dead-letter.

Every message is decoded and validated; an invalid one goes to ``<topic>.dlq`` with the
reason. A valid one is applied in one MongoDB transaction together with a marker keyed by
the event id, so a redelivered event finds its marker and has no second effect. A handler
that fails is retried a bounded number of times, then the event is dead-lettered; the
worker keeps consuming. Only an unreachable database is retried without bound, because
dead-lettering everything during an outage would lose ordering for nothing. The agent
moves to the next message only after this returns, so Faust commits an offset only once
its effect is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from shared.events.envelope import Event, InvalidEvent, KafkaRecord, decode
from shared.events.registry import DEFAULT_REGISTRY, EventRegistry
from shared.kafka import EventPublisher
from shared.mongo import Database, MongoClient, Session, in_transaction
from shared.observability import EVENTS_CONSUMED, span_from
from shared.topics import TopicNames

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any], Session], Awaitable[None]]

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


class EventConsumer:
    """Applies events to a service's state exactly once per event id."""

    def __init__(
        self,
        *,
        service: str,
        client: MongoClient,
        db: Database,
        publisher: EventPublisher,
        handlers: Mapping[str, Handler],
        topics: TopicNames,
        registry: EventRegistry = DEFAULT_REGISTRY,
        max_attempts: int = 3,
        retry_delay: float = 0.2,
    ) -> None:
        self.service = service
        self.client = client
        self.processed = db["processed_events"]
        self.publisher = publisher
        self.handlers = dict(handlers)
        self.topics = topics
        self.registry = registry
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay

    async def ensure_indexes(self) -> None:
        await self.processed.create_index([("processed_at", ASCENDING)])

    async def handle(self, message: IncomingMessage) -> Outcome:
        try:
            event = decode(message.value, message.headers, self.registry)
        except InvalidEvent as invalid:
            await self.dead_letter(message, invalid.reason, "InvalidEvent", attempts=1)
            self._count(message, "invalid", Outcome.DEAD_LETTERED)
            return Outcome.DEAD_LETTERED
        handler = self.handlers.get(event.type)
        if handler is None:
            outcome = Outcome.IGNORED
        else:
            with span_from(event.extensions, f"{self.service} consume {event.type}"):
                outcome = await self._apply_with_retries(event, handler, message)
        self._count(message, event.type, outcome)
        return outcome

    def _count(self, message: IncomingMessage, event_type: str, outcome: Outcome) -> None:
        EVENTS_CONSUMED.labels(self.service, message.topic, event_type, outcome).inc()

    async def _apply_with_retries(
        self, event: Event[Any], handler: Handler, message: IncomingMessage
    ) -> Outcome:
        attempts = 0
        outage_delay = self.retry_delay
        while True:
            try:
                return await self._apply_once(event, handler, message)
            except RejectEvent as rejected:
                await self.dead_letter(message, rejected.reason, "RejectEvent", attempts + 1)
                return Outcome.DEAD_LETTERED
            except ConnectionFailure:
                log.warning("database unreachable; retrying %s", event.id, exc_info=True)
                await asyncio.sleep(outage_delay)
                outage_delay = min(outage_delay * 2, 10.0)
            except Exception as error:
                attempts += 1
                if attempts >= self.max_attempts:
                    log.exception(
                        "giving up on %s %s after %d attempts", event.type, event.id, attempts
                    )
                    reason = f"{type(error).__name__}: {error}"
                    await self.dead_letter(message, reason, type(error).__name__, attempts)
                    return Outcome.DEAD_LETTERED
                log.warning("attempt %d of %s failed; retrying", attempts, event.id, exc_info=True)
                await asyncio.sleep(self.retry_delay * 2 ** (attempts - 1))

    async def _apply_once(
        self, event: Event[Any], handler: Handler, message: IncomingMessage
    ) -> Outcome:
        # No look-up first: the marker's unique _id refuses a repeat inside the transaction,
        # which saves a round trip on every event for the rare duplicate's aborted one.
        marker = {
            "_id": event.id,
            "type": event.type,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "processed_at": datetime.now(UTC),
        }

        async def apply(session: Session) -> None:
            await self.processed.insert_one(marker, session=session)
            await handler(event, session)

        try:
            await in_transaction(self.client, apply)
        except DuplicateKeyError:
            # A concurrent delivery of the same event committed first.
            if await self.processed.find_one({"_id": event.id}, {"_id": 1}) is not None:
                return Outcome.DUPLICATE
            raise
        return Outcome.PROCESSED

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


def attach_agent(app: Any, topics: Sequence[str], consumer: EventConsumer) -> Any:
    """Subscribe a Faust agent of ``app`` to ``topics`` that feeds ``consumer``."""
    channel = app.topic(
        *topics,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )

    async def consume(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await consumer.handle(
                IncomingMessage(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers or ()),
                )
            )

    return app.agent(channel, name=f"{consumer.service}.events")(consume)
