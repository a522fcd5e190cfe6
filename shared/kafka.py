"""Kafka plumbing: the one producer of a process, idempotent with ``acks=all``.

The outbox relay and the dead-letter path publish through it; the stream worker
(``shared.stream``) is the consuming side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from shared.events.envelope import KafkaRecord


class EventPublisher(Protocol):
    """Sends records and waits until the broker has them all (acks=all)."""

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None: ...


class AiokafkaPublisher:
    """An idempotent producer (``acks=all``): the process's one producer."""

    def __init__(self, bootstrap_servers: Sequence[str], client_id: str = "rapport") -> None:
        self.bootstrap_servers = list(bootstrap_servers)
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self.started = False

    def _new(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        """Connect; after a failure (broker down), the next call starts a new producer.

        aiokafka binds a producer to the running loop, so it is made here, not in
        ``__init__`` (which runs before uvicorn starts the loop)."""
        producer = self._new()
        try:
            await producer.start()
        except Exception:
            await producer.stop()
            raise
        self._producer = producer
        self.started = True

    async def stop(self) -> None:
        self.started = False
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _connected(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise ConnectionError("the producer is not connected yet")
        return self._producer

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        producer = self._connected()
        pending = [
            await producer.send(topic, value=record.value, key=record.key, headers=record.headers)
            for topic, record in records
        ]
        await asyncio.gather(*pending)

    async def ping(self) -> None:
        """Raises unless the producer is connected and the broker answers for metadata."""
        await self._connected().client.fetch_all_metadata()
