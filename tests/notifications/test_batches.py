"""Notifications a batch at a time: the event path reads each collection once per batch
and decides in memory, each event seeing what the earlier ones of its batch did; the
dispatcher claims, sends and records in batches, and a stop finishes the sends in flight.

Events go through the service's own routes and the shared consumer
(``EventConsumer.handle_batch``) on a real broker and store; messages go to the SMTP sink.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.smtp import ReceivedMessage, SmtpSink
from services.notifications.channels import ChannelSettings, SmtpSender
from services.notifications.dispatcher import Dispatcher
from services.notifications.domain import Channel, OutgoingMessage, Purpose, Sender
from services.notifications.handlers import routes
from services.notifications.planning import Notifications
from services.notifications.preferences_domain import CustomerPreferences, OptOut
from services.notifications.template_store import TemplateStore
from services.notifications.templating import JinjaTemplateRenderer
from services.notifications.webhooks import WebhookDelivery
from services.notifications.webhooks_store import WebhookStore
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events import Event, EventPayload, encode, new_event
from shared.events.complaints import ComplaintOpened, ComplaintReplied, ComplaintStatusChanged
from shared.events.customers import (
    ConsentChanged,
    CustomerErased,
    CustomerRegistered,
    CustomerUpdated,
)
from shared.events.insights import ChurnRiskChanged
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient
from shared.routing import Routes
from shared.topics import TopicNames
from shared.unit_of_work import UnitOfWork
from tests.notifications.harness import core, prepare
from tests.service_harness import DrivenClock, eventually
from tests.support.commands import CommandCounter, counted_client, in_queries

DAYTIME = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 11:00 in Zagreb: not quiet
SHOP = "urn:shop:web"


@dataclass
class Probe:
    """What the last batch's unit of work counted (read after every handler ran)."""

    reads: int = 0


@dataclass
class Setup:
    ctx: Notifications
    consumer: EventConsumer
    counter: CommandCounter
    probe: Probe
    db: Database
    topics: TopicNames

    @property
    def clock(self) -> DrivenClock:
        assert isinstance(self.ctx.clock, DrivenClock)
        return self.ctx.clock

    async def batch(self, *items: EventPayload | Event[Any]) -> list[Outcome]:
        """The items as one poll would hand them over (an event given as such keeps its id)."""
        messages = []
        for offset, item in enumerate(items):
            event = item if isinstance(item, Event) else new_event(item, source=SHOP)
            record = encode(event)
            topic = self.topics(event.payload.topic)
            messages.append(
                IncomingMessage(topic, 0, offset, record.key, record.value, record.headers)
            )
        return await self.consumer.handle_batch(messages)

    async def deliveries(self, **query: Any) -> list[dict[str, Any]]:
        cursor = self.ctx.ledger.deliveries.find(query).sort("_id", 1)
        return [document async for document in cursor]


@pytest.fixture
async def counted(mongodb_uri: str) -> AsyncIterator[tuple[MongoClient, CommandCounter]]:
    async with counted_client(mongodb_uri) as counted:
        yield counted


@pytest.fixture
async def setup(
    counted: tuple[MongoClient, CommandCounter],
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
) -> Setup:
    """The notifications routes wired as the service wires them, on a counting client."""
    client, counter = counted
    service_db = client[db.name]
    ctx = core(client, service_db, DrivenClock(DAYTIME))
    ctx.webhooks = WebhookDelivery(WebhookStore(service_db), ChannelSettings())
    await prepare(ctx)
    probe = Probe()
    probing: Routes[Probe] = Routes()

    @probing.after_batch
    async def count(probe: Probe, events: Sequence[Event[Any]], uow: UnitOfWork) -> None:
        probe.reads = uow.reads

    consumer = EventConsumer(
        service="notifications",
        client=client,
        db=service_db,
        publisher=publisher,
        routes=routes.bind(ctx) + probing.bind(probe),
        topics=topics,
        outbox=ctx.outbox,
        retry_delay=0.01,
    )
    return Setup(ctx, consumer, counter, probe, service_db, topics)


def registered(customer_id: str, email: str, version: int = 1, **fields: Any) -> CustomerRegistered:
    return CustomerRegistered.model_validate(
        {"customer_id": customer_id, "given_name": "Ivana", "emails": [email], "locale": "en",
         "time_zone": "Europe/Zagreb", "created_at": DAYTIME, "updated_at": DAYTIME,
         "version": version, **fields}
    )  # fmt: skip


