"""The dispatcher: bounded sends, backoff with full jitter, failure and dead letter, one
send per delivery even with two dispatchers (fake channels, real MongoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications.deliveries_domain import WAITING_FOR_CUSTOMER
from services.notifications.dispatcher import Dispatcher, Sent, Skip
from services.notifications.domain import (
    Channel,
    OutgoingMessage,
    PermanentDeliveryError,
    Purpose,
    Sender,
    TransientDeliveryError,
)
from services.notifications.planning import Notifications
from services.notifications.preferences_domain import CustomerPreferences
from services.notifications.template_store import TemplateStore
from services.notifications.templating import JinjaTemplateRenderer
from shared.events.complaints import ComplaintOpened
from shared.events.customers import ConsentChanged, CustomerRegistered
from shared.events.insights import ChurnRiskChanged
from shared.events.purchases import PurchaseCompleted
from shared.mongo import Database, MongoClient
from tests.notifications.harness import apply, core, prepare
from tests.service_harness import DrivenClock, eventually

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


@pytest.fixture
async def ctx(mongo_client: MongoClient, db: Database) -> Notifications:
    notifications = core(mongo_client, db, DrivenClock(NOON))
    await prepare(notifications)
    return notifications


def dispatcher(ctx: Notifications, db: Database, email: Sender, **options: Any) -> Dispatcher:
    senders: Mapping[Channel, Sender] = {Channel.EMAIL: email}
    renderer = JinjaTemplateRenderer(TemplateStore(db))
    return Dispatcher(ctx, renderer, senders, **{"max_attempts": 3, **options})


async def customer_bought(
    ctx: Notifications, customer_id: str, purchase_id: str | None = None
) -> None:
    # Purchase ids are unique (a thank-you is keyed on one): one per customer by default.
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
            {"purchase_id": purchase_id or f"{customer_id}-o-1", "customer_id": customer_id,
             "total_amount": "3.00",
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


async def test_a_registration_while_the_dispatcher_finds_the_customer_unknown_releases_the_mail(
    ctx: Notifications, db: Database
) -> None:
    """The purchase overtook the registration; the dispatcher claims the thank-you, finds
    nobody, and the registration lands before that outcome is recorded (its release passes
    over a claimed delivery). The outcome then sees the customer and makes the mail due at
    once, not at the next look seconds later."""
    await apply(
        ctx,
        PurchaseCompleted.model_validate(
            {"purchase_id": "late-o-1", "customer_id": "c-late", "total_amount": "3.00",
             "currency": "CZK", "channel": "web",
             "items": [{"sku": "a", "name": "Rohlík", "category": "b", "quantity": 1,
                        "unit_price": "3.00"}]}
        ),
    )  # fmt: skip
    email = Recording()
    sender = dispatcher(ctx, db, email)
    claimed = await ctx.ledger.claim_due(NOON, 10, "claim-1", NOON + timedelta(minutes=2))
    outcomes = [(delivery, await sender.attempt(delivery, NOON)) for delivery in claimed]
    assert outcomes
    assert all(isinstance(o, Skip) and o.reason == WAITING_FOR_CUSTOMER for _, o in outcomes)
    await apply(
        ctx,
        CustomerRegistered.model_validate(
            {"customer_id": "c-late", "given_name": "Ana", "emails": ["c-late@x.cz"],
             "locale": "cs", "time_zone": "Europe/Prague", "created_at": NOON,
             "updated_at": NOON, "version": 1}
        ),
    )  # fmt: skip
    await sender.record(outcomes)
    delivery = await email_delivery(ctx, "c-late")
    assert delivery["status"] == "pending"
    assert delivery["due_at"].replace(tzinfo=UTC) == NOON  # (the clock has not moved)
    assert await sender.run_once() == 2
    assert [message.address for message in email.sent] == ["c-late@x.cz"]


async def test_an_in_app_message_is_in_the_inbox_exactly_when_its_outcome_is_recorded(
    ctx: Notifications, db: Database
) -> None:
    await customer_bought(ctx, "c-inbox-1")
    await customer_bought(ctx, "c-inbox-2")
    sender = dispatcher(ctx, db, Recording())
    claimed = await ctx.ledger.claim_due(NOON, 10, "claim-1", NOON + timedelta(minutes=2))
    in_app = {d.customer_id: d for d in claimed if d.channel is Channel.IN_APP}
    assert set(in_app) == {"c-inbox-1", "c-inbox-2"}
    outcomes = [(delivery, await sender.attempt(delivery, NOON)) for delivery in in_app.values()]
    assert all(isinstance(outcome, Sent) for _, outcome in outcomes)
    inbox = db["inbox"]
    assert await inbox.count_documents({}) == 0  # attempted, not recorded: not there yet
    # The second's claim was lost meanwhile (it expired; another dispatcher took it over).
    lost = in_app["c-inbox-2"].id
    await ctx.ledger.deliveries.update_one({"_id": lost}, {"$set": {"claim": "claim-2"}})
    await sender.record(outcomes)
    stored = [document async for document in inbox.find()]
    assert [(d["_id"], d["customer_id"]) for d in stored] == [(in_app["c-inbox-1"].id, "c-inbox-1")]
    assert "Ana" in stored[0]["text"]
    statuses = {
        d["customer_id"]: d["status"]
        async for d in ctx.ledger.deliveries.find({"channel": Channel.IN_APP.value})
    }
    assert statuses == {"c-inbox-1": "sent", "c-inbox-2": "pending"}
    # Recorded again (a retried transaction): still one message, as it was.
    await ctx.ledger.deliveries.update_one(
        {"_id": in_app["c-inbox-1"].id}, {"$set": {"status": "pending"}}
    )
    await sender.record(outcomes[:1])
    assert [d["_id"] async for d in inbox.find()] == [in_app["c-inbox-1"].id]


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


class StuckFor:
    """An e-mail channel on which messages to one address never get an answer."""

    channel = Channel.EMAIL

    def __init__(self, address: str) -> None:
        self.address = address
        self.stuck = asyncio.Event()
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> None:
        if message.address == self.address:
            self.stuck.set()
            await asyncio.Event().wait()
        self.sent.append(message)


async def test_a_message_stuck_on_its_channel_does_not_hold_up_the_next_ones(
    ctx: Notifications, db: Database
) -> None:
    await customer_bought(ctx, "c-stuck")
    email = StuckFor("c-stuck@x.cz")
    # (a stop waits for the sends in flight: not for ever for this one)
    running = dispatcher(ctx, db, email, send_timeout=3600, poll_interval=0.02, stop_timeout=0.1)
    await running.start()
    try:
        await asyncio.wait_for(email.stuck.wait(), 60)
        await customer_bought(ctx, "c-next")

        async def next_one_sent() -> bool:
            return any(m.address == "c-next@x.cz" for m in email.sent)

        await eventually(next_one_sent, message="the stuck message held up the next one")
        stuck = await email_delivery(ctx, "c-stuck")
        assert stuck["status"] == "pending"
    finally:
        await running.stop()


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
    """A thank-you and a retention offer planned at noon are only sent at 23:30 Prague
    time: the receipt goes, the marketing e-mail waits for the morning."""
    clock = ctx.clock
    assert isinstance(clock, DrivenClock)
    await customer_bought(ctx, "c-night")
    await apply(
        ctx,
        ConsentChanged.model_validate(
            {"customer_id": "c-night", "channel": "email", "purpose": "marketing",
             "granted": True, "source": "test", "changed_at": NOON}
        ),
    )  # fmt: skip
    await apply(
        ctx,
        ChurnRiskChanged.model_validate(
            {"customer_id": "c-night", "previous_level": "low", "level": "high",
             "score": 0.9, "changed_at": NOON}
        ),
    )  # fmt: skip
    offer = await retention_email(ctx, "c-night")
    assert (offer["due_at"], offer["deferred_because"]) == (NOON, None)
    clock.set(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))  # 23:30 in Prague
    email = Recording()
    await dispatcher(ctx, db, email).run_once()
    # (the account owner's churn alert is internal: it goes at once as well)
    assert sorted(m.rule for m in email.sent) == ["churn_alert_owner", "purchase_thank_you"]
    offer = await retention_email(ctx, "c-night")
    assert offer["status"] == "pending"
    assert offer["deferred_because"] == "quiet hours"
    assert offer["due_at"] == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Prague


async def test_quiet_hours_configured_for_receipts_hold_them_back_when_sent(
    ctx: Notifications, db: Database
) -> None:
    clock = ctx.clock
    assert isinstance(clock, DrivenClock)
    await customer_bought(ctx, "c-receipts")
    ctx.quiet_hours_apply_to |= {(Channel.EMAIL, Purpose.TRANSACTIONAL)}
    clock.set(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))  # 23:30 in Prague
    email = Recording()
    await dispatcher(ctx, db, email).run_once()
    assert email.sent == []
    delivery = await email_delivery(ctx, "c-receipts")
    assert delivery["due_at"] == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Prague


async def offered_retention_at_night(ctx: Notifications, customer_id: str) -> None:
    """A customer who allows marketing e-mail is offered a retention deal at 23:30 Prague
    time: the offer is planned and waits for the morning."""
    clock = ctx.clock
    assert isinstance(clock, DrivenClock)
    await customer_bought(ctx, customer_id)
    await apply(
        ctx,
        ConsentChanged.model_validate(
            {"customer_id": customer_id, "channel": "email", "purpose": "marketing",
             "granted": True, "source": "test", "changed_at": NOON}
        ),
    )  # fmt: skip
    clock.set(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))
    await apply(
        ctx,
        ChurnRiskChanged.model_validate(
            {"customer_id": customer_id, "previous_level": "low", "level": "high",
             "score": 0.9, "changed_at": clock.now}
        ),
    )  # fmt: skip
    offer = await retention_email(ctx, customer_id)
    assert offer["status"] == "pending"
    assert offer["due_at"] == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Prague
    clock.set(datetime(2026, 11, 24, 7, 0, tzinfo=UTC))


async def retention_email(ctx: Notifications, customer_id: str) -> dict[str, Any]:
    found = await ctx.ledger.deliveries.find_one(
        {"customer_id": customer_id, "channel": "email", "rule": "retention_offer"}
    )
    assert found is not None
    return found


async def test_a_complaint_opened_overnight_stops_a_deferred_marketing_message(
    ctx: Notifications, db: Database
) -> None:
    await offered_retention_at_night(ctx, "c-overnight")
    await apply(
        ctx,
        ComplaintOpened.model_validate(
            {"complaint_id": "k-night", "customer_id": "c-overnight", "channel": "web",
             "category": "x", "subject": "s", "description": "d", "priority": "low",
             "opened_at": ctx.now()}
        ),
    )  # fmt: skip
    email = Recording()
    await dispatcher(ctx, db, email).run_once()
    sent = [m.rule for m in email.sent]
    assert "purchase_thank_you" in sent  # what was due still goes
    assert "retention_offer" not in sent
    offer = await retention_email(ctx, "c-overnight")
    assert offer["status"] == "suppressed"
    assert offer["reason"] == "no marketing while a complaint is open"
    suppressed = ctx.outbox.collection.find({"type": "crm.notification.suppressed"})
    assert len([record async for record in suppressed]) == 2  # the e-mail and in-app offers


async def test_an_opt_out_made_overnight_stops_a_deferred_message(
    ctx: Notifications, db: Database
) -> None:
    await offered_retention_at_night(ctx, "c-optout")
    opt_out = CustomerPreferences.model_validate(
        {"opt_outs": [{"channel": "email", "purpose": "marketing"}]}
    )
    await ctx.preferences.put("c-optout", opt_out, ctx.now())
    email = Recording()
    await dispatcher(ctx, db, email).run_once()
    sent = [m.rule for m in email.sent]
    assert "purchase_thank_you" in sent  # what was due still goes
    assert "retention_offer" not in sent
    offer = await retention_email(ctx, "c-optout")
    assert offer["status"] == "suppressed"
    assert offer["reason"] == "customer opted out of marketing email"
