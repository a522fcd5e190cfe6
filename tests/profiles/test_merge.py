"""Merging two profiles of one person, and undoing it: data moves, and moves back."""

from __future__ import annotations

import json
from typing import Any

from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.profiles.test_customers import create
from tests.profiles.test_ledger import purchase_body
from tests.service_harness import eventually


async def get(api: Api, path: str, **params: Any) -> Any:
    response = await api.http.get(path, params=params, headers=api.agent)
    assert response.status_code == 200, response.text
    return response.json()


async def give_history(api: Api, customer_id: str, purchase_id: str) -> None:
    """A purchase, an interaction and a consent decision, as a profile accumulates them."""
    bought = await api.http.post(
        "/api/v1/purchases",
        json=purchase_body(purchase_id, {"customer_id": customer_id}),
        headers=api.agent,
    )
    assert bought.status_code == 201, bought.text
    logged = await api.http.post(
        f"/api/v1/customers/{customer_id}/interactions",
        json={"kind": "call", "direction": "inbound", "summary": f"call about {purchase_id}"},
        headers=api.agent,
    )
    assert logged.status_code == 201, logged.text
    consent = await api.http.put(
        f"/api/v1/customers/{customer_id}/consents/email/marketing",
        json={"granted": True, "source": "web form"},
        headers=api.agent,
    )
    assert consent.status_code == 200, consent.text


async def test_merge_then_unmerge_restores_both_profiles(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    target = await create(api)
    source = await create(
        api,
        given_name="Ana",
        family_name="Horvat",
        preferred_name="Anči",
        emails=["ana.h@example.com"],
        phones=["+385 98 765 4321"],
        external_ids={"pos": "77"},
        tags=["newsletter"],
        attributes={},
    )
    await give_history(api, target["id"], "p-target")
    await give_history(api, source["id"], "p-source")

    merged = await api.http.post(
        f"/api/v1/customers/{target['id']}/merge",
        json={"source_id": source["id"]},
        headers=api.agent,
    )
    assert merged.status_code == 200, merged.text
    result = merged.json()
    survivor = result["target"]
    assert survivor["emails"] == ["ana.horvat@example.hr", "ana.h@example.com"]
    assert survivor["phones"] == ["+385912345678", "+385987654321"]
    assert survivor["external_ids"] == {"eshop": "1001", "pos": "77"}
    assert survivor["preferred_name"] == "Anči"  # filled where the target had nothing
    assert result["moved"]["ledger"] == 1

    moved = await api.http.get(f"/api/v1/customers/{source['id']}", headers=api.agent)
    assert moved.status_code == 308
    assert moved.headers["location"] == f"/api/v1/customers/{target['id']}"
    ledger = await get(api, f"/api/v1/customers/{target['id']}/ledger")
    assert {entry["purchase_id"] for entry in ledger["items"]} == {"p-target", "p-source"}
    figures = await get(api, f"/api/v1/customers/{target['id']}/figures")
    assert figures["purchase_count"] == 2
    interactions = await get(api, f"/api/v1/customers/{target['id']}/interactions")
    assert len(interactions["items"]) == 2
    found = await get(api, "/api/v1/customers", email="ana.h@example.com")
    assert [item["id"] for item in found["items"]] == [target["id"]]

    undone = await api.http.post(f"/api/v1/merges/{result['merge_id']}/undo", headers=api.agent)
    assert undone.status_code == 200, undone.text
    restored = await get(api, f"/api/v1/customers/{source['id']}")
    assert restored["emails"] == ["ana.h@example.com"]
    assert restored["preferred_name"] == "Anči"
    target_now = await get(api, f"/api/v1/customers/{target['id']}")
    assert target_now["emails"] == ["ana.horvat@example.hr"]
    assert target_now["external_ids"] == {"eshop": "1001"}
    assert target_now["preferred_name"] is None
    for customer_id, purchase_id in ((target["id"], "p-target"), (source["id"], "p-source")):
        ledger = await get(api, f"/api/v1/customers/{customer_id}/ledger")
        assert [entry["purchase_id"] for entry in ledger["items"]] == [purchase_id]
        figures = await get(api, f"/api/v1/customers/{customer_id}/figures")
        assert figures["purchase_count"] == 1
        interactions = await get(api, f"/api/v1/customers/{customer_id}/interactions")
        assert len(interactions["items"]) == 1
        consents = await get(api, f"/api/v1/customers/{customer_id}/consents")
        assert len(consents["history"]) == 1
    found = await get(api, "/api/v1/customers", email="ana.h@example.com")
    assert [item["id"] for item in found["items"]] == [source["id"]]

    again = await api.http.post(f"/api/v1/merges/{result['merge_id']}/undo", headers=api.agent)
    assert again.status_code == 409

    def merges(records: list[Any]) -> list[dict[str, Any]]:
        events = [json.loads(record.value) for record in records]
        return [event for event in events if event["type"] == "crm.customer.merged"]

    records = await read_topic(
        kafka_bootstrap, topics(CUSTOMERS), until=lambda records: len(merges(records)) >= 2
    )
    announced = merges(records)
    assert [event["data"]["undone"] for event in announced] == [False, True]
    assert all(event["data"]["source_customer_id"] == source["id"] for event in announced)
    assert all(event["subject"] == target["id"] for event in announced)


async def test_a_merged_source_receives_no_more_but_its_purchases_reach_the_survivor(
    api: Api,
) -> None:
    target = await create(api)
    source = await create(
        api, emails=["second@example.com"], phones=[], external_ids={}, attributes={}
    )
    merged = await api.http.post(
        f"/api/v1/customers/{target['id']}/merge",
        json={"source_id": source["id"]},
        headers=api.agent,
    )
    assert merged.status_code == 200
    late = await api.http.post(
        "/api/v1/purchases",
        json=purchase_body("p-late", {"customer_id": source["id"]}),
        headers=api.agent,
    )
    assert late.status_code == 201, late.text

    async def on_survivor() -> bool:
        ledger = await get(api, f"/api/v1/customers/{target['id']}/ledger")
        return [entry["purchase_id"] for entry in ledger["items"]] == ["p-late"]

    await eventually(on_survivor, message="the purchase did not reach the survivor")


async def test_merges_that_make_no_sense_are_refused(api: Api) -> None:
    target = await create(api)
    other = await create(api, emails=["o@example.com"], phones=[], external_ids={})
    url = f"/api/v1/customers/{target['id']}/merge"
    assert (
        await api.http.post(url, json={"source_id": target["id"]}, headers=api.agent)
    ).status_code == 422
    assert (
        await api.http.post(url, json={"source_id": "cus_nobody"}, headers=api.agent)
    ).status_code == 404
    assert (
        await api.http.post(
            url, json={"source_id": other["id"]}, headers=api.customer(target["id"])
        )
    ).status_code == 403
    assert (
        await api.http.post("/api/v1/merges/mrg_nothing/undo", headers=api.agent)
    ).status_code == 404
    first = await api.http.post(url, json={"source_id": other["id"]}, headers=api.agent)
    assert first.status_code == 200
    twice = await api.http.post(url, json={"source_id": other["id"]}, headers=api.agent)
    assert twice.status_code == 409
    assert twice.json()["merged_into"] == target["id"]
