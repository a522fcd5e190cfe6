"""A running analytics service (HTTP API, worker, recomputer) on this test's topics and
database, with a clock the test drives, and builders of the events it consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.analytics.bootstrap import create_app
from services.analytics.handlers.context import Analytics
from services.analytics.settings import AnalyticsSettings
from shared.auth import TokenService
from shared.events import Event, new_event
from shared.events.base import EventPayload
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintResolved,
    ComplaintSlaBreached,
)
from shared.events.customers import CustomerRegistered
from shared.events.envelope import KafkaRecord, encode
from shared.events.notifications import (
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.topics import TopicNames
from tests.service_harness import DrivenClock, eventually
from tests.support.api import ApiClient, in_process

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


# Event builders


def registered(customer_id: str, name: str, created_at: datetime, **extra: Any) -> EventPayload:
    given, _, family = name.partition(" ")
    return CustomerRegistered.model_validate(
        {
            "customer_id": customer_id,
            "given_name": given,
            "family_name": family or None,
            "created_at": created_at,
            "updated_at": created_at,
            "version": 1,
            **extra,
        }
    )


def purchase(
    customer_id: str,
    purchase_id: str,
    at: datetime,
    items: Sequence[tuple[str, str, str]] = (("SKU-TEA", "tea", "19.90"),),
    currency: str = "EUR",
) -> EventPayload:
    """``items``: (sku, category, unit price); each bought once; the total is their sum."""
    lines = [
        {"sku": sku, "name": sku.title(), "category": category, "quantity": 1, "unit_price": price}
        for sku, category, price in items
    ]
    total = sum((Decimal(price) for _, _, price in items), Decimal(0))
    return PurchaseCompleted.model_validate(
        {
            "purchase_id": purchase_id,
            "customer_id": customer_id,
            "items": lines,
            "total_amount": format(total, "f"),
            "currency": currency,
            "channel": "web",
            "purchased_at": at,
        }
    )


def returned(
    customer_id: str, return_id: str, purchase_id: str, refund: str, at: datetime
) -> EventPayload:
    return PurchaseReturned.model_validate(
        {
            "return_id": return_id,
            "purchase_id": purchase_id,
            "customer_id": customer_id,
            "refund_amount": refund,
            "currency": "EUR",
            "returned_at": at,
        }
    )


def opened(
    customer_id: str,
    complaint_id: str,
    at: datetime,
    first_response_due: timedelta = timedelta(hours=8),
    resolution_due: timedelta = timedelta(hours=40),
) -> EventPayload:
    return ComplaintOpened.model_validate(
        {
            "complaint_id": complaint_id,
            "customer_id": customer_id,
            "channel": "web",
            "category": "delivery",
            "subject": "Late parcel",
            "description": "It did not arrive",
            "priority": "normal",
            "opened_at": at,
            "first_response_due_at": at + first_response_due,
            "resolution_due_at": at + resolution_due,
        }
    )


def acknowledged(customer_id: str, complaint_id: str, at: datetime) -> EventPayload:
    return ComplaintAcknowledged(
        complaint_id=complaint_id, customer_id=customer_id, acknowledged_at=at
    )


def resolved(customer_id: str, complaint_id: str, at: datetime) -> EventPayload:
    return ComplaintResolved.model_validate(
        {
            "complaint_id": complaint_id,
            "customer_id": customer_id,
            "resolution_type": "explanation",
            "summary": "Explained",
            "resolved_at": at,
        }
    )


def refunded(
    customer_id: str, complaint_id: str, purchase_id: str, amount: str, at: datetime
) -> EventPayload:
    """A complaint resolved with a refund of ``amount`` EUR of ``purchase_id``."""
    return ComplaintResolved.model_validate(
        {
            "complaint_id": complaint_id,
            "customer_id": customer_id,
            "resolution_type": "refund",
            "summary": "Refunded the broken teapot",
            "resolved_at": at,
            "refund_amount": amount,
            "currency": "EUR",
            "purchase_id": purchase_id,
        }
    )


def breached(customer_id: str, complaint_id: str, clock: str, at: datetime) -> EventPayload:
    return ComplaintSlaBreached.model_validate(
        {
            "complaint_id": complaint_id,
            "customer_id": customer_id,
            "clock": clock,
            "severity": "breach",
            "due_at": at,
            "detected_at": at,
            "priority": "normal",
        }
    )


def feedback(
    customer_id: str, complaint_id: str, csat: int, nps: int | None, at: datetime
) -> EventPayload:
    return ComplaintFeedbackReceived(
        complaint_id=complaint_id, customer_id=customer_id, csat=csat, nps=nps, received_at=at
    )


def notified(kind: str, customer_id: str, notification_id: str, at: datetime) -> EventPayload:
    common = {
        "notification_id": notification_id,
        "customer_id": customer_id,
        "channel": "email",
        "rule": "purchase_receipt",
    }
    if kind == "sent":
        return NotificationSent.model_validate({**common, "sent_at": at})
    if kind == "failed":
        return NotificationFailed.model_validate(
            {**common, "reason": "mailbox full", "attempts": 3, "failed_at": at}
        )
    return NotificationSuppressed.model_validate(
        {**common, "reason": "no consent", "suppressed_at": at}
    )


def events_of(*payloads: EventPayload) -> list[Event[Any]]:
    return [new_event(payload, source="/tests") for payload in payloads]


# The running service


@dataclass
class Api(ApiClient):
    """The analytics API with ready-made tokens, and a way to feed it events."""

    analytics: Analytics
    clock: DrivenClock
    publisher: AiokafkaPublisher
    topics: TopicNames
    sent: list[KafkaRecord] = field(default_factory=list)

    async def applied(self) -> int:
        return await self.analytics.store.db["processed_events"].count_documents({})

    async def send_records(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        await self.publisher.publish(list(records))

    async def feed(self, *payloads: EventPayload) -> list[Event[Any]]:
        """Publish the events and wait until the worker has applied them all."""
        events = events_of(*payloads)
        await self.feed_events(events)
        return events

    async def feed_events(self, events: Sequence[Event[Any]]) -> None:
        before = await self.applied()
        records = [(self.topics(event.topic), encode(event)) for event in events]
        await self.send_records(records)
        target = before + len({event.id for event in events})

        async def done() -> bool:
            return await self.applied() >= target

        await eventually(done, timeout=60, message="the worker did not apply the events")


def analytics_settings_for(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, database: str, **extra: Any
) -> AnalyticsSettings:
    return AnalyticsSettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        mongodb_database=database,
        outbox_poll_interval_seconds=0.05,
        # Tests judge everyone when they choose (recompute), unless they say otherwise.
        **{"recompute_interval_seconds": 3600.0, "regrade_growth": 0.0, **extra},
    )


@pytest.fixture
def analytics_settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> AnalyticsSettings:
    return analytics_settings_for(kafka_bootstrap, mongodb_uri, topics, db.name)


@pytest.fixture
def clock() -> DrivenClock:
    return DrivenClock(NOW)


@asynccontextmanager
async def running(
    settings: AnalyticsSettings,
    clock: DrivenClock,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
) -> AsyncIterator[Api]:
    app = create_app(settings)
    analytics: Analytics = app.state.analytics
    analytics.clock = clock
    async with app.router.lifespan_context(app):

        async def first_judgement_done() -> bool:
            # The recomputer judges everyone once at startup; tests move the clock after.
            state = analytics.store.state
            return await state.count_documents({"_id": "population"}) == 1

        await eventually(first_judgement_done, timeout=30, message="no judgement at startup")
        async with in_process(app, "analytics") as http:
            yield Api(http, TokenService(settings.secret), analytics, clock, publisher, topics)


@pytest.fixture
async def api(
    analytics_settings: AnalyticsSettings,
    clock: DrivenClock,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
) -> AsyncIterator[Api]:
    async with running(analytics_settings, clock, publisher, topics) as service:
        yield service


ServiceWith = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def service_with(
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    clock: DrivenClock,
    publisher: AiokafkaPublisher,
) -> ServiceWith:
    """Starts the service with settings of the test's choosing: ``service_with(**settings)``."""

    def start(**extra: Any) -> AbstractAsyncContextManager[Api]:
        settings = analytics_settings_for(kafka_bootstrap, mongodb_uri, topics, db.name, **extra)
        return running(settings, clock, publisher, topics)

    return start
