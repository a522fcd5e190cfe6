"""The purchase ledger: purchases and returns over HTTP and Kafka, figures, refunds."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from services.profiles.ledger import (
    LineItem,
    Origin,
    PurchaseEntry,
    ReturnEntry,
    ReturnLine,
    figures_of,
)
from shared.errors import InvalidInput
from shared.events import encode, new_event
from shared.events.complaints import ComplaintResolved
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.topics import CUSTOMERS, PURCHASES, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.service_harness import eventually
from tests.support.api import PROBLEM

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

# Pure rules: the figures folded from a ledger, checked by hand.


def bought(purchase_id: str, at: datetime, currency: str, *items: LineItem) -> PurchaseEntry:
    total = sum((item.unit_price * item.quantity for item in items), Decimal(0))
    return PurchaseEntry(
        purchase_id=purchase_id,
        customer_id="c",
        occurred_at=at,
        recorded_at=at,
        currency=currency,
        amount=total,
        channel="web",
        items=items,
        origin=Origin.HTTP,
    )


def item(sku: str, category: str, quantity: int, price: str) -> LineItem:
    return LineItem(
        sku=sku, name=sku, category=category, quantity=quantity, unit_price=Decimal(price)
    )


def brought_back(purchase: PurchaseEntry, amount: str, *lines: ReturnLine) -> ReturnEntry:
    return ReturnEntry(
        return_id=f"r-{purchase.purchase_id}",
        purchase_id=purchase.purchase_id,
        customer_id="c",
        occurred_at=purchase.occurred_at + timedelta(days=1),
        recorded_at=purchase.occurred_at,
        currency=purchase.currency,
        amount=Decimal(amount),
        items=lines,
        origin=Origin.HTTP,
    )


def test_figures_add_up_by_hand() -> None:
    tea = bought("p1", T0, "EUR", item("T", "tea", 2, "4.95"))  # 9.90
    cups = bought("p2", T0 + timedelta(days=10), "EUR", item("C", "cups", 1, "10.00"))
    more_tea = bought(
        "p3",
        T0 + timedelta(days=4),
        "EUR",
        item("T", "tea", 3, "4.95"),
        item("C", "cups", 1, "0.35"),
    )  # 15.20, arrives out of order
    dollars = bought("p4", T0 + timedelta(days=30), "USD", item("B", "books", 1, "20"))
    refund = brought_back(more_tea, "4.95", ReturnLine(sku="T", quantity=1))

    figures = figures_of("c", [tea, cups, more_tea, dollars, refund])

    assert figures.purchase_count == 4
    assert figures.return_count == 1
    eur, usd = figures.currencies["EUR"], figures.currencies["USD"]
    assert (eur.purchase_count, eur.total_spent, eur.refunded) == (
        3,
        Decimal("35.10"),
        Decimal("4.95"),
    )
    assert eur.net_spent == Decimal("30.15")
    assert eur.average_order_value == Decimal("11.70")  # 35.10 / 3
    assert (usd.total_spent, usd.net_spent, usd.average_order_value) == (
        Decimal(20),
        Decimal(20),
        Decimal(20),
    )
    assert figures.first_purchase_at == T0
    assert figures.last_purchase_at == T0 + timedelta(days=30)
    # Sorted purchase days 0, 4, 10, 30: gaps 4, 6, 20, mean 10.
    assert figures.mean_interval_days == 10.0
    # tea 2 + 3 - 1 returned = 4, cups 1 + 1 = 2, books 1.
    assert [(c.category, c.quantity) for c in figures.favourite_categories()] == [
        ("tea", 4),
        ("cups", 2),
        ("books", 1),
    ]


def test_a_return_cannot_refund_more_or_other_than_was_bought() -> None:
    tea = bought("p1", T0, "EUR", item("T", "tea", 2, "5.00"))
    partly = tea.after_return(brought_back(tea, "5.00", ReturnLine(sku="T", quantity=1)))
    assert (partly.refunded, partly.returned, partly.revision) == (Decimal("5.00"), {"T": 1}, 1)
    with pytest.raises(InvalidInput, match=r"only 5\.00 EUR of 10\.00 EUR is left"):
        partly.after_return(brought_back(tea, "5.01"))
    with pytest.raises(InvalidInput, match="has 1 left to return"):
        partly.after_return(brought_back(tea, "1", ReturnLine(sku="T", quantity=2)))
    with pytest.raises(InvalidInput, match="no item X"):
        tea.after_return(brought_back(tea, "1", ReturnLine(sku="X", quantity=1)))
    in_dollars = brought_back(tea, "1").model_copy(update={"currency": "USD"})
    with pytest.raises(InvalidInput, match="paid in EUR, not USD"):
        tea.after_return(in_dollars)


# Through the running service


def purchase_body(purchase_id: str, customer: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purchase_id": purchase_id,
        **customer,
        "items": [
            {
                "sku": "TEA-1",
                "name": "Green tea",
                "category": "tea",
                "quantity": 2,
                "unit_price": "4.95",
            }
        ],
        "total_amount": "9.90",
        "currency": "EUR",
        "channel": "web",
    }
    body.update(overrides)
    return body


def cloudevent(event_type: str, subject: str, data: dict[str, Any]) -> bytes:
    """A CloudEvent as a shop would write it by hand, without any Rapport code."""
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:shop:eshop-hr",
        "type": event_type,
        "subject": subject,
        "time": "2026-11-22T10:15:00+01:00",
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(envelope).encode()


def produce_foreign(bootstrap: str, topic: str, *messages: tuple[str, bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in messages:
        producer.produce(
            topic,
            key=key.encode(),
            value=value,
            headers=[("content-type", b"application/cloudevents+json")],
        )
    assert producer.flush(10) == 0


async def new_customer(api: Api, email: str, **extra: Any) -> str:
    response = await api.http.post(
        "/api/v1/customers",
        json={"given_name": "Ana", "emails": [email], **extra},
        headers=api.agent,
    )
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["id"]
    return customer_id


async def ledger_of(api: Api, customer_id: str, **params: Any) -> dict[str, Any]:
    response = await api.http.get(
        f"/api/v1/customers/{customer_id}/ledger", params=params, headers=api.agent
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def figures_of_customer(api: Api, customer_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/api/v1/customers/{customer_id}/figures", headers=api.agent)
    assert response.status_code == 200, response.text
    figures: dict[str, Any] = response.json()
    return figures


async def ledger_ids(api: Api, customer_id: str) -> list[str]:
    return [entry["entry_id"] for entry in (await ledger_of(api, customer_id))["items"]]


async def wait_for_entry(api: Api, customer_id: str, entry_id: str) -> None:
    async def present() -> bool:
        return entry_id in await ledger_ids(api, customer_id)

    await eventually(present, timeout=30, message=f"{entry_id} never reached the ledger")


async def test_a_purchase_from_a_foreign_kafka_client_counts_once_in_ledger_and_figures(
    api: Api, kafka_bootstrap: str, topics: TopicNames, db: Database
) -> None:
    customer_id = await new_customer(api, "kafka@example.hr")
    data = purchase_body("web-1001", {"customer_id": customer_id})
    first = cloudevent("crm.purchase.completed", customer_id, data)
    again = cloudevent("crm.purchase.completed", customer_id, data)  # same purchase, new event id
    sentinel = cloudevent(
        "crm.purchase.completed",
        customer_id,
        purchase_body("web-1002", {"customer_id": customer_id}, channel="pos"),
    )
    produce_foreign(
        kafka_bootstrap,
        topics(PURCHASES),
        (customer_id, first),
        (customer_id, first),
        (customer_id, again),
        (customer_id, sentinel),
    )

    await wait_for_entry(api, customer_id, "purchase:web-1002")
    assert sorted(await ledger_ids(api, customer_id)) == ["purchase:web-1001", "purchase:web-1002"]
    figures = await figures_of_customer(api, customer_id)
    assert figures["purchase_count"] == 2
    assert figures["currencies"][0] == {
        "currency": "EUR",
        "purchase_count": 2,
        "total_spent": "19.80",
        "refunded": "0",
        "net_spent": "19.80",
        "average_order_value": "9.90",
    }
    timeline = await db["timeline"].find_one({"_id": "purchase:web-1001"})
    assert timeline is not None
    assert timeline["summary"] == "bought 2 items for 9.90 EUR (web)"
    assert timeline["kind"] == "purchase"
    # Consumed from Kafka: stored, not published again.
    published = await read_topic(kafka_bootstrap, topics(PURCHASES))
    assert len(published) == 4


async def test_a_purchase_for_an_unknown_customer_is_dead_lettered_and_the_worker_goes_on(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer_id = await new_customer(api, "dlq@example.cz")
    unknown = cloudevent(
        "crm.purchase.completed",
        "cus_nobody",
        purchase_body("lost-1", {"customer_id": "cus_nobody"}),
    )
    fine = cloudevent(
        "crm.purchase.completed", customer_id, purchase_body("kept-1", {"customer_id": customer_id})
    )
    produce_foreign(
        kafka_bootstrap, topics(PURCHASES), ("cus_nobody", unknown), (customer_id, fine)
    )

    dead = await read_topic(kafka_bootstrap, topics.dlq(topics(PURCHASES)), until=bool)
    [record] = dead
    headers = {name: value.decode() for name, value in record.headers}
    assert headers["dlq-reason"] == "no customer cus_nobody"
    assert headers["dlq-error-type"] == "RejectEvent"
    assert json.loads(record.value)["data"]["purchase_id"] == "lost-1"
    await wait_for_entry(api, customer_id, "purchase:kept-1")


async def test_a_purchase_by_email_or_external_id_finds_or_creates_the_profile(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    known = await new_customer(api, "eva@example.si", external_ids={"pos": "77"})
    produce_foreign(
        kafka_bootstrap,
        topics(PURCHASES),
        (
            "Nova@example.si",
            cloudevent(
                "crm.purchase.completed",
                "Nova@example.si",  # the subject is the e-mail as pydantic reads it
                purchase_body("by-mail-1", {"customer_email": "Nova@Example.si"}),
            ),
        ),
        (
            "nova@example.si",
            cloudevent(
                "crm.purchase.completed",
                "nova@example.si",
                purchase_body("by-mail-2", {"customer_email": "nova@example.si"}),
            ),
        ),
        (
            "pos:77",
            cloudevent(
                "crm.purchase.completed",
                "pos:77",
                purchase_body("by-pos-1", {"customer_external_id": "pos:77"}),
            ),
        ),
    )

    async def created() -> list[dict[str, Any]]:
        response = await api.http.get(
            "/api/v1/customers", params={"email": "nova@example.si"}, headers=api.agent
        )
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def both_purchases_in() -> bool:
        found = await created()
        return bool(found) and len(await ledger_ids(api, found[0]["id"])) == 2

    await eventually(both_purchases_in, timeout=30, message="purchases by e-mail not recorded")
    [nova] = await created()
    assert nova["emails"] == ["nova@example.si"]
    await wait_for_entry(api, known, "purchase:by-pos-1")

    # A loyalty card never seen before: the POS knows nothing else, and that is enough.
    produce_foreign(
        kafka_bootstrap,
        topics(PURCHASES),
        (
            "pos:new-card",
            cloudevent(
                "crm.purchase.completed",
                "pos:new-card",
                purchase_body("by-pos-2", {"customer_external_id": "pos:new-card"}),
            ),
        ),
    )

    async def card_holder() -> list[dict[str, Any]]:
        response = await api.http.get(
            "/api/v1/customers", params={"external_id": "pos:new-card"}, headers=api.agent
        )
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def has_holder() -> bool:
        return bool(await card_holder())

    await eventually(has_holder, message="no profile for the new card")
    [holder] = await card_holder()
    await wait_for_entry(api, holder["id"], "purchase:by-pos-2")

    registered = await read_topic(
        kafka_bootstrap,
        topics(CUSTOMERS),
        until=lambda records: any(nova["id"].encode() == r.key for r in records),
    )
    assert [json.loads(r.value)["type"] for r in registered if r.key == nova["id"].encode()] == [
        "crm.customer.registered"
    ]


async def test_http_purchases_are_idempotent_by_id_and_published_once(
    api: Api, kafka_bootstrap: str, topics: TopicNames, db: Database
) -> None:
    customer_id = await new_customer(api, "http@example.hr")
    body = purchase_body(
        "o-1", {"customer_id": customer_id}, purchased_at="2026-05-02T08:30:00.123456+02:00"
    )
    first = await api.http.post("/api/v1/purchases", json=body, headers=api.agent)
    assert first.status_code == 201, first.text
    assert first.json()["summary"] == "bought 2 items for 9.90 EUR (web)"
    assert first.json()["occurred_at"] == "2026-05-02T06:30:00.123000Z"

    repeated = await api.http.post("/api/v1/purchases", json=body, headers=api.agent)
    assert repeated.status_code == 200
    assert repeated.json() == first.json()

    by_email = {k: v for k, v in body.items() if k != "customer_id"}
    same_buyer = await api.http.post(
        "/api/v1/purchases",
        json={**by_email, "customer_email": "HTTP@example.hr"},
        headers=api.agent,
    )
    assert same_buyer.status_code == 200, same_buyer.text

    other_id = await new_customer(api, "other-buyer@example.hr")
    for conflicting in ({"total_amount": "8.90"}, {"customer_id": other_id}):
        changed = await api.http.post(
            "/api/v1/purchases", json={**body, **conflicting}, headers=api.agent
        )
        assert changed.status_code == 409, conflicting
        assert changed.headers["content-type"] == PROBLEM

    as_float = await api.http.post(
        "/api/v1/purchases",
        json={**body, "purchase_id": "o-2", "total_amount": 9.9},
        headers=api.agent,
    )
    assert as_float.status_code == 422
    unknown = await api.http.post(
        "/api/v1/purchases",
        json=purchase_body("o-3", {"customer_id": "cus_nobody"}),
        headers=api.agent,
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no customer cus_nobody"
    customer_token = await api.http.post(
        "/api/v1/purchases", json=body, headers=api.customer(customer_id)
    )
    assert customer_token.status_code == 403

    records = await read_topic(kafka_bootstrap, topics(PURCHASES), until=bool)
    [record] = records
    event = json.loads(record.value)
    assert record.key == customer_id.encode()
    assert event["type"] == "crm.purchase.completed"
    assert event["data"]["purchase_id"] == "o-1"
    assert event["data"]["total_amount"] == "9.90"

    # The worker reads its own announcement back and finds the purchase already recorded.
    async def consumed() -> bool:
        return await db["processed_events"].find_one({"_id": event["id"]}) is not None

    await eventually(consumed, timeout=30, message="the worker did not read the announcement")
    assert (await figures_of_customer(api, customer_id))["purchase_count"] == 1


async def test_returns_net_the_spend_and_refuse_what_cannot_be_refunded(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer_id = await new_customer(api, "returns@example.hr")
    body = purchase_body(
        "o-10",
        {"customer_id": customer_id},
        items=[
            {"sku": "TEA-1", "name": "Tea", "category": "tea", "quantity": 2, "unit_price": "4.95"},
            {
                "sku": "MUG-1",
                "name": "Mug",
                "category": "mugs",
                "quantity": 1,
                "unit_price": "10.10",
            },
        ],
        total_amount="20.00",
    )
    assert (
        await api.http.post("/api/v1/purchases", json=body, headers=api.agent)
    ).status_code == 201

    def returned(return_id: str, **overrides: Any) -> dict[str, Any]:
        return {
            "return_id": return_id,
            "purchase_id": "o-10",
            "customer_id": customer_id,
            "items": [{"sku": "MUG-1", "quantity": 1}],
            "refund_amount": "10.10",
            "currency": "EUR",
            "reason": "chipped",
            **overrides,
        }

    accepted = await api.http.post("/api/v1/returns", json=returned("r-1"), headers=api.agent)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["kind"] == "return"
    assert accepted.json()["summary"] == "returned 1 item of purchase o-10: 10.10 EUR back"
    again = await api.http.post("/api/v1/returns", json=returned("r-1"), headers=api.agent)
    assert again.status_code == 200

    refused = {
        "other currency": (returned("r-2", currency="USD", items=[]), 422, "paid in EUR"),
        "too much": (returned("r-3", refund_amount="10.00", items=[]), 422, "only 9.90 EUR"),
        "mug twice": (returned("r-4", refund_amount="1"), 422, "has 0 left to return"),
        "unknown purchase": (returned("r-5", purchase_id="o-404"), 404, "no purchase o-404"),
        "other customer": (returned("r-6", customer_id="cus_other", items=[]), 422, "belongs to"),
        "changed content": (returned("r-1", refund_amount="1.00"), 409, "different content"),
    }
    for case, (body_, status, message) in refused.items():
        response = await api.http.post("/api/v1/returns", json=body_, headers=api.agent)
        assert response.status_code == status, case
        assert message in response.json()["detail"], case

    figures = await figures_of_customer(api, customer_id)
    assert figures["return_count"] == 1
    assert figures["currencies"][0]["net_spent"] == "9.90"
    assert figures["currencies"][0]["refunded"] == "10.10"
    assert figures["favourite_categories"] == [{"category": "tea", "quantity": 2}]
    [purchase] = [
        e for e in (await ledger_of(api, customer_id))["items"] if e["kind"] == "purchase"
    ]
    assert purchase["refunded"] == "10.10"

    # A return from a Kafka client; the announcement of the HTTP one is on the topic too.
    produce_foreign(
        kafka_bootstrap,
        topics(PURCHASES),
        (
            customer_id,
            cloudevent(
                "crm.purchase.returned",
                customer_id,
                returned("r-7", items=[{"sku": "TEA-1", "quantity": 1}], refund_amount="4.95"),
            ),
        ),
    )
    await wait_for_entry(api, customer_id, "return:r-7")
    figures = await figures_of_customer(api, customer_id)
    assert (figures["return_count"], figures["currencies"][0]["net_spent"]) == (2, "4.95")
    announced = await read_topic(kafka_bootstrap, topics(PURCHASES))
    types = [json.loads(record.value)["type"] for record in announced]
    assert types.count("crm.purchase.returned") == 2  # r-1 by Rapport, r-7 by the shop


async def test_a_refund_granted_by_a_complaint_resolution_reaches_the_ledger(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    customer_id = await new_customer(api, "complaint@example.hr")
    body = purchase_body("o-20", {"customer_id": customer_id})
    assert (
        await api.http.post("/api/v1/purchases", json=body, headers=api.agent)
    ).status_code == 201
    resolved = ComplaintResolved.model_validate(
        {
            "complaint_id": "cmp-1",
            "customer_id": customer_id,
            "resolution_type": "refund",
            "summary": "Tea arrived stale; refunded half.",
            "refund_amount": "4.95",
            "currency": "EUR",
            "purchase_id": "o-20",
            "resolved_at": "2026-06-01T12:00:00Z",
        }
    )
    event = encode(new_event(resolved, source="/rapport/complaints"))
    await publisher.publish([(topics(resolved.topic), event), (topics(resolved.topic), event)])

    await wait_for_entry(api, customer_id, "return:complaint:cmp-1")
    [refund] = [e for e in (await ledger_of(api, customer_id))["items"] if e["kind"] == "refund"]
    assert refund["amount"] == "4.95"
    assert refund["complaint_id"] == "cmp-1"
    assert refund["reason"] == "Tea arrived stale; refunded half."
    figures = await figures_of_customer(api, customer_id)
    assert figures["return_count"] == 1
    assert figures["currencies"][0]["net_spent"] == "4.95"


async def test_figures_over_http_add_up_per_currency(api: Api) -> None:
    customer_id = await new_customer(api, "figures@example.hr")
    purchases = [
        ("f-1", "2026-01-01T09:00:00Z", "EUR", [("tea", 2, "3.00")], "6.00"),
        ("f-2", "2026-01-06T09:00:00Z", "EUR", [("tea", 1, "3.00"), ("cups", 3, "2.00")], "9.00"),
        ("f-3", "2026-01-21T09:00:00Z", "EUR", [("cups", 1, "10.00")], "10.00"),
        ("f-4", "2026-01-11T21:00:00Z", "USD", [("books", 1, "12.50")], "12.50"),
    ]
    for purchase_id, at, currency, lines, total in purchases:
        items = [
            {"sku": f"{c}-sku", "name": c, "category": c, "quantity": q, "unit_price": p}
            for c, q, p in lines
        ]
        body = purchase_body(
            purchase_id,
            {"customer_id": customer_id},
            items=items,
            total_amount=total,
            currency=currency,
            purchased_at=at,
        )
        response = await api.http.post("/api/v1/purchases", json=body, headers=api.agent)
        assert response.status_code == 201, response.text

    figures = await figures_of_customer(api, customer_id)

    assert figures["purchase_count"] == 4
    assert figures["return_count"] == 0
    assert figures["currencies"] == [
        {
            "currency": "EUR",
            "purchase_count": 3,
            "total_spent": "25.00",
            "refunded": "0",
            "net_spent": "25.00",
            "average_order_value": "8.33",
        },
        {
            "currency": "USD",
            "purchase_count": 1,
            "total_spent": "12.50",
            "refunded": "0",
            "net_spent": "12.50",
            "average_order_value": "12.50",
        },
    ]
    assert figures["first_purchase_at"] == "2026-01-01T09:00:00Z"
    assert figures["last_purchase_at"] == "2026-01-21T09:00:00Z"
    assert figures["mean_interval_days"] == pytest.approx(20 / 3, abs=0.01)
    assert figures["favourite_categories"] == [
        {"category": "cups", "quantity": 4},
        {"category": "tea", "quantity": 3},
        {"category": "books", "quantity": 1},
    ]


async def test_the_ledger_pages_newest_first_and_customers_see_only_their_own(
    api: Api, db: Database
) -> None:
    mine = await new_customer(api, "mine@example.hr")
    other = await new_customer(api, "other@example.hr")
    for day in range(1, 6):
        body = purchase_body(
            f"p-{day}", {"customer_id": mine}, purchased_at=f"2026-02-0{day}T10:00:00Z"
        )
        assert (
            await api.http.post("/api/v1/purchases", json=body, headers=api.agent)
        ).status_code == 201

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await api.http.get(
            f"/api/v1/customers/{mine}/ledger", params=params, headers=api.customer(mine)
        )
        assert response.status_code == 200
        seen += [entry["purchase_id"] for entry in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p-5", "p-4", "p-3", "p-2", "p-1"]

    me = api.customer(mine)
    for path in ("ledger", "figures"):
        assert (
            await api.http.get(f"/api/v1/customers/{mine}/{path}", headers=me)
        ).status_code == 200
        response = await api.http.get(f"/api/v1/customers/{other}/{path}", headers=me)
        assert response.status_code == 403, path
    missing = await api.http.get("/api/v1/customers/cus_nobody/figures", headers=api.agent)
    assert missing.status_code == 404

    # A purchase naming a merged profile lands on the survivor's ledger.
    await db["customers"].update_one(
        {"_id": other}, {"$set": {"status": "merged", "merged_into": mine}}
    )
    moved = await api.http.post(
        "/api/v1/purchases",
        json=purchase_body("p-merged", {"customer_id": other}),
        headers=api.agent,
    )
    assert moved.status_code == 201
    assert moved.json()["customer_id"] == mine
    redirected = await api.http.get(f"/api/v1/customers/{other}/ledger", headers=api.agent)
    assert redirected.status_code == 308
    assert redirected.headers["location"] == f"/api/v1/customers/{mine}/ledger"


async def test_concurrent_purchases_of_one_customer_all_count_and_a_repeated_id_once(
    api: Api,
) -> None:
    customer_id = await new_customer(api, "busy@example.hr")
    bodies = [purchase_body(f"c-{n}", {"customer_id": customer_id}) for n in range(6)]
    bodies += [purchase_body("c-0", {"customer_id": customer_id})] * 3

    responses = await asyncio.gather(
        *(api.http.post("/api/v1/purchases", json=body, headers=api.agent) for body in bodies)
    )

    codes = sorted(response.status_code for response in responses)
    assert codes == [200, 200, 200] + [201] * 6, [r.text for r in responses]
    figures = await figures_of_customer(api, customer_id)
    assert figures["purchase_count"] == 6
    assert figures["currencies"][0]["total_spent"] == "59.40"
    assert figures["favourite_categories"] == [{"category": "tea", "quantity": 12}]
