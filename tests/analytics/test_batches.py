"""Events applied a batch at a time: a batch gives the figures its events give applied one
at a time, reads and writes each collection once however many events it holds, and
registrations, merges and erasures inside it take effect in their order; judging the
whole population again stores what changed in bulk.

The batches go through the analytics routes and the shared consumer
(``EventConsumer.handle_batch``) on the real store, on a client that counts the commands
it sends; figures are read back as the API computes them (``services.analytics.queries``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from bson import Binary

from services.analytics import queries
from services.analytics.domain.figures import Window
from services.analytics.handlers.context import Analytics
from services.analytics.handlers.recompute import recompute
from services.analytics.handlers.routing import routes
from services.analytics.store import AnalyticsStore
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.errors import Gone, NotFound
from shared.events import Event, EventPayload, encode, new_event
from shared.events.customers import CustomerErased, CustomerMerged, CustomerUpdated
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient
from shared.outbox import Outbox
from shared.topics import TopicNames
from tests.analytics.conftest import (
    NOW,
    acknowledged,
    ago,
    feedback,
    notified,
    opened,
    purchase,
    refunded,
    registered,
    resolved,
    returned,
)
from tests.service_harness import DrivenClock
from tests.support.commands import CommandCounter, counted_client, in_queries


@pytest.fixture
async def counted(mongodb_uri: str) -> AsyncIterator[tuple[MongoClient, CommandCounter]]:
    async with counted_client(mongodb_uri) as counted:
        yield counted


@dataclass
class Service:
    """The analytics event path on one database, as bootstrap wires it, at ``NOW``."""

    analytics: Analytics
    consumer: EventConsumer

    async def apply(self, messages: Sequence[IncomingMessage]) -> list[Outcome]:
        return await self.consumer.handle_batch(messages)

    async def apply_one_by_one(self, messages: Sequence[IncomingMessage]) -> list[Outcome]:
        return [outcome for message in messages for outcome in await self.apply([message])]

    async def figures(self) -> Any:
        """Every figure the API answers with at ``NOW`` (``queries.snapshot``)."""
        return json.loads(
            json.dumps(await queries.snapshot(self.analytics, NOW), default=str, sort_keys=True)
        )

    async def stored_customers(self) -> dict[str, Any]:
        """Each customer's stored summary and judgement (what the batches wrote)."""
        found = self.analytics.store.customers.find({}, {"version": 0})
        stored: dict[str, Any] = json.loads(
            json.dumps({d["_id"]: d async for d in found}, default=str, sort_keys=True)
        )
        return stored


ServiceOn = Callable[[Database], Awaitable[Service]]


@pytest.fixture
async def service_on(
    counted: tuple[MongoClient, CommandCounter],
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    mongo_client: MongoClient,
) -> AsyncIterator[ServiceOn]:
    """Makes the service on a database (dropped afterwards), on the counted client."""
    client, _ = counted
    made: list[str] = []

    async def on(db: Database) -> Service:
        database = client[db.name]
        made.append(db.name)
        outbox = Outbox(database, topics)
        analytics = Analytics(
            client=client, store=AnalyticsStore(database), outbox=outbox, clock=DrivenClock(NOW)
        )
        consumer = EventConsumer(
            service="analytics",
            client=client,
            db=database,
            publisher=publisher,
            routes=routes.bind(analytics),
            topics=topics,
            outbox=outbox,
            retry_delay=0.01,
        )
        await analytics.store.ensure_indexes()
        await consumer.ensure_indexes()
        return Service(analytics, consumer)

    yield on
    for name in made:
        await mongo_client.drop_database(name)


def a_batch(topics: TopicNames, *payloads: EventPayload) -> list[IncomingMessage]:
    """The payloads as one poll would hand them over, each a new event."""
    messages = []
    for offset, payload in enumerate(payloads):
        event: Event[Any] = new_event(payload, source="/tests", time=NOW)
        record = encode(event)
        topic = topics(event.payload.topic)
        messages.append(IncomingMessage(topic, 0, offset, record.key, record.value, record.headers))
    return messages


CUSTOMERS = [f"c-{n:02d}" for n in range(20)]


def busy_day() -> list[EventPayload]:
    """Ten purchases by each of 20 customers, a few days apart, interleaved as a shop
    sends them: 200 events."""
    return [
        purchase(
            customer_id,
            f"{customer_id}-p{k}",
            ago(days=60 - 5 * k, hours=n),
            [(f"SKU-{(n + k) % 7}", ("tea", "cups", "honey")[(n + k) % 3], f"{10 + n}.{k}0")],
        )
        for k in range(10)
        for n, customer_id in enumerate(CUSTOMERS)
    ]


