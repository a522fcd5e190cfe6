"""Purchases applied a batch at a time: each event sees what the earlier ones of its batch
did, and the batch reads each collection once, however many events it holds.

The batches go through the profiles service's own routes and the shared consumer
(``EventConsumer.handle_batch``), on a client that counts the reads it sends; the results
are read back through the service's HTTP API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.profiles import purchases, timeline
from services.profiles.ledger_store import LedgerStore
from services.profiles.store import CustomerStore
from services.profiles.timeline import TimelineRecorder
from services.profiles.timeline_store import TimelineStore
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events import Event, EventPayload, encode, new_event
from shared.events.complaints import ComplaintOpened
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient
from shared.outbox import Outbox
from shared.topics import TopicNames
from shared.unit_of_work import UnitsOfWork
from tests.profiles.conftest import Api
from tests.profiles.test_ledger import (
    figures_of_customer,
    ledger_ids,
    new_customer,
    purchase_body,
)
from tests.support.commands import CommandCounter, counted_client

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SHOP = "urn:shop:eshop-hr"


@pytest.fixture
async def counted(mongodb_uri: str) -> AsyncIterator[tuple[MongoClient, CommandCounter]]:
    async with counted_client(mongodb_uri) as counted:
        yield counted


@pytest.fixture
def consumer(
    counted: tuple[MongoClient, CommandCounter],
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    api: Api,  # the service (and its indexes) on the same database, to read results back
) -> EventConsumer:
    """The profiles consumer's routes, wired as the service wires them, on the counted
    client."""
    client, _ = counted
    service_db = client[db.name]
    outbox = Outbox(service_db, topics)
    customers, timeline_store = CustomerStore(service_db), TimelineStore(service_db)
    ledger = purchases.Ledger(
        units=UnitsOfWork(client, outbox),
        customers=customers,
        store=LedgerStore(service_db),
        timeline=timeline_store,
    )
    routes = purchases.routes.bind(ledger) + timeline.routes.bind(
        TimelineRecorder(customers, timeline_store)
    )
    return EventConsumer(
        service="profiles",
        client=client,
        db=service_db,
        publisher=publisher,
        routes=routes,
        topics=topics,
        outbox=outbox,
        retry_delay=0.01,
    )


def bought(purchase_id: str, buyer: dict[str, str], **overrides: Any) -> PurchaseCompleted:
    return PurchaseCompleted.model_validate(purchase_body(purchase_id, buyer, **overrides))


def a_batch(topics: TopicNames, *payloads: EventPayload | Event[Any]) -> list[IncomingMessage]:
    """The payloads as one poll would hand them over, a minute apart, each a new event
    (an event given as such keeps its id)."""
    messages = []
    for offset, payload in enumerate(payloads):
        event = (
            payload
            if isinstance(payload, Event)
            else new_event(payload, source=SHOP, time=T0 + timedelta(minutes=offset))
        )
        record = encode(event)
        topic = topics(event.payload.topic)
        messages.append(IncomingMessage(topic, 0, offset, record.key, record.value, record.headers))
    return messages


def mug(purchase_id: str, buyer: dict[str, str]) -> PurchaseCompleted:
    item = {"sku": "MUG-1", "name": "Mug", "category": "mugs", "quantity": 1, "unit_price": "10"}
    return bought(purchase_id, buyer, items=[item], total_amount="10.00")


def opened(customer_id: str, complaint_id: str) -> ComplaintOpened:
    return ComplaintOpened.model_validate(
        {
            "complaint_id": complaint_id,
            "customer_id": customer_id,
            "channel": "web",
            "category": "delivery",
            "subject": "Tea arrived late",
            "description": "Two days late.",
            "priority": "low",
            "opened_at": T0.isoformat(),
        }
    )


async def profiles_by_email(api: Api, email: str) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/customers", params={"email": email}, headers=api.agent)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


async def stored_version(db: Database, customer_id: str) -> int:
    figures = await db["customer_figures"].find_one({"_id": customer_id})
    assert figures is not None
    version: int = figures["version"]
    return version


async def test_a_batch_counts_each_purchase_once_and_sees_its_own_earlier_events(
    api: Api, consumer: EventConsumer, topics: TopicNames, db: Database
) -> None:
    ana = await new_customer(api, "ana@example.hr")
    bor = await new_customer(api, "bor@example.hr")
    cvet = await new_customer(api, "cvet@example.hr")
    first_of_ana = new_event(bought("a-1", {"customer_id": ana}), source=SHOP, time=T0)
    returned = PurchaseReturned.model_validate(
        {
            "return_id": "r-b1",
            "purchase_id": "b-1",
            "customer_id": bor,
            "items": [{"sku": "TEA-1", "quantity": 1}],
            "refund_amount": "4.95",
            "currency": "EUR",
            "reason": "one too many",
        }
    )

    outcomes = await consumer.handle_batch(
        a_batch(
            topics,
            first_of_ana,
            bought("b-1", {"customer_id": bor}),
            mug("a-2", {"customer_id": ana}),
            bought("c-1", {"customer_email": "CVET@example.hr"}),
            bought("n-1", {"customer_email": "nova@example.hr"}),  # nobody has it yet
            bought("a-1", {"customer_id": ana}),  # the same purchase under a new event id
            bought("n-2", {"customer_email": "Nova@Example.hr"}),
            bought("a-3", {"customer_id": ana}),
            returned,  # of b-1, bought earlier in this batch
            opened(bor, "cmp-1"),
            first_of_ana,  # the same event again
        )
    )

    assert outcomes == [Outcome.PROCESSED] * 10 + [Outcome.DUPLICATE]
    assert sorted(await ledger_ids(api, ana)) == ["purchase:a-1", "purchase:a-2", "purchase:a-3"]
    figures = await figures_of_customer(api, ana)
    assert figures["purchase_count"] == 3
    assert figures["currencies"][0]["total_spent"] == "29.80"  # 9.90 + 10.00 + 9.90
    assert figures["favourite_categories"] == [
        {"category": "tea", "quantity": 4},
        {"category": "mugs", "quantity": 1},
    ]
    assert await stored_version(db, ana) == 3  # one change per entry folded in

    bor_figures = await figures_of_customer(api, bor)
    assert (bor_figures["purchase_count"], bor_figures["return_count"]) == (1, 1)
    assert bor_figures["currencies"][0]["net_spent"] == "4.95"
    assert await stored_version(db, bor) == 2
    assert sorted(await ledger_ids(api, bor)) == ["purchase:b-1", "return:r-b1"]
    response = await api.http.get(f"/api/v1/customers/{bor}/timeline", headers=api.agent)
    kinds = Counter(entry["kind"] for entry in response.json()["items"])
    assert (kinds["purchase"], kinds["return"], kinds["complaint"]) == (1, 1, 1)

    assert await ledger_ids(api, cvet) == ["purchase:c-1"]
    [nova] = await profiles_by_email(api, "nova@example.hr")  # one profile, not two
    assert sorted(await ledger_ids(api, nova["id"])) == ["purchase:n-1", "purchase:n-2"]
    assert (await figures_of_customer(api, nova["id"]))["purchase_count"] == 2


async def test_a_purchase_that_cannot_be_applied_leaves_its_neighbours_whole(
    api: Api, consumer: EventConsumer, topics: TopicNames, db: Database
) -> None:
    ana = await new_customer(api, "solo@example.hr")

    outcomes = await consumer.handle_batch(
        a_batch(
            topics,
            bought("s-1", {"customer_id": ana}),
            bought("s-2", {"customer_email": "fresh@example.hr"}),
            bought("lost", {"customer_id": "cus_nobody"}),
            bought("s-3", {"customer_id": ana}),
            bought("s-4", {"customer_email": "fresh@example.hr"}),
        )
    )

    assert outcomes[2] is Outcome.DEAD_LETTERED
    assert outcomes[:2] + outcomes[3:] == [Outcome.PROCESSED] * 4
    assert sorted(await ledger_ids(api, ana)) == ["purchase:s-1", "purchase:s-3"]
    assert (await figures_of_customer(api, ana))["purchase_count"] == 2
    [fresh] = await profiles_by_email(api, "fresh@example.hr")
    assert sorted(await ledger_ids(api, fresh["id"])) == ["purchase:s-2", "purchase:s-4"]
    assert await db["ledger"].count_documents({"purchase_id": "lost"}) == 0


def shop_day(
    by_id: Sequence[str], by_email: Sequence[str], merged: str, tag: str
) -> list[EventPayload]:
    """Three purchases per customer (by id, by e-mail, and one naming a merged profile)
    and a complaint per customer named by id: one batch's worth of a busy day."""
    payloads: list[EventPayload] = []
    for round_ in range(3):
        payloads += [bought(f"{tag}-{c}-{round_}", {"customer_id": c}) for c in by_id]
        payloads += [bought(f"{tag}-{e}-{round_}", {"customer_email": e}) for e in by_email]
        payloads.append(bought(f"{tag}-merged-{round_}", {"customer_id": merged}))
    payloads += [opened(c, f"{tag}-cmp-{c}") for c in by_id]
    return payloads


