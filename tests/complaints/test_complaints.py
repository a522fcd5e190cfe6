"""Complaints over HTTP: open, lifecycle, conversation, resolution, feedback, queries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.topics import COMPLAINTS, TopicNames
from tests.complaints.conftest import Api
from tests.kafka_reading import read_topic
from tests.support.api import PROBLEM


def complaint_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": "cus_ana",
        "channel": "email",
        "category": "delivery",
        "subject": "Kettle arrived broken",
        "description": "The lid is cracked and it leaks.",
        "related_purchase_id": "o-1",
        "priority": "normal",
    }
    body.update(overrides)
    return body


async def open_one(api: Api, headers: dict[str, str] | None = None, **overrides: Any) -> Any:
    response = await api.http.post(
        "/api/v1/complaints", json=complaint_body(**overrides), headers=headers or api.agent
    )
    assert response.status_code == 201, response.text
    return response.json()


async def events_of(kafka_bootstrap: str, topics: TopicNames, count: int) -> list[Any]:
    records = await read_topic(
        kafka_bootstrap, topics(COMPLAINTS), until=lambda records: len(records) >= count
    )
    # One customer's events share a partition, so they come back in publishing order.
    return [json.loads(record.value) for record in records]


async def test_opening_answers_with_the_sla_due_times_and_publishes_opened(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    complaint = await open_one(api)  # Monday 10:00 in Zagreb, normal: 8 h / 40 h

    assert complaint["id"].startswith("cmp_")
    assert complaint["status"] == "open"
    assert complaint["first_response_due_at"] == "2026-11-24T09:00:00Z"  # Tuesday 10:00
    assert complaint["resolution_due_at"] == "2026-11-30T09:00:00Z"  # next Monday 10:00
    [event] = await events_of(kafka_bootstrap, topics, 1)
    assert event["type"] == "crm.complaint.opened"
    assert event["subject"] == "cus_ana"
    assert event["data"]["complaint_id"] == complaint["id"]
    assert event["data"]["first_response_due_at"] == "2026-11-24T09:00:00Z"


async def test_a_customer_opens_and_reads_only_its_own_complaints(api: Api) -> None:
    own = await open_one(api, headers=api.customer("cus_ana"))
    assert own["customer_id"] == "cus_ana"

    other = await api.http.post(
        "/api/v1/complaints",
        json=complaint_body(customer_id="cus_bob"),
        headers=api.customer("cus_ana"),
    )
    assert other.status_code == 403
    assert other.headers["content-type"] == PROBLEM

    bobs = await open_one(api, customer_id="cus_bob")
    for method, path, body in [
        ("GET", f"/api/v1/complaints/{bobs['id']}", None),
        ("GET", f"/api/v1/complaints/{bobs['id']}/history", None),
        ("POST", f"/api/v1/complaints/{bobs['id']}/comments", {"text": "hello"}),
        ("POST", f"/api/v1/complaints/{bobs['id']}/feedback", {"csat": 1}),
    ]:
        response = await api.http.request(method, path, json=body, headers=api.customer("cus_ana"))
        assert response.status_code == 403, (path, response.text)
    listing = await api.call("GET", "/complaints", headers=api.customer("cus_ana"))
    assert [c["id"] for c in listing["items"]] == [own["id"]]
    untouched = await api.call("GET", f"/complaints/{bobs['id']}")
    assert untouched["comments"] == []
    assert untouched["feedback"] == []
    staff_only = await api.http.post(
        f"/api/v1/complaints/{own['id']}/acknowledge", headers=api.customer("cus_ana")
    )
    assert staff_only.status_code == 403


async def test_the_lifecycle_publishes_an_event_per_transition(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    complaint = await open_one(api)
    path = f"/complaints/{complaint['id']}"
    await api.call("POST", f"{path}/acknowledge")
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    waiting = await api.call(
        "POST",
        f"{path}/status",
        json={"status": "waiting_on_customer", "public_comment": "Could you send a photo?"},
    )
    assert waiting["comments"][0]["text"] == "Could you send a photo?"
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    resolved = await api.call(
        "POST",
        f"{path}/resolve",
        json={
            "resolution_type": "refund",
            "summary": "Refunded the kettle",
            "refund_amount": "39.90",
            "currency": "EUR",
        },
    )
    assert resolved["status"] == "resolved"
    assert resolved["resolutions"][0]["refund_amount"] == "39.90"
    await api.call("POST", f"{path}/reopen", json={"reason": "the refund never arrived"})
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    await api.call(
        "POST",
        f"{path}/resolve",
        json={"resolution_type": "explanation", "summary": "The bank was slow"},
    )
    closed = await api.call("POST", f"{path}/close")
    assert closed["status"] == "closed"

    events = await events_of(kafka_bootstrap, topics, 10)
    assert [e["type"].removeprefix("crm.complaint.") for e in events] == [
        "opened",
        "acknowledged",
        "status_changed",
        "status_changed",
        "status_changed",
        "resolved",
        "reopened",
        "status_changed",
        "resolved",
        "closed",
    ]
    refund = next(e["data"] for e in events if e["type"] == "crm.complaint.resolved")
    assert refund["refund_amount"] == "39.90"
    assert refund["currency"] == "EUR"
    assert refund["purchase_id"] == "o-1"  # the complaint's purchase unless told otherwise
    history = await api.call("GET", f"{path}/history")
    assert [h["kind"] for h in history][:3] == ["opened", "status", "status"]


async def test_an_invalid_transition_is_refused_naming_the_allowed_ones(api: Api) -> None:
    complaint = await open_one(api)
    path = f"/api/v1/complaints/{complaint['id']}"

    for action, body in [
        ("resolve", {"resolution_type": "explanation", "summary": "x"}),
        ("close", None),
        ("reopen", None),
    ]:
        response = await api.http.post(f"{path}/{action}", json=body, headers=api.agent)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["allowed"] == ["acknowledged"]
    status = await api.http.post(
        f"{path}/status", json={"status": "in_progress"}, headers=api.agent
    )
    assert status.status_code == 409
    unchanged = await api.call("GET", f"/complaints/{complaint['id']}")
    assert unchanged["status"] == "open"
    assert len(await api.call("GET", f"/complaints/{complaint['id']}/history")) == 1


async def test_a_customer_sees_public_comments_but_never_internal_notes(api: Api) -> None:
    complaint = await open_one(api)
    path = f"/complaints/{complaint['id']}"
    await api.call("POST", f"{path}/comments", json={"text": "We are on it"})
    await api.call(
        "POST",
        f"{path}/comments",
        json={"text": "Customer is known to exaggerate", "visibility": "internal"},
    )
    own = api.customer("cus_ana")
    await api.call("POST", f"{path}/comments", headers=own, json={"text": "Thanks!"})
    refused = await api.http.post(
        f"/api/v1{path}/comments", json={"text": "psst", "visibility": "internal"}, headers=own
    )
    assert refused.status_code == 403

    seen = await api.call("GET", path, headers=own)
    assert [c["text"] for c in seen["comments"]] == ["We are on it", "Thanks!"]
    history = await api.call("GET", f"{path}/history", headers=own)
    assert all(not entry["internal"] for entry in history)
    assert "exaggerate" not in json.dumps([seen, history])
    listing = await api.call("GET", "/complaints", headers=own)
    assert "exaggerate" not in json.dumps(listing)

    staff = await api.call("GET", path)
    assert [c["visibility"] for c in staff["comments"]] == ["public", "internal", "public"]


async def test_a_staff_public_reply_is_announced_and_an_internal_note_is_not(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    complaint = await open_one(api)
    path = f"/complaints/{complaint['id']}"
    await api.call(
        "POST", f"{path}/comments", json={"text": "Keep it quiet", "visibility": "internal"}
    )
    own = api.customer("cus_ana")
    await api.call("POST", f"{path}/comments", headers=own, json={"text": "Any news?"})
    replied = await api.call("POST", f"{path}/comments", json={"text": "It ships on Monday"})

    events = await events_of(kafka_bootstrap, topics, 2)  # opened, then the one reply
    replies = [e["data"] for e in events if e["type"] == "crm.complaint.replied"]
    public = [c for c in replied["comments"] if c["text"] == "It ships on Monday"]
    assert replies == [
        {
            "complaint_id": complaint["id"],
            "customer_id": "cus_ana",
            "comment_id": public[0]["id"],
            "agent_id": replies[0]["agent_id"],
            "public_comment": "It ships on Monday",
            "replied_at": replies[0]["replied_at"],
        }
    ]
    assert "Keep it quiet" not in json.dumps(events)
    assert "Any news?" not in json.dumps(events)


async def test_feedback_once_per_resolution_and_only_after_it(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    complaint = await open_one(api)
    path = f"/complaints/{complaint['id']}"
    own = api.customer("cus_ana")
    early = await api.http.post(f"/api/v1{path}/feedback", json={"csat": 5}, headers=own)
    assert early.status_code == 409
    for step in ("acknowledge",):
        await api.call("POST", f"{path}/{step}")
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    await api.call(
        "POST", f"{path}/resolve", json={"resolution_type": "replacement", "summary": "New one"}
    )
    given = await api.call(
        "POST", f"{path}/feedback", headers=own, json={"csat": 4, "nps": 9, "comment": "quick"}
    )
    assert given["feedback"][0]["csat"] == 4
    twice = await api.http.post(f"/api/v1{path}/feedback", json={"csat": 1}, headers=api.agent)
    assert twice.status_code == 409
    bad = await api.http.post(f"/api/v1{path}/feedback", json={"csat": 6}, headers=own)
    assert bad.status_code == 422

    events = await events_of(kafka_bootstrap, topics, 5)
    feedback = [e["data"] for e in events if e["type"] == "crm.complaint.feedback_received"]
    assert feedback == [
        {
            "complaint_id": complaint["id"],
            "customer_id": "cus_ana",
            "csat": 4,
            "nps": 9,
            "comment": "quick",
            "received_at": feedback[0]["received_at"],
        }
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channel": "pigeon"}, "channel"),
        ({"priority": "whenever"}, "priority"),
        ({"subject": ""}, "subject"),
        ({"customer_id": None}, "customer_id"),
        ({"mood": "angry"}, "mood"),
    ],
)
async def test_malformed_complaints_get_a_422_and_nothing_is_stored(
    api: Api, overrides: dict[str, Any], message: str
) -> None:
    response = await api.http.post(
        "/api/v1/complaints", json=complaint_body(**overrides), headers=api.agent
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert message in response.text
    assert (await api.call("GET", "/complaints"))["items"] == []


async def test_bad_requests_on_a_complaint_change_nothing(api: Api) -> None:
    unknown = await api.http.get("/api/v1/complaints/cmp_nope", headers=api.agent)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    complaint = await open_one(api, related_purchase_id=None)
    path = f"/api/v1/complaints/{complaint['id']}"
    await api.call("POST", f"/complaints/{complaint['id']}/acknowledge")
    await api.call("POST", f"/complaints/{complaint['id']}/status", json={"status": "in_progress"})
    for body, message in [
        ({"resolution_type": "refund", "summary": "x"}, "refund_amount"),
        (
            {"resolution_type": "refund", "summary": "x", "refund_amount": "5", "currency": "EUR"},
            "purchase_id",
        ),
        ({"resolution_type": "refund", "summary": "x", "refund_amount": 5}, "decimal string"),
        (
            {"resolution_type": "goodwill_credit", "summary": "x", "refund_amount": "5"},
            "refund",
        ),
    ]:
        response = await api.http.post(f"{path}/resolve", json=body, headers=api.agent)
        assert response.status_code == 422, response.text
        assert message in response.text
    assert (await api.call("GET", f"/complaints/{complaint['id']}"))["status"] == "in_progress"


async def test_assignment_and_reclassification_are_in_the_history(api: Api) -> None:
    complaint = await open_one(api)
    path = f"/complaints/{complaint['id']}"
    await api.call("PUT", f"{path}/assignment", json={"agent": "ana", "team": "kitchen"})
    changed = await api.call("PATCH", path, json={"priority": "urgent", "category": "quality"})
    assert changed["priority"] == "urgent"
    assert changed["first_response_due_at"] == "2026-11-23T10:00:00Z"  # urgent: 1 h
    history = await api.call("GET", f"{path}/history")
    assert [h["kind"] for h in history] == ["opened", "assigned", "priority", "category"]
    assert history[2]["details"] == {"from": "normal", "to": "urgent"}
    by_team = await api.call("GET", "/complaints", params={"assignee": "kitchen"})
    assert [c["id"] for c in by_team["items"]] == [complaint["id"]]


async def test_list_filters_and_pages_with_a_cursor(api: Api) -> None:
    opened = []
    for index in range(5):
        api.clock.advance(minutes=1)
        opened.append(
            await open_one(
                api,
                customer_id=f"cus_{index % 2}",
                priority="high" if index < 2 else "low",
                category="billing" if index == 4 else "delivery",
            )
        )
    ids = [c["id"] for c in reversed(opened)]  # newest first

    first = await api.call("GET", "/complaints", params={"limit": 2})
    second = await api.call(
        "GET", "/complaints", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    third = await api.call(
        "GET", "/complaints", params={"limit": 2, "cursor": second["next_cursor"]}
    )
    assert [c["id"] for page in (first, second, third) for c in page["items"]] == ids
    assert third["next_cursor"] is None

    async def found(**params: Any) -> list[str]:
        return [c["id"] for c in (await api.call("GET", "/complaints", params=params))["items"]]

    assert await found(priority="high") == ids[3:]
    assert await found(category="billing") == ids[:1]
    assert await found(customer_id="cus_1") == [opened[3]["id"], opened[1]["id"]]
    assert await found(status="open", created_after=opened[2]["created_at"]) == ids[:3]
    assert await found(created_before=opened[1]["created_at"]) == [opened[0]["id"]]
    assert await found(sla="breached") == []
    bad = await api.http.get("/api/v1/complaints?cursor=nonsense", headers=api.agent)
    assert bad.status_code == 422