def the_day_after() -> list[EventPayload]:
    """More of everything for the same customers: a purchase dated before ones counted
    already, returns, complaints resolved and answered with feedback, notifications, and a
    purchase id delivered again under a new event."""
    payloads: list[EventPayload] = []
    for n, customer_id in enumerate(CUSTOMERS[:10]):
        payloads += [
            purchase(customer_id, f"{customer_id}-late", ago(days=1)),
            purchase(customer_id, f"{customer_id}-old", ago(days=200), [("SKU-9", "mugs", "3")]),
            returned(customer_id, f"{customer_id}-r", f"{customer_id}-p9", "5.00", ago(hours=n)),
            opened(customer_id, f"{customer_id}-k", ago(days=3)),
            resolved(customer_id, f"{customer_id}-k", ago(days=1)),
            feedback(customer_id, f"{customer_id}-k", 1 + n % 5, n, ago(hours=12)),
            notified("sent", customer_id, f"{customer_id}-n", ago(hours=2)),
            purchase(customer_id, f"{customer_id}-p0", ago(days=60)),  # counted already
        ]
    return payloads


async def test_a_batch_gives_the_figures_of_its_events_applied_one_at_a_time(
    service_on: ServiceOn,
    counted: tuple[MongoClient, CommandCounter],
    topics: TopicNames,
    db: Database,
    mongo_client: MongoClient,
) -> None:
    _, counter = counted
    batched = await service_on(db)
    one_by_one = await service_on(mongo_client[f"{db.name}_one"])
    first, second = a_batch(topics, *busy_day()), a_batch(topics, *the_day_after())

    counter.commands.clear()
    assert await batched.apply(first) == [Outcome.PROCESSED] * 200
    # The markers, the customers and the purchases read once each (per
    # RAPPORT_MONGODB_IN_CHUNK keys if set; the population too, which is read again at most
    # every few seconds), whatever the number of events: 200 purchases of 20 customers.
    per_200 = in_queries(200)
    assert Counter(counter.finds()) == {
        "analytics_state": 1,
        "customers": 1,
        "processed_events": per_200,
        "purchases": per_200,
    }
    writes = Counter(counter.commands)
    assert writes[("insert", "purchases")] == 1  # 200 facts, one bulk write
    assert writes[("update", "customers")] == 1  # 20 summaries, each rebuilt once
    assert writes[("insert", "outbox")] == 1  # their first segments, announced together

    counter.commands.clear()
    assert await batched.apply(second) == [Outcome.PROCESSED] * 80
    # The purchases dated before others make their customers' purchases be read again,
    # for all of them at once; every other kind of fact is read by id, once (the markers
    # of 80 events: a query per RAPPORT_MONGODB_IN_CHUNK if set).
    assert counter.finds("analytics_state") == [
        "complaints",
        "customers",
        *["processed_events"] * in_queries(80),
        "purchases",
        "purchases",
        "returns",
    ]
    writes = Counter(counter.commands)
    for collection in ("purchases", "returns", "complaints", "feedback", "notifications"):
        assert writes[("insert", collection)] == 1, collection  # new facts, one bulk write
    assert writes[("update", "customers")] == 1

    await one_by_one.apply_one_by_one(first + second)

    figures = await batched.figures()
    assert figures == await one_by_one.figures()
    assert await batched.stored_customers() == await one_by_one.stored_customers()
    distinct: dict[str, PurchaseCompleted] = {}
    for payload in [*busy_day(), *the_day_after()]:
        if isinstance(payload, PurchaseCompleted):
            distinct.setdefault(payload.purchase_id, payload)  # a repeated id counts once
    recent = [p for p in distinct.values() if p.purchased_at and p.purchased_at > ago(days=30)]
    month = figures["kpis"]["30d"]
    assert month["purchases"] == len(recent) > 0
    assert Decimal(month["revenue"]["EUR"]) == sum(p.total_amount for p in recent)
    c00 = figures["customers"]["c-00"]["summary"]
    assert c00["purchases"] == 12  # ten, the late one and the old one; not p0 again
    assert c00["first_purchase_at"] == str(ago(days=200))
    assert "mugs" in c00["categories"]


def updated(customer_id: str, name: str, **extra: Any) -> EventPayload:
    given, _, family = name.partition(" ")
    return CustomerUpdated.model_validate(
        {
            "customer_id": customer_id,
            "given_name": given,
            "family_name": family or None,
            "created_at": ago(days=3),
            "updated_at": ago(days=2),
            "version": 2,
            **extra,
        }
    )


