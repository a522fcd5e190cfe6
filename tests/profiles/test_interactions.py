"""Interactions: calls, visits, e-mails, chats, video calls and letters on the customer's record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth import Role
from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.support.api import PROBLEM


async def new_customer(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "given_name": "Zdenka",
        "family_name": "Quellbrunn",
        "emails": ["Zdenka.Quellbrunn@example.hr"],
        "phones": ["+385 91 765 4321"],
        "birthday": "1984-02-29",
        "address": {"street": "Ilica 242", "city": "Zagreb", "country": "HR"},
    }
    body.update(overrides)
    response = await api.http.post("/api/v1/customers", json=body, headers=api.agent)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def log(api: Api, customer_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "call",
        "direction": "inbound",
        "channel": "hotline",
        "summary": "Asked about the delivery of the blue kettle; promised a callback.",
    }
    body.update(overrides)
    response = await api.http.post(
        f"/api/v1/customers/{customer_id}/interactions", json=body, headers=api.agent
    )
    assert response.status_code == 201, response.text
    logged: dict[str, Any] = response.json()
    return logged


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def test_a_logged_interaction_is_published_and_shows_on_the_timeline(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer = await new_customer(api)

    interaction = await log(api, customer["id"], kind="visit", channel="store:zagreb-1")

    assert interaction["agent_id"] == "tester"  # an agent's own subject when left out
    assert interaction["customer_id"] == customer["id"]
    records = await read_topic(
        kafka_bootstrap,
        topics(CUSTOMERS),
        until=lambda records: any(b"crm.interaction.logged" in r.value for r in records),
    )
    [event] = [
        json.loads(r.value) for r in records if json.loads(r.value)["type"].endswith("logged")
    ]
    assert event["subject"] == customer["id"]
    assert event["data"] == {
        "interaction_id": interaction["id"],
        "customer_id": customer["id"],
        "kind": "visit",
        "direction": "inbound",
        "channel": "store:zagreb-1",
        "summary": interaction["summary"],
        "agent_id": "tester",
        "occurred_at": event["data"]["occurred_at"],
    }
    assert datetime.fromisoformat(event["data"]["occurred_at"]) == datetime.fromisoformat(
        interaction["occurred_at"]
    )

    timeline = await api.http.get(
        f"/api/v1/customers/{customer['id']}/timeline",
        params={"kind": "interaction"},
        headers=api.agent,
    )
    [entry] = timeline.json()["items"]
    assert entry["id"] == event["id"]
    assert entry["summary"] == (
        "visit (inbound): Asked about the delivery of the blue kettle; promised a callback."
    )
    assert entry["details"]["interaction_id"] == interaction["id"]


async def test_interactions_are_listed_newest_first_page_by_page(api: Api) -> None:
    customer = await new_customer(api)
    url = f"/api/v1/customers/{customer['id']}/interactions"
    minutes_ago = [30, 10, 50, 20, 40]
    logged = {
        m: await log(api, customer["id"], occurred_at=ago(m), summary=f"call {m} minutes ago")
        for m in minutes_ago
    }
    admin_chose = await api.http.post(
        url,
        json={"kind": "letter", "direction": "outbound", "summary": "sent", "agent": "marta"},
        headers=api.as_(Role.ADMIN),
    )
    assert admin_chose.json()["agent_id"] == "marta"

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.http.get(url, params=params, headers=api.agent)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [admin_chose.json()["id"]] + [logged[m]["id"] for m in sorted(minutes_ago)]
    assert seen == expected


async def test_an_interaction_must_have_happened_and_name_a_known_customer(api: Api) -> None:
    customer = await new_customer(api)
    url = f"/api/v1/customers/{customer['id']}/interactions"
    base = {"kind": "chat", "direction": "outbound", "summary": "Offered a discount."}

    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    future = await api.http.post(url, json={**base, "occurred_at": in_an_hour}, headers=api.agent)
    assert future.status_code == 422
    assert future.headers["content-type"] == PROBLEM
    assert "future" in future.json()["detail"]

    a_little_skew = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    skewed = await api.http.post(
        url, json={**base, "occurred_at": a_little_skew}, headers=api.agent
    )
    assert skewed.status_code == 201

    for bad in (
        {"occurred_at": "2026-01-01T10:00:00"},  # no zone
        {"kind": "telegram"},
        {"direction": "sideways"},
        {"summary": "   "},
    ):
        response = await api.http.post(url, json={**base, **bad}, headers=api.agent)
        assert response.status_code == 422, bad

    nobody = await api.http.post(
        "/api/v1/customers/cus_nobody/interactions", json=base, headers=api.agent
    )
    assert nobody.status_code == 404
    assert (
        await api.http.get(url, params={"cursor": "garbage!"}, headers=api.agent)
    ).status_code == 422


async def test_a_customer_reads_its_own_interactions_and_logs_none(api: Api) -> None:
    mine = await new_customer(api)
    other = await new_customer(api, emails=["eva@example.si"], phones=[])
    await log(api, mine["id"])
    me = api.customer(mine["id"])

    own = await api.http.get(f"/api/v1/customers/{mine['id']}/interactions", headers=me)
    assert own.status_code == 200
    assert len(own.json()["items"]) == 1
    assert (
        await api.http.get(f"/api/v1/customers/{other['id']}/interactions", headers=me)
    ).status_code == 403
    logging_itself = await api.http.post(
        f"/api/v1/customers/{mine['id']}/interactions",
        json={"kind": "chat", "direction": "inbound", "summary": "hi"},
        headers=me,
    )
    assert logging_itself.status_code == 403


async def test_the_location_of_a_logged_interaction_can_be_read(api: Api) -> None:
    customer = await new_customer(api)
    response = await api.http.post(
        f"/api/v1/customers/{customer['id']}/interactions",
        json={"kind": "visit", "direction": "inbound", "summary": "came to the store"},
        headers=api.agent,
    )
    location = response.headers["location"]
    read = await api.http.get(location, headers=api.customer(customer["id"]))
    assert read.status_code == 200
    assert read.json()["summary"] == "came to the store"
    missing = await api.http.get(f"{location}-nope", headers=api.agent)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
