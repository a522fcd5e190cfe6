"""Complaints follow customer merges (and their undoing) and are anonymised on erasure."""

from __future__ import annotations

import json
from typing import Any

from bson import Binary

from shared.events import new_event
from shared.events.customers import CustomerErased, CustomerMerged
from shared.events.envelope import KafkaRecord, encode
from shared.kafka import AiokafkaPublisher
from shared.topics import CUSTOMERS, TopicNames
from tests.complaints.conftest import Api
from tests.complaints.test_complaints import complaint_body, open_one
from tests.kafka_reading import read_topic
from tests.service_harness import eventually


async def send(publisher: AiokafkaPublisher, topics: TopicNames, payload: Any) -> None:
    record = encode(new_event(payload, source="/tests"))
    await publisher.publish([(topics(CUSTOMERS), record)])


async def customers_of(api: Api, *complaints: dict[str, Any]) -> list[str]:
    found = [await api.call("GET", f"/complaints/{c['id']}") for c in complaints]
    return [complaint["customer_id"] for complaint in found]


async def test_complaints_follow_a_merge_and_move_back_when_it_is_undone(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    survivor_own = await open_one(api, customer_id="cus_survivor")
    moved = await open_one(api, customer_id="cus_source")
    merge = {"customer_id": "cus_survivor", "source_customer_id": "cus_source"}

    await send(publisher, topics, CustomerMerged(**merge, merged_at="2026-11-23T10:00:00Z"))

    async def merged() -> bool:
        return await customers_of(api, survivor_own, moved) == ["cus_survivor"] * 2

    await eventually(merged, timeout=20, message="the complaint did not follow the merge")
    survivor_view = await api.call("GET", "/complaints", headers=api.customer("cus_survivor"))
    assert {c["id"] for c in survivor_view["items"]} == {survivor_own["id"], moved["id"]}

    await send(
        publisher,
        topics,
        CustomerMerged(**merge, merged_at="2026-11-23T11:00:00Z", undone=True),
    )

    async def unmerged() -> bool:
        return await customers_of(api, survivor_own, moved) == ["cus_survivor", "cus_source"]

    await eventually(unmerged, timeout=20, message="the undone merge left the complaint")


async def test_erasure_anonymises_personal_text_and_keeps_the_figures(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    complaint = await open_one(api, customer_id="cus_gone")
    other = await open_one(api, customer_id="cus_stays")
    path = f"/complaints/{complaint['id']}"
    await api.call("POST", f"{path}/comments", json={"text": "Call Ana on +385912345678"})
    await api.call("POST", f"{path}/acknowledge")
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    await api.call(
        "POST",
        f"{path}/resolve",
        json={
            "resolution_type": "refund",
            "summary": "Refunded Ana",
            "refund_amount": "12.50",
            "currency": "EUR",
        },
    )
    await api.call("POST", f"{path}/feedback", json={"csat": 2, "comment": "Ana was unhappy"})

    await send(
        publisher,
        topics,
        CustomerErased(customer_id="cus_gone", erased_at="2026-11-23T12:00:00Z"),
    )

    async def erased() -> bool:
        return bool((await api.call("GET", path))["subject"] == "[erased]")

    await eventually(erased, timeout=20, message="the complaint was not anonymised")
    kept = await api.call("GET", path)
    assert "Ana" not in json.dumps(kept)
    assert kept["description"] == "[erased]"
    assert kept["comments"][0]["text"] == "[erased]"
    assert kept["resolutions"][0]["refund_amount"] == "12.50"
    assert kept["feedback"][0]["csat"] == 2
    assert kept["status"] == "resolved"
    assert kept["category"] == "delivery"
    untouched = await api.call("GET", f"/complaints/{other['id']}")
    assert untouched["subject"] == "Kettle arrived broken"
    # Nor does the service keep copies of the events that told the story.
    outbox = api.complaints.outbox.collection
    assert await outbox.count_documents({"key": Binary(b"cus_gone")}) == 0
    assert await outbox.count_documents({"key": Binary(b"cus_stays")}) == 1


async def test_a_malformed_customer_event_goes_to_the_dlq_with_the_reason(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames, kafka_bootstrap: str
) -> None:
    good = encode(
        new_event(
            CustomerErased(customer_id="cus_x", erased_at="2026-11-23T12:00:00Z"),
            source="/tests",
        )
    )
    broken = json.loads(good.value)
    del broken["data"]["erased_at"]
    await publisher.publish(
        [(topics(CUSTOMERS), KafkaRecord(good.key, json.dumps(broken).encode(), good.headers))]
    )
    records = await read_topic(
        kafka_bootstrap, topics.dlq(topics(CUSTOMERS)), until=lambda records: len(records) >= 1
    )
    [record] = records
    headers = dict(record.headers)
    assert b"erased_at" in headers["dlq-reason"]
    assert headers["dlq-consumer"] == b"complaints"


async def test_new_complaints_follow_a_merge_and_are_refused_for_an_erased_customer(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    await send(
        publisher,
        topics,
        CustomerMerged(
            customer_id="cus_kept", source_customer_id="cus_old", merged_at="2026-11-23T10:00:00Z"
        ),
    )
    await send(
        publisher,
        topics,
        CustomerErased(customer_id="cus_forgotten", erased_at="2026-11-23T12:00:00Z"),
    )

    async def both_consumed() -> bool:
        entries = api.complaints.directory.entries
        return await entries.count_documents({}) == 2

    await eventually(both_consumed, timeout=20, message="the customer events were not consumed")
    filed = await open_one(api, customer_id="cus_old")
    assert filed["customer_id"] == "cus_kept"
    refused = await api.http.post(
        "/api/v1/complaints", json=complaint_body(customer_id="cus_forgotten"), headers=api.agent
    )
    assert refused.status_code == 410
    assert refused.headers["content-type"] == "application/problem+json"
    listing = await api.call("GET", "/complaints", params={"customer_id": "cus_forgotten"})
    assert listing["items"] == []


async def test_a_customer_reopens_its_own_resolved_complaint(api: Api) -> None:
    mine = api.customer("cus_ana")
    complaint = await open_one(api, headers=mine)
    path = f"/complaints/{complaint['id']}"
    await api.call("POST", f"{path}/acknowledge")
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    await api.call(
        "POST", f"{path}/resolve", json={"resolution_type": "explanation", "summary": "Explained"}
    )
    other = await api.http.post(
        f"/api/v1{path}/reopen", json={"reason": "not me"}, headers=api.customer("cus_eve")
    )
    assert other.status_code == 403
    reopened = await api.call("POST", f"{path}/reopen", mine, json={"reason": "still leaking"})
    assert reopened["status"] == "reopened"
