"""Kafka plumbing: the Faust app of a service and the one producer of its process.

Faust's own producer is only idempotent in its exactly-once mode; Rapport wants an
idempotent producer with ``acks=all`` everywhere, so the Faust app gets a transport whose
producer always is. That producer is the single producer of the process: the outbox
relay and the dead-letter path publish through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaProducer
from faust.transport.drivers import aiokafka as faust_aiokafka

from shared.events.envelope import KafkaRecord


class _IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class _Transport(faust_aiokafka.Transport):
    Producer = _IdempotentProducer


class RapportFaustApp(faust.App):
    """A Faust app whose producer is idempotent with acks=all."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return _Transport(self.conf.broker_producer, self)


def create_faust_app(app_id: str, bootstrap_servers: Sequence[str], **overrides: Any) -> Any:
    """A Faust app that joins consumer group ``app_id``; started by the service's lifespan.

    Topics are declared by ``shared.topics`` with the contract's partition counts, so
    Faust is told not to declare them; offsets start at the earliest record the first
    time a group consumes, so nothing published before the service started is missed.
    """
    settings: dict[str, Any] = {
        "broker": [f"kafka://{server}" for server in bootstrap_servers],
        "store": "memory://",
        "web_enabled": False,
        "autodiscover": False,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_commit_every": 100,
        "broker_commit_interval": 1.0,
        "stream_wait_empty": False,
        "table_cleanup_interval": 30.0,
    }
    settings.update(overrides)
    return RapportFaustApp(app_id, **settings)


class EventPublisher(Protocol):
    """Sends records and waits until the broker has them all (acks=all)."""

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None: ...


@dataclass
class FaustPublisher:
    """Publishes through the Faust app's (idempotent) producer."""

    app: Any

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        pending = [
            await self.app.producer.send(
                topic, record.key, record.value, None, None, record.headers
            )
            for topic, record in records
        ]
        await asyncio.gather(*pending)

    async def ping(self) -> None:
        """Raises unless the broker answers a metadata request."""
        producer = self.app.producer
        client = producer._ensure_producer().client  # Faust exposes no public client
        await client.fetch_all_metadata()


class AiokafkaPublisher:
    """A standalone idempotent producer, for processes that run no Faust app."""

    def __init__(self, bootstrap_servers: Sequence[str], client_id: str = "rapport") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=list(bootstrap_servers),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        pending = [
            await self._producer.send(
                topic, value=record.value, key=record.key, headers=record.headers
            )
            for topic, record in records
        ]
        await asyncio.gather(*pending)

    async def ping(self) -> None:
        await self._producer.client.fetch_all_metadata()