def bought_by_email(purchase_id: str, email: str) -> EventPayload:
    return PurchaseCompleted.model_validate(
        {
            "purchase_id": purchase_id,
            "customer_email": email,
            "items": [
                {"sku": "T", "name": "Tea", "category": "tea", "quantity": 1, "unit_price": "3.00"}
            ],
            "total_amount": "3.00",
            "currency": "EUR",
            "channel": "pos",
            "purchased_at": ago(hours=5),
        }
    )


async def test_registered_updated_and_erased_in_one_batch_ends_erased(
    service_on: ServiceOn, topics: TopicNames, db: Database
) -> None:
    service = await service_on(db)
    store = service.analytics.store
    outcomes = await service.apply(
        a_batch(
            topics,
            registered("c-x", "Ana Horvat", ago(days=3), emails=["ana@example.com"]),
            bought_by_email("x1", "Ana@Example.com"),
            updated("c-x", "Ana Kovač", emails=["ana@example.com"], external_ids={"shop": "7"}),
            purchase("c-x", "x2", ago(hours=4)),
            opened("c-x", "kx", ago(hours=3)),
            notified("sent", "c-x", "nx", ago(hours=3)),
            purchase("c-y", "y1", ago(hours=3)),
            CustomerErased(customer_id="c-x", erased_at=ago(hours=2)),
            purchase("c-x", "x3", ago(hours=1)),  # after the erasure: counted anonymously
            feedback("c-x", "kx", 2, 3, ago(hours=1)),
        )
    )

    assert outcomes == [Outcome.PROCESSED] * 10
    with pytest.raises(Gone):
        await queries.insights(service.analytics, "c-x", NOW)
    kept = await store.customers.find_one({"_id": "c-x"})
    assert kept is not None
    assert (kept["erased"], kept["name"], kept["summary"]) == (True, None, None)
    assert kept["registered_at"] == ago(days=3)  # "new customers" still counts it
    for collection in ("purchases", "complaints", "feedback", "notifications"):
        for name in ("c-x", "email:ana@example.com"):
            assert await store.db[collection].count_documents({"customer_id": name}) == 0
            assert await store.db[collection].count_documents({"named": name}) == 0
    assert await store.identities.count_documents({}) == 0  # the e-mail and shop id went
    tokens = await store.purchases.distinct("customer_id", {"_id": {"$in": ["x1", "x2", "x3"]}})
    assert len(tokens) == 1  # one anonymous buyer
    assert tokens[0].startswith("anonymous-")
    day = await queries.kpis(store, Window.DAY, NOW)
    assert day["purchases"] == 4  # the aggregates keep counting
    assert day["satisfaction"]["responses"] == 1
    outbox = service.analytics.outbox.collection
    assert await outbox.count_documents({"key": Binary(b"c-x")}) == 0  # nothing said of c-x
    assert await outbox.count_documents({"key": Binary(b"c-y")}) >= 1
    assert (await queries.insights(service.analytics, "c-y", NOW))["purchases"]["count"] == 1


async def test_a_merge_inside_a_batch_counts_later_facts_for_the_survivor(
    service_on: ServiceOn, topics: TopicNames, db: Database, mongo_client: MongoClient
) -> None:
    batched = await service_on(db)
    one_by_one = await service_on(mongo_client[f"{db.name}_one"])
    events = a_batch(
        topics,
        registered("c-keep", "Iva Novak", ago(days=100)),
        purchase("c-keep", "k1", ago(days=30)),
        purchase("c-old", "o1", ago(days=20)),
        purchase("c-old", "o2", ago(days=10)),
        opened("c-old", "ko", ago(days=5)),
        CustomerMerged(customer_id="c-keep", source_customer_id="c-old", merged_at=ago(days=1)),
        purchase("c-old", "o3", ago(hours=1)),  # names the merged-away id
        acknowledged("c-old", "ko", ago(hours=1)),
    )

    assert await batched.apply(events) == [Outcome.PROCESSED] * 8
    survivor = await queries.insights(batched.analytics, "c-keep", NOW)
    assert survivor["purchases"]["count"] == 4
    assert survivor["rhythm"]["mean_interval_days"] == pytest.approx(10.0, abs=0.01)
    assert survivor["complaints"]["open"] == 1
    with pytest.raises(NotFound) as moved:
        await queries.insights(batched.analytics, "c-old", NOW)
    assert moved.value.extensions["merged_into"] == "c-keep"
    late = await batched.analytics.store.purchases.find_one({"_id": "o3"})
    assert late is not None
    assert (late["named"], late["customer_id"]) == ("c-old", "c-keep")

    await one_by_one.apply_one_by_one(events)
    assert await batched.figures() == await one_by_one.figures()
    assert await batched.stored_customers() == await one_by_one.stored_customers()


