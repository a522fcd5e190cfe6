"""Customer profiles: create, read, update with optimistic concurrency, list and search."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.support.api import PROBLEM


def ana(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "given_name": "Ana",
        "family_name": "Horvat",
        "emails": ["Ana.Horvat@Example.HR"],
        "phones": ["+385 91 234 5678"],
        "locale": "hr-hr",
        "time_zone": "Europe/Zagreb",
        "birthday": "1990-04-12",
        "tags": ["vip"],
        "external_ids": {"eshop": "1001"},
        "attributes": {"loyalty_card": "LC-123456"},
    }
    body.update(overrides)
    return body


async def create(api: Api, **overrides: Any) -> dict[str, Any]:
    response = await api.http.post("/api/v1/customers", json=ana(**overrides), headers=api.agent)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_normalises_contact_data_and_publishes_the_snapshot(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    response = await api.http.post("/api/v1/customers", json=ana(), headers=api.agent)

    assert response.status_code == 201
    customer = response.json()
    assert response.headers["location"] == f"/api/v1/customers/{customer['id']}"
    assert response.headers["etag"] == '"1"'
    assert customer["emails"] == ["ana.horvat@example.hr"]
    assert customer["phones"] == ["+385912345678"]
    assert customer["locale"] == "hr-HR"
    assert customer["display_name"] == "Ana"

    records = await read_topic(
        kafka_bootstrap, topics(CUSTOMERS), until=lambda records: len(records) >= 1
    )
    [record] = records
    assert record.key == customer["id"].encode()
    event = json.loads(record.value)
    assert event["type"] == "crm.customer.registered"
    assert event["data"]["customer_id"] == customer["id"]
    assert event["data"]["emails"] == ["ana.horvat@example.hr"]
    assert event["data"]["attributes"] == {"loyalty_card": "LC-123456"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("emails", ["not-an-email"], "email"),
        ("phones", ["0912345"], "international form"),
        ("phones", ["+385 91 23"], "not a valid phone"),
        ("locale", "klingon-XX-123456789", "BCP 47"),
        ("time_zone", "Mars/Olympus", "IANA"),
        ("birthday", "2999-01-01", "future"),
        ("nickname", "Anči", "Extra inputs are not permitted"),
        ("attributes", {"loyalty_card": "123"}, "attribute schema"),
        ("attributes", {"nested": {"a": 1}}, "attribute"),
    ],
)
async def test_bad_fields_get_a_422_problem_that_says_what_is_wrong(
    api: Api, field: str, value: Any, message: str
) -> None:
    response = await api.http.post(
        "/api/v1/customers", json=ana(**{field: value}), headers=api.agent
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert message in response.text
    listing = await api.http.get("/api/v1/customers", headers=api.agent)
    assert listing.json()["items"] == []  # nothing was stored


async def test_email_and_phone_are_unique_among_live_profiles(api: Api) -> None:
    first = await create(api)
    for clash in (
        {"emails": ["ANA.HORVAT@example.hr"], "phones": []},
        {"emails": [], "phones": ["+385912345678"]},
        {"emails": [], "phones": [], "external_ids": {"eshop": "1001"}},
    ):
        response = await api.http.post("/api/v1/customers", json=ana(**clash), headers=api.agent)
        assert response.status_code == 409, clash
        assert response.json()["existing_id"] == first["id"]


async def test_patch_with_if_match_and_a_stale_etag_gets_412(api: Api) -> None:
    customer = await create(api)
    url = f"/api/v1/customers/{customer['id']}"
    first = await api.http.patch(
        url, json={"preferred_name": "Anči"}, headers={**api.agent, "If-Match": '"1"'}
    )
    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    assert first.json()["display_name"] == "Anči"

    stale = await api.http.patch(
        url, json={"preferred_name": "Ančica"}, headers={**api.agent, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM
    assert stale.json()["current_version"] == 2
    assert (await api.http.get(url, headers=api.agent)).json()["preferred_name"] == "Anči"


async def test_concurrent_patches_with_the_same_etag_let_exactly_one_win(api: Api) -> None:
    customer = await create(api)
    url = f"/api/v1/customers/{customer['id']}"
    responses = await asyncio.gather(
        *(
            api.http.patch(url, json={"tags": [f"t{n}"]}, headers={**api.agent, "If-Match": '"1"'})
            for n in range(4)
        )
    )
    codes = sorted(response.status_code for response in responses)
    assert codes.count(200) == 1
    assert set(codes) - {200} <= {409, 412}
    assert (await api.http.get(url, headers=api.agent)).json()["version"] == 2


async def test_patch_null_clears_and_unknown_fields_are_refused(api: Api) -> None:
    customer = await create(api)
    url = f"/api/v1/customers/{customer['id']}"
    cleared = await api.http.patch(url, json={"birthday": None, "tags": None}, headers=api.agent)
    assert cleared.status_code == 200
    assert cleared.json()["birthday"] is None
    assert cleared.json()["tags"] == []
    refused = await api.http.patch(url, json={"shoe_size": 42}, headers=api.agent)
    assert refused.status_code == 422
    unknown = await api.http.patch("/api/v1/customers/cus_nobody", json={}, headers=api.agent)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM


async def test_search_filters_and_cursor_pagination_are_stable(api: Api) -> None:
    created = [
        await create(
            api,
            given_name=f"Name{n}",
            family_name="Novák" if n % 2 else "Kovač",
            emails=[f"person{n}@example.cz"],
            phones=[],
            external_ids={"pos": f"p{n}"},
            tags=["even"] if n % 2 == 0 else [],
        )
        for n in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.http.get("/api/v1/customers", params=params, headers=api.agent)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [customer["id"] for customer in reversed(created)]

    async def ids(**params: Any) -> list[str]:
        response = await api.http.get("/api/v1/customers", params=params, headers=api.agent)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    oldest_first = await ids(sort="created_at", limit=7)
    assert oldest_first == [customer["id"] for customer in created]
    middle = created[3]["created_at"]
    assert await ids(created_after=middle, sort="created_at") == [c["id"] for c in created[3:]]
    assert await ids(created_before=middle, sort="created_at") == [c["id"] for c in created[:3]]
    touched = created[1]["id"]
    await api.http.patch(f"/api/v1/customers/{touched}", json={"tags": ["x"]}, headers=api.agent)
    assert (await ids(sort="-updated_at"))[0] == touched
    first_page = (
        await api.http.get(
            "/api/v1/customers", params={"name_prefix": "nov", "limit": 2}, headers=api.agent
        )
    ).json()
    second_page = (
        await api.http.get(
            "/api/v1/customers",
            params={"name_prefix": "nov", "limit": 2, "cursor": first_page["next_cursor"]},
            headers=api.agent,
        )
    ).json()
    assert len(first_page["items"]) + len(second_page["items"]) == 3  # filter kept on page 2
    assert (
        await api.http.get(
            "/api/v1/customers",
            params={"sort": "created_at", "cursor": first_page["next_cursor"]},
            headers=api.agent,
        )
    ).status_code == 422
    assert await ids(email="PERSON3@example.cz") == [created[3]["id"]]
    assert await ids(external_id="pos:p5") == [created[5]["id"]]
    assert len(await ids(tag="even")) == 4
    assert len(await ids(name_prefix="nov")) == 3
    assert (
        await api.http.get("/api/v1/customers", params={"cursor": "garbage!"}, headers=api.agent)
    ).status_code == 422


async def test_a_customer_token_sees_and_edits_only_its_own_profile(api: Api) -> None:
    mine, other = (
        await create(api),
        await create(api, emails=["eva@example.si"], phones=[], external_ids={}),
    )
    me = api.customer(mine["id"])
    assert (await api.http.get(f"/api/v1/customers/{mine['id']}", headers=me)).status_code == 200
    assert (await api.http.get(f"/api/v1/customers/{other['id']}", headers=me)).status_code == 403
    edited = await api.http.patch(
        f"/api/v1/customers/{mine['id']}", json={"locale": "sl"}, headers=me
    )
    assert edited.status_code == 200
    assert edited.json()["locale"] == "sl"
    refused = await api.http.patch(
        f"/api/v1/customers/{mine['id']}", json={"tags": ["vip", "gold"]}, headers=me
    )
    assert refused.status_code == 403
    assert "tags" in refused.json()["detail"]
    assert (await api.http.get("/api/v1/customers", headers=me)).status_code == 403
    assert (
        await api.http.patch(f"/api/v1/customers/{other['id']}", json={}, headers=me)
    ).status_code == 403


@pytest.mark.parametrize(
    "change",
    [
        {"external_ids": {"oui}\ucded\u0084": "x"}},  # found by schemathesis: was a 500
        {"external_ids": {"shop.eu": "1"}},  # a dot would be a MongoDB field path
        {"attributes": {"$where": "1"}},
        # nothing left to name or reach the customer by
        dict.fromkeys(("given_name", "family_name", "emails", "phones", "external_ids")),
    ],
)
async def test_a_patch_that_would_leave_an_invalid_profile_gets_422_and_changes_nothing(
    api: Api, change: dict[str, Any]
) -> None:
    customer = await create(api)
    url = f"/api/v1/customers/{customer['id']}"
    response = await api.http.patch(url, json=change, headers=api.agent)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    after = await api.http.get(url, headers=api.agent)
    assert after.json()["version"] == customer["version"]


async def test_a_search_by_an_external_id_with_a_bad_system_gets_422(api: Api) -> None:
    for bad in ("no-separator", "$where:1", "a.b:1"):
        response = await api.http.get(
            "/api/v1/customers", params={"external_id": bad}, headers=api.agent
        )
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == PROBLEM
