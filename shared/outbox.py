"""Transactional outbox: the state change and its events are written in one transaction.

A service adds events to the outbox with the session of the transaction that changes its
state, so either both are stored or neither. The relay publishes stored events in order
and marks them published; a crash between publishing and marking publishes an event again
with the same id, which consumers discard (they are idempotent by event id). With several
replicas of a service, a lease lets one relay publish at a time, preserving order.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Binary, ObjectId
from pymongo import ASCENDING

from shared.background import Periodic
from shared.events.envelope import Event, InvalidEvent, KafkaRecord, decode, encode
from shared.kafka import EventPublisher
from shared.lease import Lease
from shared.mongo import Database, Session, update_in
from shared.observability import EVENTS_PUBLISHED, OUTBOX_PENDING, current_trace_context
from shared.topics import TopicNames

log = logging.getLogger(__name__)

PUBLISHED_RETENTION = timedelta(days=7)


class Outbox:
    """Where a service's handlers put the events their transaction announces."""

    def __init__(self, db: Database, topics: TopicNames) -> None:
        self.collection = db["outbox"]
        self.topics = topics

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("published_at", ASCENDING), ("order", ASCENDING)])
        # Published events are kept a while for inspection, then expire.
        await self.collection.create_index(
            "published_at",
            name="published_at_ttl",
            expireAfterSeconds=int(PUBLISHED_RETENTION.total_seconds()),
        )

    async def add(self, session: Session, events: Sequence[Event[Any]]) -> None:
        if not events:
            return
        documents = [
            self._document(event, self.topics(event.topic), event.id, ()) for event in events
        ]
        await self.collection.insert_many(documents, session=session)

    async def add_dead_letter(
        self, session: Session, event: Event[Any], headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Puts ``event`` on its topic's ``.dlq`` with the ``dlq-*`` ``headers`` saying why,
        in the caller's transaction (e.g. a delivery that failed for good)."""
        topic = self.topics.dlq(self.topics(event.topic))
        document = self._document(event, topic, f"dlq:{event.id}", headers)
        await self.collection.insert_one(document, session=session)

    def _document(
        self,
        event: Event[Any],
        topic: str,
        document_id: str,
        extra_headers: Sequence[tuple[str, bytes]],
    ) -> dict[str, Any]:
        trace = current_trace_context()
        if trace and "traceparent" not in event.extensions:
            event = dataclasses.replace(event, extensions={**trace, **event.extensions})
        record = encode(event)
        headers = [*record.headers, *extra_headers]
        return {
            "_id": document_id,
            "order": ObjectId(),
            "type": event.type,
            "topic": topic,
            "key": Binary(record.key),
            "value": Binary(record.value),
            "headers": [[name, Binary(value)] for name, value in headers],
            "created_at": datetime.now(UTC),
            "published_at": None,
        }

    async def erase(
        self,
        session: Session,
        customer_ids: Sequence[str],
    ) -> None:
        """Erasure in the outbox: the customers' published events (kept for inspection)
        go; pending ones are still published, in order, but with their personal fields
        blanked (:meth:`~shared.events.base.EventPayload.scrubbed`)."""
        keys = [Binary(customer_id.encode()) for customer_id in customer_ids]
        await self.collection.delete_many(
            {"key": {"$in": keys}, "published_at": {"$ne": None}}, session=session
        )
        pending = self.collection.find(
            {"key": {"$in": keys}, "published_at": None}, session=session
        )
        async for document in pending:
            rewritten = _scrubbed(document)
            if rewritten is not None:
                await self.collection.update_one(
                    {"_id": document["_id"]}, {"$set": rewritten}, session=session
                )


def _scrubbed(document: dict[str, Any]) -> dict[str, Any] | None:
    headers = [(name, bytes(value)) for name, value in document["headers"]]
    try:
        event = decode(bytes(document["value"]), headers)
    except InvalidEvent:
        log.warning("outbox event %s cannot be read; it is left as it is", document["_id"])
        return None
    payload = event.payload.scrubbed()
    if payload == event.payload:
        return None
    record = encode(dataclasses.replace(event, payload=payload))
    return {
        "value": Binary(record.value),
        "headers": [[name, Binary(value)] for name, value in record.headers],
    }


class OutboxRelay:
    """Publishes pending outbox events, oldest first, while it holds the relay lease: a
    batch a round, every ``poll_interval`` seconds and at once when woken (a commit added
    events), without a pause while full batches keep coming."""

    def __init__(
        self,
        db: Database,
        publisher: EventPublisher,
        service: str,
        poll_interval: float = 0.2,
        batch_size: int = 500,
        lease_ttl: timedelta = timedelta(seconds=15),
    ) -> None:
        self.collection = db["outbox"]
        self.publisher = publisher
        self.service = service
        self.batch_size = batch_size
        self.lease_ttl = lease_ttl
        self.owner = f"{service}-{uuid.uuid4()}"
        self.lease = Lease(db["outbox_lease"], "relay", self.owner, lease_ttl, lazy_renewal=True)
        self._loop = Periodic(
            f"{service}-outbox-relay",
            poll_interval,
            self._round,
            lease=self.lease,
            retry_after=1.0,
        )

    def wake(self) -> None:
        """Publish now rather than at the next poll (call after a commit)."""
        self._loop.wake()

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        """Stop publishing and hand the lease over at once rather than at its expiry."""
        await self._loop.stop()

    async def _round(self) -> bool:
        return await self.publish_pending() >= self.batch_size

    async def acquire_lease(self) -> bool:
        """Take or renew the relay lease; renewal writes only once half its term has passed."""
        return await self.lease.acquire()

    async def publish_pending(self) -> int:
        """Publish one batch of pending events; returns how many were published."""
        cursor = (
            self.collection.find({"published_at": None})
            .sort("order", ASCENDING)
            .limit(self.batch_size)
        )
        documents = await cursor.to_list()
        OUTBOX_PENDING.labels(self.service).set(len(documents))
        if not documents:
            return 0
        records = [
            (
                document["topic"],
                KafkaRecord(
                    key=bytes(document["key"]),
                    value=bytes(document["value"]),
                    headers=[(name, bytes(value)) for name, value in document["headers"]],
                ),
            )
            for document in documents
        ]
        await self.publisher.publish(records)
        await update_in(
            self.collection,
            "_id",
            [document["_id"] for document in documents],
            {"$set": {"published_at": datetime.now(UTC)}},
        )
        for topic, _ in records:
            EVENTS_PUBLISHED.labels(self.service, topic).inc()
        return len(documents)

    async def pending_count(self) -> int:
        return await self.collection.count_documents({"published_at": None})