def updated(customer_id: str, email: str, version: int) -> CustomerUpdated:
    return CustomerUpdated.model_validate(
        {**registered(customer_id, email, version).model_dump(), "changed_fields": ["emails"]}
    )


def bought(customer_id: str, purchase_id: str) -> PurchaseCompleted:
    return PurchaseCompleted.model_validate(
        {"purchase_id": purchase_id, "customer_id": customer_id, "total_amount": "4.90",
         "currency": "EUR", "channel": "web",
         "items": [{"sku": "TEA-1", "name": "Green tea", "category": "tea", "quantity": 1,
                    "unit_price": "4.90"}]}
    )  # fmt: skip


def people(tag: str, count: int) -> list[tuple[str, str]]:
    return [(f"c-{tag}-{n}", f"c-{tag}-{n}@example.hr") for n in range(count)]


async def test_a_batch_of_purchases_thanks_each_once_and_reads_each_collection_once(
    setup: Setup,
) -> None:
    tag = uuid.uuid4().hex[:6]
    customers = people(tag, 20)
    outcomes = await setup.batch(*(registered(c, email) for c, email in customers))
    assert outcomes == [Outcome.PROCESSED] * 20

    reads: list[list[str]] = []
    for size in (20, 200):  # one purchase per customer, then ten each
        setup.counter.commands.clear()
        purchases = [
            bought(c, f"{tag}-{size}-{n}-{c}") for n in range(size // 20) for c, _ in customers
        ]
        assert await setup.batch(*purchases) == [Outcome.PROCESSED] * size
        reads.append(setup.counter.finds())
        writes = Counter(setup.counter.commands)
        assert writes[("insert", "deliveries")] == 1  # every delivery of the batch at once
        assert setup.probe.reads == 6  # as below, but the markers

    # The markers, then one read per collection and kind of key the handlers need (the
    # customers, and the profiles merged into them), whatever the number of events: only
    # the keys count, a query per RAPPORT_MONGODB_IN_CHUNK of them if set (200 purchases
    # name 200 event ids and 200 purchases, but only 20 customers).
    one_each = [
        "customers", "customers", "deliveries", "preferences", "processed_events", "rules",
        "webhook_subscriptions",
    ]  # fmt: skip
    assert reads[0] == one_each
    per_200_keys = in_queries(200)
    assert Counter(reads[1]) == {
        **Counter(one_each),
        "deliveries": per_200_keys,
        "processed_events": per_200_keys,
    }
    thanks = await setup.deliveries(rule="purchase_thank_you", channel="email")
    assert len(thanks) == 220
    per_purchase = Counter(d["context"]["purchase_id"] for d in thanks)
    assert set(per_purchase.values()) == {1}
    assert {d["status"] for d in thanks} == {"pending"}
    assert Counter(d["customer_id"] for d in thanks) == {c: 11 for c, _ in customers}


def busy_day(tag: str, customers: Sequence[tuple[str, str]]) -> list[EventPayload]:
    """A bit of everything for each customer: a new birthday and contract, a consent, a
    purchase naming them by e-mail, a complaint opened and answered, churn risk turned high."""
    day: list[EventPayload] = []
    for customer, email in customers:
        contract = {"contract_id": f"k-{customer}", "product": "Tea club", "status": "active",
                    "renews_at": "2027-03-01", "auto_renew": True}  # fmt: skip
        day += [
            updated(customer, email, version=2).model_copy(
                update={"birthday": datetime(1990, 5, 5).date(), "contracts": None}
            ),
            CustomerUpdated.model_validate(
                {**registered(customer, email, 3).model_dump(), "contracts": [contract]}
            ),
            ConsentChanged.model_validate(
                {"customer_id": customer, "channel": "email", "purpose": "marketing",
                 "granted": True, "source": "web", "changed_at": DAYTIME}
            ),
            PurchaseCompleted.model_validate(
                {**bought(customer, f"{tag}-{customer}").model_dump(), "customer_id": None,
                 "customer_email": email.upper()}
            ),
            ComplaintOpened.model_validate(
                {"complaint_id": f"{tag}-{customer}", "customer_id": customer, "channel": "web",
                 "category": "delivery", "subject": "Late", "description": "Two days late",
                 "priority": "low", "opened_at": DAYTIME}
            ),
            ComplaintStatusChanged.model_validate(
                {"complaint_id": f"{tag}-{customer}", "customer_id": customer,
                 "from_status": "open", "to_status": "in_progress", "changed_at": DAYTIME,
                 "public_comment": "On it."}
            ),
            ChurnRiskChanged.model_validate(
                {"customer_id": customer, "previous_level": "low", "level": "high",
                 "score": 0.9, "changed_at": DAYTIME}
            ),
        ]  # fmt: skip
    return day


async def test_a_mixed_batch_reads_as_much_for_three_times_the_events(setup: Setup) -> None:
    tag = uuid.uuid4().hex[:6]
    customers = people(tag, 12)
    await setup.batch(*(registered(c, email) for c, email in customers))
    reads: list[list[str]] = []
    for group in (customers[:3], customers[3:]):
        setup.counter.commands.clear()
        day = busy_day(tag, group)
        assert await setup.batch(*day) == [Outcome.PROCESSED] * len(day)
        reads.append(setup.counter.finds())

    small, large = reads
    # A query per collection and kind of key: customers by id, by what was merged into
    # them and by e-mail; deliveries of these events, of these purchases and the day's
    # marketing; schedules by id (the complaints') and by customer. Past
    # RAPPORT_MONGODB_IN_CHUNK keys of one kind (if set), a query per that many of them: the
    # large day names 9 customers' events.
    events_large = len(busy_day(tag, customers[3:]))
    chunks = in_queries(events_large)
    assert Counter(large)["processed_events"] == chunks
    for collection, count in Counter(small).items():
        assert count <= Counter(large)[collection] <= count * chunks, collection
    assert set(large) == set(small)
    assert small == [
        "customers", "customers", "customers", "deliveries", "deliveries", "deliveries",
        "preferences", "processed_events", "rules", "schedules", "schedules",
        "webhook_subscriptions",
    ]  # fmt: skip
    for customer, _ in customers:
        decided = Counter(d["rule"] for d in await setup.deliveries(customer_id=customer))
        assert decided["purchase_thank_you"] == 2  # e-mail, in-app; no webhook subscribed
        assert decided["complaint_acknowledgement"] == 2
        assert decided["complaint_progress"] == 2
        # No marketing while the complaint is open, decided and recorded all the same.
        assert decided["retention_offer"] == 2
        assert {s.id for s in await setup.ctx.schedules.of_customer(customer)} == {
            f"birthday_greeting:{customer}",
            f"complaint_daily_status:{tag}-{customer}",
            f"renewal_reminder:{customer}:k-{customer}:1",
            f"renewal_reminder:{customer}:k-{customer}:7",
            f"renewal_reminder:{customer}:k-{customer}:30",
        }
        report = await setup.ctx.schedules.get(f"complaint_daily_status:{tag}-{customer}")
        assert report is not None
        assert report.params["complaint"]["status"] == "in_progress"


async def test_a_duplicate_in_a_batch_and_across_batches_has_one_delivery(setup: Setup) -> None:
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    purchase = new_event(bought(customer, f"{tag}-1"), source=SHOP)
    other = new_event(bought(customer, f"{tag}-2"), source=SHOP)

    first = await setup.batch(registered(customer, email), purchase, other, purchase)
    assert first == [Outcome.PROCESSED] * 3 + [Outcome.DUPLICATE]
    again = await setup.batch(other, purchase)
    assert again == [Outcome.DUPLICATE, Outcome.DUPLICATE]

    emails = await setup.deliveries(customer_id=customer, channel="email")
    assert sorted(d["context"]["purchase_id"] for d in emails) == [f"{tag}-1", f"{tag}-2"]


async def test_a_purchase_sent_again_under_a_new_event_id_is_thanked_once(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    """A till retrying a purchase sends the same purchase id under a new CloudEvent id: in
    the same batch, and again in a later one. The customer is thanked once."""
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    purchase_id = f"{tag}-1"
    retries = [new_event(bought(customer, purchase_id), source=SHOP) for _ in range(3)]
    assert len({event.id for event in retries}) == 3

    first = await setup.batch(registered(customer, email), retries[0], retries[1])
    assert first == [Outcome.PROCESSED] * 3
    later = await setup.batch(retries[2])
    assert later == [Outcome.PROCESSED]

    thanks = await setup.deliveries(customer_id=customer, rule="purchase_thank_you")
    assert sorted(d["channel"] for d in thanks) == ["email", "in_app"]
    assert {d["source_event_id"] for d in thanks} == {retries[0].id}

    email_sender = Watched(smtp_sink)
    await dispatcher(setup, email_sender).run_once()
    mails = mails_to(smtp_sink, {email})
    assert len(mails) == 1
    assert "Green tea" in mails[0].text()


def replied(tag: str, customer: str, comment: str, comment_id: str = "1") -> ComplaintReplied:
    return ComplaintReplied(
        complaint_id=f"{tag}-cmp", customer_id=customer, comment_id=f"{tag}-{comment_id}",
        agent_id="agent-7", public_comment=comment, replied_at=DAYTIME,
    )  # fmt: skip


async def test_a_public_reply_reaches_the_customer_once_by_e_mail_and_in_app(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    opened = ComplaintOpened.model_validate(
        {"complaint_id": f"{tag}-cmp", "customer_id": customer, "channel": "web",
         "category": "delivery", "subject": "Late parcel", "description": "Two days late",
         "priority": "low", "opened_at": DAYTIME}
    )  # fmt: skip
    comment = "We found your parcel in Split; it goes out again today."
    reply = new_event(replied(tag, customer, comment), source=SHOP)
    outcomes = await setup.batch(registered(customer, email), opened, reply, reply)
    assert outcomes == [Outcome.PROCESSED] * 3 + [Outcome.DUPLICATE]
    assert await setup.batch(reply) == [Outcome.DUPLICATE]
    # The same reply published again under a new event id is still the one message.
    again = new_event(replied(tag, customer, comment), source=SHOP)
    assert await setup.batch(again) == [Outcome.PROCESSED]

    progress = await setup.deliveries(customer_id=customer, rule="complaint_progress")
    assert sorted((d["channel"], d["status"]) for d in progress) == [
        ("email", "pending"), ("in_app", "pending"),
    ]  # fmt: skip
    assert {d["context"]["public_comment"] for d in progress} == {comment}
    report = await setup.ctx.schedules.get(f"complaint_daily_status:{tag}-cmp")
    assert report is not None
    assert report.params["complaint"]["last_public_comment"] == comment

    await dispatcher(setup, Watched(smtp_sink)).run_once()
    mails = [m for m in mails_to(smtp_sink, {email}) if f"{tag}-cmp" in str(m["Subject"])]
    # The acknowledgement of the complaint, and the reply.
    replies = [m for m in mails if comment in m.text()]
    assert len(replies) == 1
    assert "Late parcel" in replies[0].text()
    sent = await setup.deliveries(customer_id=customer, rule="complaint_progress")
    assert {d["status"] for d in sent} == {"sent"}


async def test_a_public_reply_respects_the_customers_preferences_and_consent(
    setup: Setup,
) -> None:
    tag = uuid.uuid4().hex[:6]
    (opted_out, opted_out_email), (refused, refused_email) = people(tag, 2)
    await setup.batch(registered(opted_out, opted_out_email), registered(refused, refused_email))
    no_email = CustomerPreferences(opt_outs=[OptOut(channel="email", purpose="transactional")])
    await setup.ctx.preferences.put(opted_out, no_email, DAYTIME)
    outcomes = await setup.batch(
        ConsentChanged.model_validate(
            {"customer_id": refused, "channel": "in_app", "purpose": "transactional",
             "granted": False, "source": "web", "changed_at": DAYTIME}
        ),
        replied(tag, opted_out, "Thank you for the photos.", comment_id="1"),
        replied(tag, refused, "Thank you for the receipt.", comment_id="2"),
    )  # fmt: skip
    assert outcomes == [Outcome.PROCESSED] * 3
    decided = {
        (d["customer_id"], d["channel"]): d["status"]
        for d in await setup.deliveries(rule="complaint_progress")
        if d["customer_id"] in (opted_out, refused)
    }
    assert decided == {
        (opted_out, "email"): "suppressed", (opted_out, "in_app"): "pending",
        (refused, "email"): "pending", (refused, "in_app"): "suppressed",
    }  # fmt: skip


async def test_an_event_decided_twice_in_one_unit_of_work_is_recorded_once(
    setup: Setup,
) -> None:
    """Past the consumer's markers (a replay), the ledger's key still keeps one decision."""
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    await setup.batch(registered(customer, email))
    purchase = new_event(bought(customer, f"{tag}-1"), source=SHOP)
    bound = routes.bind(setup.ctx)

    async def work(uow: UnitOfWork) -> None:
        await bound.load([purchase, purchase], uow)
        await bound.apply(purchase, uow)
        await bound.apply(purchase, uow)

    await setup.ctx.units().run(work)
    await setup.ctx.units().run(work)
    channels = sorted(d["channel"] for d in await setup.deliveries(customer_id=customer))
    assert channels == ["email", "in_app"]


# -- the dispatcher ------------------------------------------------------------------------


class Watched:
    """The real SMTP sender, watched: how many sends are in flight at once; optionally held
    after the server accepted the message (a slow answer) until ``release`` is set."""

    channel = Channel.EMAIL

    def __init__(self, sink: SmtpSink, *, hold: bool = False) -> None:
        settings = ChannelSettings(smtp_host=sink.host, smtp_port=sink.port)
        self.smtp = SmtpSender(settings)
        self.hold = hold
        self.release = asyncio.Event()
        self.accepted: list[str] = []
        self.in_flight = 0
        self.most_at_once = 0

    async def send(self, message: OutgoingMessage) -> None:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            await self.smtp.send(message)
            self.accepted.append(message.delivery_id)
            if self.hold:
                await self.release.wait()
        finally:
            self.in_flight -= 1


def dispatcher(setup: Setup, email: Sender, **options: Any) -> Dispatcher:
    senders: Mapping[Channel, Sender] = {Channel.EMAIL: email}
    renderer = JinjaTemplateRenderer(TemplateStore(setup.db))
    return Dispatcher(setup.ctx, renderer, senders, **options)


def mails_to(sink: SmtpSink, addresses: set[str]) -> list[ReceivedMessage]:
    return [m for m in sink.messages if set(m.envelope_to) & addresses]


async def customers_bought(setup: Setup, tag: str, count: int) -> dict[str, str]:
    """``count`` customers, each with a purchase whose thank-you is due now; their
    addresses by e-mail delivery id."""
    customers = people(tag, count)
    events: list[EventPayload] = [registered(c, email) for c, email in customers]
    events += [bought(c, f"{tag}-{c}") for c, _ in customers]
    assert set(await setup.batch(*events)) == {Outcome.PROCESSED}
    emails = await setup.deliveries(rule="purchase_thank_you", channel="email")
    by_customer = dict(customers)
    return {
        d["_id"]: by_customer[d["customer_id"]] for d in emails if d["customer_id"] in by_customer
    }


async def test_the_dispatcher_sends_due_deliveries_concurrently_and_records_every_outcome(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    addresses = await customers_bought(setup, tag, 30)
    email = Watched(smtp_sink)
    sending = dispatcher(setup, email, concurrency=8, batch_size=10, poll_interval=0.05)
    await sending.start()
    try:

        async def all_recorded() -> bool:
            pending = await setup.ctx.ledger.deliveries.count_documents(
                {"_id": {"$in": list(addresses)}, "status": "pending"}
            )
            return pending == 0

        await eventually(all_recorded, message="not every delivery was recorded")
    finally:
        await sending.stop()

    recorded = await setup.deliveries(_id={"$in": list(addresses)})
    assert {(d["status"], d["attempts"], d["claim"]) for d in recorded} == {("sent", 1, None)}
    assert {d["address"] for d in recorded} == set(addresses.values())
    mails = mails_to(smtp_sink, set(addresses.values()))
    assert Counter(str(m["X-Rapport-Delivery-Id"]) for m in mails) == dict.fromkeys(addresses, 1)
    assert 1 < email.most_at_once <= 8
    sent_events = await setup.ctx.outbox.collection.count_documents(
        {"type": "crm.notification.sent"}
    )
    assert sent_events == 60  # the e-mails and the in-app messages


async def test_a_stop_finishes_the_sends_in_flight_and_a_restart_does_not_send_them_again(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    addresses = await customers_bought(setup, tag, 12)
    slow = Watched(smtp_sink, hold=True)
    first = dispatcher(setup, slow, concurrency=4, batch_size=4, poll_interval=0.05)
    await first.start()

    async def four_accepted() -> bool:
        return len(slow.accepted) >= 4

    await eventually(four_accepted, message="the first sends never reached the server")
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # it waits for the sends the server accepted
    slow.release.set()
    await stopping

    in_flight = set(slow.accepted)
    assert len(in_flight) == 4
    recorded = await setup.deliveries(_id={"$in": list(in_flight)})
    assert {(d["status"], d["claim"]) for d in recorded} == {("sent", None)}

    # A restart, past the time any claim of the first dispatcher would have expired.
    setup.clock.advance(minutes=10)
    again = Watched(smtp_sink)
    second = dispatcher(setup, again, concurrency=4, batch_size=50)
    while await second.run_once():
        pass
    assert not set(again.accepted) & in_flight
    mails = mails_to(smtp_sink, set(addresses.values()))
    assert Counter(str(m["X-Rapport-Delivery-Id"]) for m in mails) == dict.fromkeys(addresses, 1)


async def test_after_a_crash_only_the_sends_in_flight_repeat_with_the_same_message_id(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    addresses = await customers_bought(setup, tag, 1)
    [(delivery_id, address)] = addresses.items()
    hanging = Watched(smtp_sink, hold=True)
    crashing = asyncio.create_task(dispatcher(setup, hanging).run_once())

    async def accepted() -> bool:
        return bool(hanging.accepted)

    await eventually(accepted, message="the message never reached the server")
    crashing.cancel()  # the process dies: nothing more of it runs
    await asyncio.gather(crashing, return_exceptions=True)

    after = dispatcher(setup, Watched(smtp_sink))
    assert await after.run_once() == 0  # still claimed by the dead dispatcher
    setup.clock.advance(minutes=3)  # past its lease
    assert await after.run_once() == 2  # the e-mail and the in-app message it held
    [delivery] = await setup.deliveries(_id=delivery_id)
    assert delivery["status"] == "sent"
    mails = mails_to(smtp_sink, {address})
    assert len(mails) == 2
    assert {str(m["Message-ID"]) for m in mails} == {f"<{delivery_id}@rapport.local>"}


async def test_a_batch_that_records_a_due_delivery_wakes_the_dispatcher(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    sleepy = dispatcher(setup, Watched(smtp_sink), poll_interval=3600)
    setup.ctx.wake_dispatcher = sleepy.wake
    await sleepy.start()
    try:
        await asyncio.sleep(0.1)  # its first look found nothing; the next is an hour away
        await setup.batch(registered(customer, email), bought(customer, f"{tag}-1"))

        async def thanked() -> bool:
            return bool(mails_to(smtp_sink, {email}))

        await eventually(thanked, timeout=20, message="the dispatcher slept through the batch")
    finally:
        await sleepy.stop()


async def test_what_a_batch_records_as_due_now_is_handed_to_the_dispatcher_after_commit(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    """No look for due deliveries at all (an hour between looks, no wake): the batch
    writes the dispatcher's claim into what it records as due now and, once committed,
    hands it over. A delivery the same batch cancelled later (an erasure) is not sent."""
    tag = uuid.uuid4().hex[:6]
    customers = people(tag, 5)
    (erased, erased_email), *kept = customers
    sleepy = dispatcher(setup, Watched(smtp_sink), poll_interval=3600)
    await sleepy.start()
    setup.ctx.hand_off = sleepy
    try:
        await asyncio.sleep(0.1)  # its first look found nothing; the next is an hour away
        events: list[EventPayload] = [registered(c, email) for c, email in customers]
        events += [bought(c, f"{tag}-{c}") for c, _ in customers]
        events.append(CustomerErased(customer_id=erased, erased_at=DAYTIME))
        assert set(await setup.batch(*events)) == {Outcome.PROCESSED}
        cancelled = await setup.deliveries(customer_id=erased)
        assert {d["status"] for d in cancelled} == {"cancelled"}  # handed, yet not sendable

        async def all_sent() -> bool:
            sent = await setup.deliveries(customer_id={"$in": [c for c, _ in kept]}, status="sent")
            return len(sent) == 2 * len(kept)  # the e-mail and the in-app message each

        await eventually(all_sent, timeout=20, message="the handed deliveries were not sent")
    finally:
        await sleepy.stop()
    mails = mails_to(smtp_sink, {email for _, email in customers})
    assert sorted(m.envelope_to[0] for m in mails) == sorted(email for _, email in kept)
    assert erased_email not in {m.envelope_to[0] for m in mails}


async def test_with_enough_in_hand_the_batch_leaves_its_deliveries_to_the_next_look(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    full = dispatcher(setup, Watched(smtp_sink), poll_interval=3600, max_in_hand=0)
    await full.start()
    setup.ctx.hand_off = full
    try:
        await setup.batch(registered(customer, email), bought(customer, f"{tag}-1"))
    finally:
        await full.stop()
    deliveries = await setup.deliveries(customer_id=customer)
    assert [(d["status"], d["claim"]) for d in deliveries] == [("pending", None)] * 2
    assert all(d["due_at"] <= DAYTIME for d in deliveries)  # due now, for any dispatcher
    assert await dispatcher(setup, Watched(smtp_sink)).run_once() == 2
    assert len(mails_to(smtp_sink, {email})) == 1


async def test_registered_updated_and_erased_in_one_batch_end_erased_and_get_nothing(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    [(customer, email)] = people(tag, 1)
    outcomes = await setup.batch(
        registered(customer, email, birthday="1990-05-05"),
        bought(customer, f"{tag}-1"),
        updated(customer, f"new-{email}", version=2),
        bought(customer, f"{tag}-2"),
        CustomerErased(customer_id=customer, erased_at=DAYTIME),
        bought(customer, f"{tag}-3"),
    )
    assert outcomes == [Outcome.PROCESSED] * 6

    stored = await setup.ctx.directory.customers.find_one({"_id": customer})
    assert stored is not None
    assert stored["erased"] is True
    assert not {"emails", "given_name", "birthday"} & stored.keys()
    schedule = await setup.ctx.schedules.get(f"birthday_greeting:{customer}")
    assert schedule is not None
    assert schedule.status.value == "cancelled"
    deliveries = await setup.deliveries(customer_id=customer)
    statuses = Counter(d["status"] for d in deliveries)
    assert statuses["cancelled"] == 4  # the first two purchases' e-mail and in-app messages
    assert set(statuses) == {"cancelled", "suppressed"}  # the last one's: "customer erased"
    cancelled = [d for d in deliveries if d["status"] == "cancelled"]
    assert all(d["address"] is None and d["context"] == {} for d in cancelled)

    email_sender = Watched(smtp_sink)
    await dispatcher(setup, email_sender).run_once()
    assert email_sender.accepted == []
    assert mails_to(smtp_sink, {email, f"new-{email}"}) == []


async def test_a_purchase_ahead_of_the_registration_waits_and_is_decided_on_the_profile(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    """The purchase overtakes the registration at 23:30 UTC (quiet in the default zone, in
    a deployment whose quiet hours hold back transactional e-mail too). It is not deferred
    to 08:00 UTC blind: it waits for the profile, and is then decided in the customer's own
    zone and language. One that never registers is suppressed after the bounded wait, with
    the reason."""
    setup.ctx.quiet_hours_apply_to |= {(Channel.EMAIL, Purpose.TRANSACTIONAL)}
    tag = uuid.uuid4().hex[:6]
    (new_york, ny_email), (kolkata, in_email), (never, _) = people(tag, 3)
    night = setup.clock.set(datetime(2026, 11, 23, 23, 30, tzinfo=UTC))
    outcomes = await setup.batch(*(bought(c, f"{tag}-{c}") for c in (new_york, kolkata, never)))
    assert outcomes == [Outcome.PROCESSED] * 3
    waiting = await setup.deliveries(rule="purchase_thank_you", channel="email")
    waiting = [d for d in waiting if d["customer_id"].startswith(f"c-{tag}-")]
    assert [(d["status"], d["due_at"], d["deferred_because"]) for d in waiting] == [
        ("pending", night, None)
    ] * 3

    sender = Watched(smtp_sink)
    await dispatcher(setup, sender).run_once()  # nobody known yet: nothing goes, all wait
    assert not mails_to(smtp_sink, {ny_email, in_email})
    waiting = await setup.deliveries(rule="purchase_thank_you", channel="email")
    assert {d["last_error"] for d in waiting if d["customer_id"].startswith(f"c-{tag}-")} == {
        "customer not known yet"
    }

    setup.clock.advance(seconds=30)
    assert (
        await setup.batch(
            registered(new_york, ny_email, locale="hr", time_zone="America/New_York"),  # 18:30
            registered(kolkata, in_email, locale="hr", time_zone="Asia/Kolkata"),  # 05:30
        )
        == [Outcome.PROCESSED] * 2
    )
    await dispatcher(setup, sender).run_once()
    [mail] = mails_to(smtp_sink, {ny_email})
    assert "Hvala na narudžbi" in str(mail["Subject"])  # Croatian, the profile's language
    assert not mails_to(smtp_sink, {in_email})  # night in Kolkata: the morning there
    [deferred] = await setup.deliveries(customer_id=kolkata, channel="email")
    assert deferred["status"] == "pending"
    assert deferred["deferred_because"] == "quiet hours"
    assert deferred["due_at"] == datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 08:00 IST

    setup.clock.advance(minutes=6)  # past the unknown-customer grace (5 min)
    await dispatcher(setup, sender).run_once()
    [dropped] = await setup.deliveries(customer_id=never, channel="email")
    assert (dropped["status"], dropped["reason"]) == ("suppressed", "unknown customer")


async def test_a_thank_you_at_dawn_goes_at_once_while_the_sms_and_the_offer_wait(
    setup: Setup, smtp_sink: SmtpSink
) -> None:
    """A purchase at 05:31 in Zagreb is thanked at once by e-mail and in-app; the same
    customer's complaint acknowledgement by SMS and a retention offer by e-mail wait for
    08:00 there. A deployment that holds back receipts too defers the thank-you."""
    tag = uuid.uuid4().hex[:6]
    (customer, email), (strict, strict_email) = people(tag, 2)
    dawn = setup.clock.set(datetime(2026, 11, 24, 4, 31, tzinfo=UTC))  # 05:31 in Zagreb
    morning = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Zagreb
    outcomes = await setup.batch(
        registered(customer, email, phones=["+385911234567"]),
        *(
            ConsentChanged.model_validate(
                {"customer_id": customer, "channel": channel, "purpose": "marketing",
                 "granted": True, "source": "web", "changed_at": dawn}
            )
            for channel in ("email", "in_app")
        ),
        bought(customer, f"{tag}-dawn"),
        ChurnRiskChanged.model_validate(
            {"customer_id": customer, "previous_level": "low", "level": "high",
             "score": 0.9, "changed_at": dawn}
        ),
        ComplaintOpened.model_validate(
            {"complaint_id": f"{tag}-k", "customer_id": customer, "channel": "web",
             "category": "delivery", "subject": "Late", "description": "Two days late",
             "priority": "low", "opened_at": dawn}
        ),
    )  # fmt: skip
    assert outcomes == [Outcome.PROCESSED] * 6
    decided = {
        (d["rule"], d["channel"]): (d["due_at"], d["deferred_because"])
        for d in await setup.deliveries(customer_id=customer, status="pending")
    }
    assert decided == {
        ("purchase_thank_you", "email"): (dawn, None),
        ("purchase_thank_you", "in_app"): (dawn, None),
        ("complaint_acknowledgement", "email"): (dawn, None),
        ("complaint_acknowledgement", "in_app"): (dawn, None),
        ("complaint_acknowledgement", "sms"): (morning, "quiet hours"),
        ("retention_offer", "email"): (morning, "quiet hours"),
        ("retention_offer", "in_app"): (morning, "quiet hours"),
        ("churn_alert_owner", "email"): (dawn, None),  # internal: to staff at once
    }
    await dispatcher(setup, Watched(smtp_sink)).run_once()
    subjects = sorted(str(m["Subject"]) for m in mails_to(smtp_sink, {email}))
    assert len(subjects) == 2  # the thank-you and the acknowledgement, not the offer
    assert any(f"{tag}-dawn" in subject for subject in subjects)

    setup.ctx.quiet_hours_apply_to |= {(Channel.EMAIL, Purpose.TRANSACTIONAL)}
    outcomes = await setup.batch(registered(strict, strict_email), bought(strict, f"{tag}-s"))
    assert outcomes == [Outcome.PROCESSED] * 2
    receipts = {
        d["channel"]: (d["due_at"], d["deferred_because"])
        for d in await setup.deliveries(customer_id=strict)
    }
    assert receipts == {"email": (morning, "quiet hours"), "in_app": (dawn, None)}
