"""The customer's data rights: export everything, erase everything personal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from fastapi import FastAPI

from services.profiles import consents, gdpr, handlers, interactions
from services.profiles.bootstrap import create_app
from services.profiles.domain import Customer, CustomerStatus, ProfileFields
from services.profiles.interactions_domain import LogInteraction
from services.profiles.settings import ProfilesSettings
from shared.auth import Role
from shared.events import decode, encode, new_event
from shared.events.complaints import ComplaintOpened
from shared.events.customers import Channel, Direction, InteractionKind, Purpose
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient
from shared.topics import COMPLAINTS, CUSTOMERS, TopicNames
from tests.kafka_reading import read_topic
from tests.profiles.conftest import Api
from tests.profiles.test_interactions import log, new_customer
from tests.profiles.test_timeline import store_directly
from tests.service_harness import eventually, relay_once
from tests.support.api import PROBLEM

EMAIL = "zdenka.quellbrunn@example.hr"
INTERACTION = "Promised Zdenka a replacement for the dented Quellkettle"
# Whatever of these is found anywhere after erasure is personal data left behind.
PERSONAL = ["zdenka", "quellbrunn", EMAIL, "917654321", "ilica 242", "1984-02-29", "quellkettle"]


async def personal_data_in(db: Database) -> list[str]:
    """Every (collection, needle) where a document still holds a piece of personal data."""
    found = []
    for name in sorted(await db.list_collection_names()):
        async for document in db[name].find():
            raw = bson.encode(document).lower()
            found += [
                f"{name}: {needle!r} in {document['_id']!r}"
                for needle in PERSONAL
                if needle.encode() in raw
            ]
    return found


async def add_purchase(api: Api, customer_id: str) -> None:
    response = await api.http.post(
        "/api/v1/purchases",
        json={
            "purchase_id": "o-1001",
            "customer_id": customer_id,
            "customer_email": EMAIL,
            "items": [
                {
                    "sku": "K-1",
                    "name": "Kettle",
                    "category": "kitchen",
                    "quantity": 1,
                    "unit_price": "39.90",
                }
            ],
            "total_amount": "39.90",
            "currency": "EUR",
            "channel": "web",
        },
        headers=api.as_(Role.SERVICE),
    )
    assert response.status_code == 201, response.text


async def add_contract(api: Api, customer_id: str) -> None:
    response = await api.http.post(
        f"/api/v1/customers/{customer_id}/contracts",
        json={
            "product": "Kettle care plan",
            "start_date": "2026-01-01",
            "renews_at": "2027-01-01",
            "external_reference": "policy-zdenka-quellbrunn",
        },
        headers=api.agent,
    )
    assert response.status_code == 201, response.text


async def test_the_export_holds_everything_about_the_customer(api: Api) -> None:
    customer = await new_customer(api)
    cid = customer["id"]
    await log(api, cid, summary=INTERACTION)
    await api.http.put(
        f"/api/v1/customers/{cid}/consents/email/marketing",
        json={"granted": True, "source": "web form"},
        headers=api.agent,
    )
    await add_purchase(api, cid)
    await add_contract(api, cid)

    response = await api.http.get(f"/api/v1/customers/{cid}/export", headers=api.customer(cid))

    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        f'attachment; filename="customer-{cid}.json"'
    )
    export = response.json()
    assert export["customer_id"] == cid
    assert export["profile"]["emails"] == [EMAIL]
    assert export["profile"]["birthday"] == "1984-02-29"
    [consent_record] = export["consents"]
    assert consent_record["history"][0]["source"] == "web form"
    assert [i["summary"] for i in export["interactions"]] == [INTERACTION]
    assert {entry["kind"] for entry in export["timeline"]} >= {
        "profile",
        "interaction",
        "consent",
        "purchase",
        "contract",
    }
    [purchase] = export["ledger"]
    assert purchase["customer_id"] == cid
    assert "39.90" in json.dumps(purchase)
    assert [figures["_id"] for figures in export["customer_figures"]] == [cid]
    [contract] = export["contracts"]
    assert contract["external_reference"] == "policy-zdenka-quellbrunn"


async def test_erasure_leaves_no_personal_data_anywhere_and_frees_the_email(
    api: Api,
    db: Database,
    kafka_bootstrap: str,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
) -> None:
    customer = await new_customer(api)
    cid = customer["id"]

    async def registered_published() -> bool:
        sent = {"type": "crm.customer.registered", "published_at": {"$ne": None}}
        return await db["outbox"].count_documents(sent) == 1

    await eventually(registered_published, timeout=30)
    await log(api, cid, summary=INTERACTION)
    await api.http.put(
        f"/api/v1/customers/{cid}/consents/sms/marketing",
        json={"granted": True, "source": f"asked by {EMAIL}"},
        headers=api.agent,
    )
    await add_purchase(api, cid)
    await add_contract(api, cid)
    complaint = new_event(
        ComplaintOpened.model_validate(
            {
                "complaint_id": "cmp-9",
                "customer_id": cid,
                "channel": "email",
                "category": "product",
                "subject": "Zdenka Quellbrunn: kettle leaks",
                "description": "It leaks.",
                "priority": "normal",
                "opened_at": "2026-11-02T09:00:00Z",
            }
        ),
        source="/tests",
    )
    await publisher.publish([(topics(COMPLAINTS), encode(complaint))])

    async def complaint_recorded() -> bool:
        return await db["timeline"].count_documents({"_id": complaint.id}) == 1

    await eventually(complaint_recorded, timeout=15)
    assert await personal_data_in(db)  # the scan finds what is there

    admin = api.as_(Role.ADMIN)
    erased = await api.http.delete(f"/api/v1/customers/{cid}", headers=admin)

    assert erased.status_code == 204, erased.text
    assert await personal_data_in(db) == []
    records = await read_topic(
        kafka_bootstrap,
        topics(CUSTOMERS),
        until=lambda records: any(b"crm.customer.erased" in r.value for r in records),
    )
    erasures = [json.loads(r.value) for r in records if b"crm.customer.erased" in r.value]
    assert [event["subject"] for event in erasures] == [cid]

    again = await api.http.delete(f"/api/v1/customers/{cid}", headers=admin)
    assert again.status_code == 410
    assert again.headers["content-type"] == PROBLEM
    assert await db["outbox"].count_documents({"type": "crm.customer.erased"}) == 1
    for path in ("timeline", "interactions", "consents", "export"):
        gone = await api.http.get(f"/api/v1/customers/{cid}/{path}", headers=api.agent)
        assert gone.status_code == 410, path
    assert (await api.http.get(f"/api/v1/customers/{cid}", headers=api.agent)).status_code in (
        404,
        410,
    )
    # What stays is what carries no identity: the ledger's amounts, keyed by the opaque id.
    figures = await db["customer_figures"].find_one({"_id": cid})
    assert figures is not None
    [entry] = await db["ledger"].find({"customer_id": cid}).to_list()
    assert entry["items"][0]["sku"] == "K-1"

    reborn = await new_customer(api, phones=[])
    assert reborn["emails"] == [EMAIL]
    assert reborn["id"] != cid


@pytest.fixture
async def unstarted_app(profiles_settings: ProfilesSettings) -> AsyncIterator[FastAPI]:
    """The service's use cases with no relay running, so outbox events stay pending."""
    app = create_app(profiles_settings)
    try:
        yield app
    finally:
        await app.state.runtime.client.close()