async def segments(analytics: Analytics) -> dict[str, int]:
    counts = await queries.segment_counts(analytics.store)
    return {s["segment"]: s["count"] for s in counts["segments"] if s["count"]}


async def test_judging_the_population_again_stores_what_changed_in_bulk(
    service_on: ServiceOn,
    counted: tuple[MongoClient, CommandCounter],
    topics: TopicNames,
    db: Database,
) -> None:
    _, counter = counted
    service = await service_on(db)
    analytics = service.analytics
    assert isinstance(analytics.clock, DrivenClock)
    analytics.clock.now = ago(days=99)
    buyers = [f"b-{n:02d}" for n in range(25)]
    await service.apply(a_batch(topics, *[purchase(b, f"{b}-1", ago(days=100)) for b in buyers]))
    assert await segments(analytics) == {"new": 25}

    analytics.clock.now = NOW  # 100 days after their only purchase: no longer new
    counter.commands.clear()
    assert await recompute(analytics, chunk=10) == 25

    writes = Counter(counter.commands)
    assert writes[("update", "customers")] == 3  # 10 + 10 + 5 customers, one write each
    assert writes[("insert", "outbox")] == 3  # their announcements, with them
    assert counter.finds() == ["customers"] * 4  # everyone, then each chunk's versions
    assert await segments(analytics) == {"lost": 25}
    announced = analytics.outbox.collection.find({"type": "crm.customer.segment_changed"})
    changes = Counter([bytes(document["key"]) async for document in announced])
    assert changes == Counter({b.encode(): 2 for b in buyers})  # new, then lost

    counter.commands.clear()
    assert await recompute(analytics, chunk=10) == 0  # judged again, nothing changed
    assert Counter(counter.commands)[("update", "customers")] == 0


async def test_a_complaint_refund_counts_as_a_refund_once_as_the_ledger_books_it(
    service_on: ServiceOn, topics: TopicNames, db: Database
) -> None:
    service = await service_on(db)
    spends = {f"s-{n}": f"{10 * n}.00" for n in range(1, 11)}  # 10.00 ... 100.00
    await service.apply(
        a_batch(
            topics,
            *[
                purchase(c, f"{c}-p", ago(days=3), [("SKU-X", "misc", s)])
                for c, s in spends.items()
            ],
            purchase("c-a", "pa", ago(days=2), [("SKU-POT", "pots", "80.00")]),
            purchase("c-b", "pb", ago(days=2), [("SKU-CUP", "cups", "40.00")]),
            opened("c-a", "ka", ago(days=1)),
        )
    )

    async def of(customer_id: str) -> tuple[Any, Any, Any]:
        figures = await service.figures()
        insight = figures["insights"][customer_id]
        return insight["purchases"], insight["rfm"]["monetary"], figures["kpis"]["24h"]["refunds"]

    bought, monetary, refunds = await of("c-a")
    assert (bought["spend"], bought["refunds"], bought["net"]) == (
        {"EUR": "80.00"},
        {},
        {"EUR": "80.00"},
    )
    assert monetary == (await of("s-8"))[1]  # as the one who spent 80.00
    assert refunds == {}

    # A resolution granting no refund changes no money.
    await service.apply(a_batch(topics, resolved("c-a", "ka", ago(hours=3))))
    assert (await of("c-a"))[0] == bought
    assert (await of("c-a"))[2] == {}

    # Resolved again, with 30.00 refunded: net 50.00, scored as the one who spent 50.00.
    # For c-b the same refund arrives as a return with the ledger's id and as the
    # resolution, in one batch: counted once.
    await service.apply(
        a_batch(
            topics,
            refunded("c-a", "ka", "pa", "30.00", ago(hours=2)),
            returned("c-b", "complaint:kb", "pb", "10.00", ago(hours=2)),
            refunded("c-b", "kb", "pb", "10.00", ago(hours=2)),
        )
    )
    bought, monetary, refunds = await of("c-a")
    assert (bought["spend"], bought["refunds"], bought["net"]) == (
        {"EUR": "80.00"},
        {"EUR": "30.00"},
        {"EUR": "50.00"},
    )
    assert monetary == (await of("s-5"))[1] != (await of("s-8"))[1]
    assert refunds == {"EUR": "40.00"}  # 30.00 for c-a, 10.00 for c-b
    assert (await of("c-b"))[0]["net"] == {"EUR": "30.00"}

    # The same refund again, under new event ids, as a resolution and as a return: once.
    before = await service.figures()
    await service.apply(
        a_batch(
            topics,
            refunded("c-a", "ka", "pa", "30.00", ago(hours=2)),
            returned("c-a", "complaint:ka", "pa", "30.00", ago(hours=1)),
        )
    )
    assert await service.figures() == before