async def test_a_batch_reads_and_writes_each_collection_once_whatever_its_size(
    api: Api,
    consumer: EventConsumer,
    counted: tuple[MongoClient, CommandCounter],
    topics: TopicNames,
    db: Database,
) -> None:
    _, counter = counted
    by_id = [await new_customer(api, f"id-{n}@example.hr") for n in range(12)]
    emails = [f"mail-{n}@example.hr" for n in range(5)]
    for email in emails:
        await new_customer(api, email)
    survivor, merged = by_id[0], await new_customer(api, "merged@example.hr")
    await db["customers"].update_one(
        {"_id": merged}, {"$set": {"status": "merged", "merged_into": survivor}}
    )

    reads: list[list[str]] = []
    round_trips: list[Counter[tuple[str, str]]] = []
    batches = {"small": (by_id[1:3], emails[:1]), "large": (by_id[3:11], emails[1:5])}
    for tag, (named, mailed) in batches.items():
        counter.commands.clear()
        batch = shop_day(named, mailed, merged, tag)
        outcomes = await consumer.handle_batch(a_batch(topics, *batch))
        assert outcomes == [Outcome.PROCESSED] * len(batch)
        reads.append(counter.finds())
        round_trips.append(Counter(counter.commands))

    small, large = reads
    # The markers, the ledger, the e-mails' owners, the figures once each; the profiles
    # once, and once more for the merge step (to the profile the merged one went into).
    assert small == [
        "customer_figures",
        "customers",
        "customers",
        "identities",
        "ledger",
        "processed_events",
    ]
    assert large == small
    # Writes too: one command per collection changed (ledger, figures, timeline), not
    # one per event, and the same number for three times the events.
    small_trips, large_trips = round_trips
    assert small_trips == large_trips
    assert small_trips[("insert", "ledger")] == 1
    assert small_trips[("update", "customer_figures")] == 1
    assert small_trips[("insert", "timeline")] == 1
    for customer_id in by_id[1:11]:
        assert (await figures_of_customer(api, customer_id))["purchase_count"] == 3
    assert (await figures_of_customer(api, survivor))["purchase_count"] == 6
    for email in emails:
        [owner] = await profiles_by_email(api, email)
        assert (await figures_of_customer(api, owner["id"]))["purchase_count"] == 3