async def test_pending_events_of_an_erased_customer_still_leave_but_blanked(
    unstarted_app: FastAPI,
    db: Database,
    kafka_bootstrap: str,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
) -> None:
    state = unstarted_app.state
    customer = await handlers.register_customer(
        state.profiles,
        ProfileFields(given_name="Zdenka", family_name="Quellbrunn", emails=[EMAIL]),
    )
    await interactions.log_interaction(
        state.interactions,
        customer.id,
        LogInteraction(kind=InteractionKind.CALL, direction=Direction.INBOUND, summary=INTERACTION),
    )
    await consents.set_consent(
        state.consents,
        customer.id,
        Channel.EMAIL,
        Purpose.MARKETING,
        granted=True,
        source=f"asked by {EMAIL}",
    )
    before = await db["outbox"].find().sort("order", 1).to_list()

    await gdpr.erase_customer(state.gdpr, customer.id)

    after = await db["outbox"].find().sort("order", 1).to_list()
    assert [doc["_id"] for doc in after[:3]] == [doc["_id"] for doc in before]
    assert [doc["type"] for doc in after] == [
        "crm.customer.registered",
        "crm.interaction.logged",
        "crm.customer.consent_changed",
        "crm.customer.erased",
    ]
    assert all(doc["published_at"] is None for doc in after)
    assert await personal_data_in(db) == []
    events = [
        decode(bytes(doc["value"]), [(n, bytes(v)) for n, v in doc["headers"]]) for doc in after
    ]
    assert events[0].payload.model_dump()["emails"] == []
    assert events[1].payload.model_dump()["summary"] == "[erased]"

    assert await relay_once(db, publisher) == 4
    records = await read_topic(kafka_bootstrap, topics(CUSTOMERS))
    assert [json.loads(r.value)["id"] for r in records] == [doc["_id"] for doc in after]
    assert not [n for r in records for n in PERSONAL if n.encode() in r.value.lower()]


