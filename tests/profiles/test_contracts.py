"""Contracts and subscriptions on a profile, announced for renewal reminders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.support.api import PROBLEM


def insurance(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "product": "Home insurance",
        "start_date": "2026-01-01",
        "renews_at": "2027-01-01",
        "auto_renew": True,
        "external_reference": "POL-7781",
    }
    body.update(overrides)
    return body


async def new_customer(api: Api, email: str) -> str:
    response = await api.http.post(
        "/api/v1/customers", json={"given_name": "Ana", "emails": [email]}, headers=api.agent
    )
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["id"]
    return customer_id


async def test_contracts_are_added_listed_changed_and_announced_with_the_snapshot(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer_id = await new_customer(api, "policy@example.hr")
    base = f"/api/v1/customers/{customer_id}/contracts"

    created = await api.http.post(base, json=insurance(), headers=api.agent)
    assert created.status_code == 201, created.text
    contract = created.json()
    assert contract["status"] == "active"
    assert created.headers["location"] == f"{base}/{contract['contract_id']}"
    magazine = await api.http.post(
        base,
        json={"product": "Magazine", "start_date": "2026-02-01", "expires_at": "2026-12-31"},
        headers=api.agent,
    )
    assert magazine.status_code == 201

    listed = await api.http.get(base, headers=api.customer(customer_id))
    assert listed.status_code == 200
    assert [c["product"] for c in listed.json()] == ["Home insurance", "Magazine"]

    url = f"{base}/{contract['contract_id']}"
    cancelled = await api.http.patch(
        url, json={"status": "cancelled", "renews_at": None}, headers=api.agent
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["renews_at"]) == ("cancelled", None)
    assert cancelled.json()["version"] == 2
    assert (await api.http.get(url, headers=api.agent)).json()["status"] == "cancelled"

    def contract_updates(records: Any) -> list[dict[str, Any]]:
        events = [json.loads(record.value) for record in records]
        return [
            e["data"]
            for e in events
            if e["type"] == "crm.customer.updated" and e["data"]["changed_fields"] == ["contracts"]
        ]

    records = await read_topic(
        kafka_bootstrap, topics(CUSTOMERS), until=lambda found: len(contract_updates(found)) >= 3
    )
    added, second, changed = contract_updates(records)
    assert all(record.key == customer_id.encode() for record in records)
    assert [data["version"] for data in (added, second, changed)] == [2, 3, 4]
    assert added["contracts"] == [
        {
            "contract_id": contract["contract_id"],
            "product": "Home insurance",
            "status": "active",
            "renews_at": "2027-01-01",
            "expires_at": None,
            "auto_renew": True,
        }
    ]
    assert [(c["product"], c["status"]) for c in changed["contracts"]] == [
        ("Home insurance", "cancelled"),
        ("Magazine", "active"),
    ]
    assert changed["emails"] == ["policy@example.hr"]  # the whole snapshot, as ever
    profile = await api.http.get(f"/api/v1/customers/{customer_id}", headers=api.agent)
    assert profile.json()["version"] == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (insurance(renews_at="2025-12-31"), "renews_at must be after start_date"),
        (insurance(renews_at=None, expires_at="2026-01-01"), "expires_at must be after start_date"),
        (insurance(renews_at=None), "an active contract needs renews_at or expires_at"),
        (insurance(status="paused"), "status"),
        (insurance(product=""), "product"),
        (insurance(colour="red"), "Extra inputs are not permitted"),
    ],
)
async def test_invalid_contracts_get_a_422_problem(
    api: Api, body: dict[str, Any], message: str
) -> None:
    customer_id = await new_customer(api, "invalid@example.hr")
    response = await api.http.post(
        f"/api/v1/customers/{customer_id}/contracts", json=body, headers=api.agent
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert message in response.text


async def test_changes_that_break_the_terms_are_refused_and_access_is_checked(api: Api) -> None:
    customer_id = await new_customer(api, "rules@example.hr")
    other_id = await new_customer(api, "someone@example.hr")
    base = f"/api/v1/customers/{customer_id}/contracts"
    contract = (await api.http.post(base, json=insurance(), headers=api.agent)).json()
    url = f"{base}/{contract['contract_id']}"

    cleared = await api.http.patch(url, json={"renews_at": None}, headers=api.agent)
    assert cleared.status_code == 422
    assert "needs renews_at or expires_at" in cleared.text
    backwards = await api.http.patch(url, json={"expires_at": "2025-06-01"}, headers=api.agent)
    assert backwards.status_code == 422
    assert (await api.http.patch(url, json={"status": None}, headers=api.agent)).status_code == 422
    assert (await api.http.patch(url, json={"product": "x"}, headers=api.agent)).status_code == 422
    unchanged = await api.http.get(url, headers=api.agent)
    assert (unchanged.json()["renews_at"], unchanged.json()["version"]) == ("2027-01-01", 1)

    wrong_owner = f"/api/v1/customers/{other_id}/contracts/{contract['contract_id']}"
    assert (await api.http.get(wrong_owner, headers=api.agent)).status_code == 404
    nobody = "/api/v1/customers/cus_nobody/contracts"
    assert (await api.http.post(nobody, json=insurance(), headers=api.agent)).status_code == 404

    me = api.customer(customer_id)
    assert (await api.http.get(url, headers=me)).status_code == 200
    assert (await api.http.post(base, json=insurance(), headers=me)).status_code == 403
    assert (await api.http.patch(url, json={"status": "cancelled"}, headers=me)).status_code == 403
    other = api.customer(other_id)
    assert (await api.http.get(base, headers=other)).status_code == 403
