"""Self-service orders and subscriptions (the portal's): a customer extends its own
subscription, orders listed add-ons and starts a return of its own purchase; never another
customer's, never beyond what was bought."""

from __future__ import annotations

import json
import uuid
from typing import Any

from shared.topics import CUSTOMERS, PURCHASES, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.support.api import PROBLEM


async def new_customer(api: Api) -> str:
    email = f"orders.{uuid.uuid4().hex[:10]}@example.hr"
    response = await api.http.post(
        "/api/v1/customers", json={"given_name": "Ana", "emails": [email]}, headers=api.agent
    )
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["id"]
    return customer_id


async def new_contract(api: Api, customer_id: str, **terms: Any) -> dict[str, Any]:
    body = {"product": "Streaming", "start_date": "2026-01-31", "renews_at": "2027-01-31"}
    body.update(terms)
    response = await api.http.post(
        f"/api/v1/customers/{customer_id}/contracts", json=body, headers=api.agent
    )
    assert response.status_code == 201, response.text
    contract: dict[str, Any] = response.json()
    return contract


def extensions(customer_id: str, contract_id: str) -> str:
    return f"/api/v1/customers/{customer_id}/contracts/{contract_id}/extensions"


async def test_a_customer_extends_its_own_subscription_and_the_contract_event_carries_it(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer_id = await new_customer(api)
    contract = await new_contract(api, customer_id, expires_at="2027-03-31")
    url = extensions(customer_id, contract["contract_id"])

    extended = await api.http.post(url, json={"months": 1}, headers=api.customer(customer_id))
    assert extended.status_code == 200, extended.text
    # Both dates move a month: 31 Jan → 28 Feb (the month's last day), 31 Mar → 30 Apr.
    assert (extended.json()["renews_at"], extended.json()["expires_at"]) == (
        "2027-02-28",
        "2027-04-30",
    )
    to_date = await api.http.post(
        url, json={"renews_at": "2027-06-30"}, headers=api.customer(customer_id)
    )
    assert to_date.status_code == 200, to_date.text
    assert (to_date.json()["renews_at"], to_date.json()["expires_at"]) == (
        "2027-06-30",
        "2027-08-30",  # the same 122 days later
    )
    shorter = await api.http.post(
        url, json={"renews_at": "2027-01-01"}, headers=api.customer(customer_id)
    )
    assert shorter.status_code == 422
    assert shorter.headers["content-type"].startswith(PROBLEM)
    both = await api.http.post(
        url, json={"months": 1, "renews_at": "2028-01-01"}, headers=api.customer(customer_id)
    )
    assert both.status_code == 422

    def renewals(records: Any) -> list[str | None]:
        events = [json.loads(record.value) for record in records]
        return [
            contract["renews_at"]
            for event in events
            if event["type"] == "crm.customer.updated" and event["subject"] == customer_id
            for contract in event["data"]["contracts"] or ()
        ]

    records = await read_topic(
        kafka_bootstrap, topics(CUSTOMERS), until=lambda found: "2027-06-30" in renewals(found)
    )
    assert renewals(records)[-3:] == ["2027-01-31", "2027-02-28", "2027-06-30"]
    timeline = await api.get(f"/customers/{customer_id}/timeline")
    assert any("extended" in entry["summary"] for entry in timeline["items"])


async def test_another_customers_or_an_ended_subscription_cannot_be_extended(
    api: Api,
) -> None:
    owner, other = await new_customer(api), await new_customer(api)
    contract = await new_contract(api, owner)
    url = extensions(owner, contract["contract_id"])

    foreign = await api.http.post(url, json={"months": 12}, headers=api.customer(other))
    assert foreign.status_code == 403
    assert foreign.headers["content-type"].startswith(PROBLEM)
    # Through its own path it does not find it either.
    hidden = await api.http.post(
        extensions(other, contract["contract_id"]), json={"months": 12},
        headers=api.customer(other),
    )  # fmt: skip
    assert hidden.status_code == 404

    await api.call(
        "PATCH",
        f"/customers/{owner}/contracts/{contract['contract_id']}",
        json={"status": "expired"},
    )
    ended = await api.http.post(url, json={"months": 12}, headers=api.customer(owner))
    assert ended.status_code == 409
    assert ended.headers["content-type"].startswith(PROBLEM)
    assert ended.json()["contract_status"] == "expired"
    kept = await api.get(f"/customers/{owner}/contracts/{contract['contract_id']}")
    assert kept["renews_at"] == "2027-01-31"


async def test_an_add_on_order_reaches_the_ledger_figures_and_the_purchases_topic(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer_id = await new_customer(api)
    orders = f"/api/v1/customers/{customer_id}/orders"
    mine = api.customer(customer_id)
    order_id = f"ord_{uuid.uuid4().hex}"
    line: dict[str, Any] = {
        "sku": "addon-priority-support", "name": "x", "category": "x", "quantity": 2,
        "unit_price": "9.90",
    }  # fmt: skip
    body: dict[str, Any] = {"order_id": order_id, "currency": "EUR", "items": [line]}
    placed = await api.http.post(orders, json=body, headers=mine)
    assert placed.status_code == 201, placed.text
    entry = placed.json()
    assert (entry["purchase_id"], entry["amount"], entry["channel"]) == (
        order_id,
        "19.80",
        "portal",
    )
    assert entry["items"][0]["name"] == "Priority support"  # the catalogue's, not the body's
    again = await api.http.post(orders, json=body, headers=mine)
    assert again.status_code == 200  # a retried order is recorded once

    ledger = await api.get(f"/customers/{customer_id}/ledger", headers=mine)
    assert [item["purchase_id"] for item in ledger["items"]] == [order_id]
    figures = await api.get(f"/customers/{customer_id}/figures", headers=mine)
    assert figures["currencies"][0]["total_spent"] == "19.80"

    cheaper = {**body, "order_id": None}
    cheaper["items"] = [{**line, "unit_price": "0.01"}]
    refused = await api.http.post(orders, json=cheaper, headers=mine)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith(PROBLEM)
    unlisted = {**cheaper, "items": [{**line, "sku": "tv-55"}]}
    assert (await api.http.post(orders, json=unlisted, headers=mine)).status_code == 422
    as_float = {**cheaper, "items": [{**line, "unit_price": 9.9}]}
    assert (await api.http.post(orders, json=as_float, headers=mine)).status_code == 422
    # Beyond what the store keeps (a 64-bit count, 34 decimal digits): refused, not a 500.
    huge = {**cheaper, "items": [{**line, "quantity": 77134719613398681902980272226304}]}
    too_precise = {**cheaper, "items": [{**line, "unit_price": "9." + "9" * 40}]}
    for unstorable in (huge, too_precise):
        answer = await api.http.post(orders, json=unstorable, headers=api.agent)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
    other = await new_customer(api)
    assert (await api.http.post(orders, json=body, headers=api.customer(other))).status_code == 403
    # Staff may order what the catalogue does not list.
    staff = await api.http.post(orders, json=unlisted, headers=api.agent)
    assert staff.status_code == 201, staff.text

    def completed(records: Any) -> list[dict[str, Any]]:
        events = [json.loads(record.value) for record in records]
        return [e["data"] for e in events if e["data"].get("purchase_id") == order_id]

    records = await read_topic(
        kafka_bootstrap, topics(PURCHASES), until=lambda found: bool(completed(found))
    )
    announced = completed(records)
    assert len(announced) == 1
    assert (announced[0]["channel"], announced[0]["total_amount"]) == ("portal", "19.80")
    assert announced[0]["customer_id"] == customer_id


async def test_a_customer_returns_its_own_purchase_within_what_it_bought(api: Api) -> None:
    customer_id, other = await new_customer(api), await new_customer(api)
    purchase_id = f"p_{uuid.uuid4().hex}"
    await api.call(
        "POST",
        "/purchases",
        json={
            "purchase_id": purchase_id, "customer_id": customer_id, "currency": "EUR",
            "total_amount": "30.00", "channel": "web",
            "items": [{"sku": "mug", "name": "Mug", "category": "kitchen", "quantity": 3,
                       "unit_price": "10.00"}],
        },
    )  # fmt: skip

    def back(quantity: int, refund: str, **extra: Any) -> dict[str, Any]:
        return {
            "return_id": f"r_{uuid.uuid4().hex}", "purchase_id": purchase_id,
            "customer_id": customer_id, "currency": "EUR", "refund_amount": refund,
            "items": [{"sku": "mug", "quantity": quantity, "unit_price": "10.00"}], **extra,
        }  # fmt: skip

    mine = api.customer(customer_id)
    too_many = await api.http.post("/api/v1/returns", json=back(4, "30.00"), headers=mine)
    assert too_many.status_code == 422
    assert too_many.headers["content-type"].startswith(PROBLEM)
    assert "3 left to return" in too_many.json()["detail"]
    overpaid = await api.http.post("/api/v1/returns", json=back(1, "25.00"), headers=mine)
    assert overpaid.status_code == 422
    foreign = await api.http.post(
        "/api/v1/returns", json={**back(1, "10.00"), "customer_id": other},
        headers=api.customer(other),
    )  # fmt: skip
    assert foreign.status_code == 403
    assert customer_id not in foreign.text  # nobody else's id in the answer

    accepted = await api.http.post("/api/v1/returns", json=back(2, "20.00"), headers=mine)
    assert accepted.status_code == 201, accepted.text
    ledger = await api.get(f"/customers/{customer_id}/ledger", headers=mine)
    bought = next(e for e in ledger["items"] if e["kind"] == "purchase")
    assert (bought["refunded"], bought["returned_quantities"]) == ("20.00", {"mug": 2})
    last = await api.http.post("/api/v1/returns", json=back(2, "10.00"), headers=mine)
    assert last.status_code == 422
    assert "1 left to return" in last.json()["detail"]