async def test_erasing_a_customer_erases_the_profiles_merged_into_it(
    api: Api, db: Database, mongo_client: MongoClient
) -> None:
    survivor = await new_customer(api, emails=["eva@example.si"], phones=[], given_name="Eva")
    now = datetime.now(UTC)
    source = Customer(
        id="cus_merged_source",
        given_name="Zdenka",
        family_name="Quellbrunn",
        emails=[EMAIL],
        status=CustomerStatus.MERGED,
        merged_into=survivor["id"],
        created_at=now,
        updated_at=now,
    )
    await store_directly(mongo_client, db, source)
    merged_url = f"/api/v1/customers/{source.id}/timeline"
    moved = await api.http.get(merged_url, headers=api.agent)
    assert moved.status_code == 308
    assert moved.headers["location"] == f"/api/v1/customers/{survivor['id']}/timeline"
    export = (
        await api.http.get(f"/api/v1/customers/{survivor['id']}/export", headers=api.agent)
    ).json()
    assert [p["id"] for p in export["merged_profiles"]] == [source.id]

    erased = await api.http.delete(
        f"/api/v1/customers/{survivor['id']}", headers=api.customer(survivor["id"])
    )

    assert erased.status_code == 204
    assert await personal_data_in(db) == []
    statuses = {doc["_id"]: doc["status"] async for doc in db["customers"].find()}
    assert statuses == {survivor["id"]: "erased", source.id: "erased"}
    erasures = await db["outbox"].find({"type": "crm.customer.erased"}).to_list()
    assert sorted(bytes(doc["key"]).decode() for doc in erasures) == sorted(statuses)


async def test_only_an_admin_or_the_customer_itself_may_erase(api: Api) -> None:
    customer = await new_customer(api)
    url = f"/api/v1/customers/{customer['id']}"
    for refused in (api.agent, api.as_(Role.SERVICE), api.customer("cus_someone_else")):
        response = await api.http.delete(url, headers=refused)
        assert response.status_code == 403
    assert (
        await api.http.delete("/api/v1/customers/cus_nobody", headers=api.as_(Role.ADMIN))
    ).status_code == 404

    me = api.customer(customer["id"])
    assert (await api.http.delete(url, headers=me)).status_code == 204
    gone = await api.http.get(f"{url}/consents", headers=me)
    assert gone.status_code == 410
    assert gone.headers["content-type"] == PROBLEM
    assert gone.json()["title"] == "Gone"


async def test_a_customer_token_gets_403_on_every_endpoint_of_another_customer(
    api: Api,
) -> None:
    other = await new_customer(api)
    mine = await new_customer(api, emails=["eva@example.si"], phones=[])
    me = api.customer(mine["id"])
    url = f"/api/v1/customers/{other['id']}"
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"{url}/interactions", None),
        ("POST", f"{url}/interactions", {"kind": "chat", "direction": "inbound", "summary": "x"}),
        ("GET", f"{url}/timeline", None),
        ("GET", f"{url}/consents", None),
        ("PUT", f"{url}/consents/email/marketing", {"granted": False}),
        ("GET", f"{url}/export", None),
        ("DELETE", url, None),
    ]
    for method, path, body in requests:
        response = await api.http.request(method, path, json=body, headers=me)
        assert response.status_code == 403, (method, path)
        assert response.headers["content-type"] == PROBLEM
    assert (await api.http.get(f"{url}/timeline", headers=api.agent)).status_code == 200
