"""The dispatcher: bounded sends, backoff with full jitter, failure and dead letter, one
send per delivery even with two dispatchers (fake channels, real MongoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications.dispatcher import Dispatcher
from services.notifications.domain import (
    Channel,
    OutgoingMessage,
    PermanentDeliveryError,
    Sender,
    TransientDeliveryError,
)
from services.notifications.handlers import Notifications
from services.notifications.templating import JinjaTemplateRenderer, TemplateStore
from shared.events.customers import CustomerRegistered
from shared.events.purchases import PurchaseCompleted
from shared.mongo import Database, MongoClient
from tests.notifications.harness import DrivenClock, apply, core, prepare

NOON = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


class Recording:
    """An e-mail channel that keeps what it was given, or fails as told."""

    channel = Channel.EMAIL

    def __init__(self, failure: Exception | None = None, hang: bool = False) -> None:
        self.sent: list[OutgoingMessage] = []
        self.failure = failure
        self.hang = hang

    async def send(self, message: OutgoingMessage) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        if self.failure is not None:
            raise self.failure
        self.sent.append(message)


class Quiet:
    """In-app messages go nowhere in these tests."""

    channel = Channel.IN_APP

    async def send(self, message: OutgoingMessage) -> None:
        return None


@pytest.fixture
async def ctx(mongo_client: MongoClient, db: Database) -> Notifications:
    notifications = core(mongo_client, db, DrivenClock(NOON))
    await prepare(notifications)
    return notifications


def dispatcher(ctx: Notifications, db: Database, email: Sender, **options: Any) -> Dispatcher:
    senders: Mapping[Channel, Sender] = {Channel.EMAIL: email, Channel.IN_APP: Quiet()}
    renderer = JinjaTemplateRenderer(TemplateStore(db))
    return Dispatcher(ctx, renderer, senders, **{"max_attempts": 3, **options})


async def customer_bought(ctx: Notifications, customer_id: str, purchase_id: str = "o-1") -> None:
    await apply(
        ctx,
        CustomerRegistered.model_validate(
            {"customer_id": customer_id, "given_name": "Ana", "emails": [f"{customer_id}@x.cz"],
             "locale": "cs", "time_zone": "Europe/Prague", "created_at": NOON,
             "updated_at": NOON, "version": 1}
        ),
    )  # fmt: skip
    await apply(
        ctx,
        PurchaseCompleted.model_validate(
            {"purchase_id": purchase_id, "customer_id": customer_id, "total_amount": "3.00",
             "currency": "CZK", "channel": "web",
             "items": [{"sku": "a", "name": "Rohlík", "category": "b", "quantity": 1,
                        "unit_price": "3.00"}]}
        ),
    )  # fmt: skip


async def email_delivery(ctx: Notifications, customer_id: str) -> dict[str, Any]:
    found = await ctx.ledger.deliveries.find_one({"customer_id": customer_id, "channel": "email"})
    assert found is not None
    return found


async def test_a_message_is_rendered_in_the_customers_language_and_sent_once(
    ctx: Notifications, db: Database
) -> None:
    await customer_bought(ctx, "c-cs")
    email = Recording()
    assert await dispatcher(ctx, db, email).run_once() == 2
    [message] = email.sent
    assert message.address == "c-cs@x.cz"
    assert message.rendered.locale == "cs"
    assert "Ana" in message.rendered.text
    delivery = await email_delivery(ctx, "c-cs")
    assert delivery["status"] == "sent"
    sent_events = await ctx.outbox.collection.count_documents({"type": "crm.notification.sent"})
    assert sent_events == 2
    assert await dispatcher(ctx, db, email).run_once() == 0
    assert len(email.sent) == 1


async def test_two_dispatchers_send_a_delivery_once(ctx: Notifications, db: Database) -> None:
    await customer_bought(ctx, "c-two")
    email = Recording()
    await asyncio.gather(
        dispatcher(ctx, db, email).run_once(), dispatcher(ctx, db, email).run_once()
    )
    assert len(email.sent) == 1


async def test_a_hanging_channel_times_out_and_does_not_hold_up_the_others(
    ctx: Notifications, db: Database
) -> None:
    await customer_bought(ctx, "c-hang")
    slow = dispatcher(ctx, db, Recording(hang=True), send_timeout=0.2)
    await slow.run_once()
    delivery = await email_delivery(ctx, "c-hang")
    assert delivery["status"] == "pending"
    assert delivery["attempts"] == 1
    assert delivery["last_error"] == "no answer within 0.2 s"
    assert delivery["due_at"] >= NOON  # a later attempt, after a backoff
    in_app = await ctx.ledger.deliveries.find_one({"customer_id": "c-hang", "channel": "in_app"})
    assert in_app is not None
    assert in_app["status"] == "sent"


async def test_transient_failures_are_retried_then_dead_lettered(
    ctx: Notifications, db: Database
) -> None:
    clock = ctx.clock
    assert isinstance(clock, DrivenClock)
    await customer_bought(ctx, "c-fail")
    failing = dispatcher(ctx, db, Recording(TransientDeliveryError("451 try later")))
    for _ in range(3):
        await failing.run_once()
        clock.advance(minutes=30)  # past any backoff
    delivery = await email_delivery(ctx, "c-fail")
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 3
    assert delivery["reason"] == "gave up after 3 attempts: 451 try later"
    failed = await ctx.outbox.collection.find_one({"type": "crm.notification.failed"})
    assert failed is not None
    assert failed["topic"] == "test.crm.notifications"
    dead = await ctx.outbox.collection.find_one({"topic": "test.crm.notifications.dlq"})
    assert dead is not None
    headers = {name: bytes(value) for name, value in dead["headers"]}
    assert headers["dlq-reason"] == b"gave up after 3 attempts: 451 try later"


async def test_a_permanent_failure_fails_at_once(ctx: Notifications, db: Database) -> None:
    await customer_bought(ctx, "c-perm")
    refused = Recording(PermanentDeliveryError("550 no such user"))
    await dispatcher(ctx, db, refused).run_once()
    delivery = await email_delivery(ctx, "c-perm")
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 1
    assert delivery["reason"] == "550 no such user"


def test_backoff_is_exponential_with_full_jitter(ctx: Notifications, db: Database) -> None:
    highest = dispatcher(ctx, db, Recording(), backoff_base=2.0, backoff_cap=60.0,
                         random_fraction=lambda: 1.0)  # fmt: skip
    assert [highest.backoff(n) for n in (1, 2, 3, 6, 10)] == [
        timedelta(seconds=s) for s in (2, 4, 8, 60, 60)
    ]
    lowest = dispatcher(ctx, db, Recording(), random_fraction=lambda: 0.0)
    assert lowest.backoff(5) == timedelta(0)


async def test_a_retry_that_falls_into_quiet_hours_waits_for_the_morning(
    ctx: Notifications, db: Database
) -> None:
    clock = ctx.clock
    assert isinstance(clock, DrivenClock)
    await customer_bought(ctx, "c-night")
    clock.set(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))  # 23:30 in Prague
    email = Recording()
    await dispatcher(ctx, db, email).run_once()
    assert email.sent == []
    delivery = await email_delivery(ctx, "c-night")
    assert delivery["due_at"] == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Prague
