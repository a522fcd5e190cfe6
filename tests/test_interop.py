"""Rapport's events cross the wire with a foreign Kafka client (librdkafka) both ways."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from shared.events import Event
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient
from shared.outbox import Outbox
from shared.routing import Routes
from shared.topics import CUSTOMERS, PURCHASES, TopicNames
from shared.unit_of_work import UnitOfWork
from tests.service_harness import (
    commit_to_outbox,
    erased,
    eventually,
    harness_settings,
    relay_once,
    running_runtime,
)


def foreign_purchase(customer_id: str) -> dict[str, Any]:
    """A purchase as a shop would write it by hand, without any Rapport code."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:shop:eshop-hr",
        "type": "crm.purchase.completed",
        "subject": customer_id,
        "time": "2026-11-22T10:15:00+01:00",
        "datacontenttype": "application/json",
        "data": {
            "purchase_id": "web-1001",
            "customer_id": customer_id,
            "items": [
                {
                    "sku": "ESP-01",
                    "name": "Espresso",
                    "category": "coffee",
                    "quantity": 3,
                    "unit_price": "2.10",
                }
            ],
            "total_amount": "6.30",
            "currency": "EUR",
            "channel": "web",
        },
    }


async def test_a_cloudevent_produced_by_librdkafka_is_consumed_by_rapport(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> None:
    received: list[Event[PurchaseCompleted]] = []
    routes: Routes[list[Event[PurchaseCompleted]]] = Routes()

    @routes.on(PurchaseCompleted)
    async def record(
        into: list[Event[PurchaseCompleted]], event: Event[PurchaseCompleted], uow: UnitOfWork
    ) -> None:
        into.append(event)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    envelope = foreign_purchase("c-77")
    producer.produce(
        topics(PURCHASES),
        key=b"c-77",
        value=json.dumps(envelope).encode(),
        headers=[("content-type", b"application/cloudevents+json")],
    )
    assert producer.flush(10) == 0

    settings = harness_settings(kafka_bootstrap, mongodb_uri, topics, db.name)
    async with running_runtime(settings, routes.bind(received), [PURCHASES]):
        await eventually(lambda: _non_empty(received), message="foreign event not consumed")

    [event] = received
    assert event.id == envelope["id"]
    assert event.source == "urn:shop:eshop-hr"
    assert str(event.payload.total_amount) == "6.30"
    assert event.payload.items[0].quantity == 3


async def test_an_event_published_by_rapport_is_read_by_librdkafka(
    kafka_bootstrap: str,
    mongo_client: MongoClient,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    event = erased("c-88", source="/rapport/profiles")
    await commit_to_outbox(mongo_client, Outbox(db, topics), event)
    assert await relay_once(db, publisher) == 1

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"foreign-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics(CUSTOMERS)])
    try:
        message = await asyncio.to_thread(_first_message, consumer)
    finally:
        consumer.close()
    assert message is not None, "librdkafka read nothing"
    assert message.key() == b"c-88"
    assert dict(message.headers() or [])["content-type"] == b"application/cloudevents+json"
    cloudevent = json.loads(message.value())
    assert cloudevent["specversion"] == "1.0"
    assert cloudevent["id"] == event.id
    assert cloudevent["type"] == "crm.customer.erased"
    assert cloudevent["subject"] == "c-88"
    assert cloudevent["data"]["customer_id"] == "c-88"


def _first_message(consumer: Consumer) -> Any:
    for _ in range(60):
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            return message
    return None


async def _non_empty(items: list[Event[Any]]) -> bool:
    return bool(items)
