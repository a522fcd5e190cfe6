"""The timeline: everything that happened to a customer, newest first, whoever recorded it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.profiles.domain import Customer, CustomerStatus
from services.profiles.store import CustomerStore
from shared.events import EventPayload, encode, new_event
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintReplied,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
)
from shared.events.notifications import (
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient, Session, in_transaction
from shared.topics import COMPLAINTS, NOTIFICATIONS, TopicNames
from tests.profiles.conftest import Api
from tests.profiles.test_interactions import ago, log, new_customer
from tests.service_harness import eventually

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def complaint_events(customer_id: str) -> list[EventPayload]:
    """One of each of the nine complaint events, about a minute apart."""
    ids = {"complaint_id": "cmp-1", "customer_id": customer_id}
    return [
        ComplaintOpened.model_validate(
            {
                **ids,
                "channel": "web",
                "category": "delivery",
                "subject": "Kettle arrived dented",
                "description": "The spout is bent.",
                "priority": "high",
                "opened_at": at(0),
            }
        ),
        ComplaintAcknowledged.model_validate({**ids, "acknowledged_at": at(1), "agent_id": "ana"}),
        ComplaintStatusChanged.model_validate(
            {**ids, "from_status": "acknowledged", "to_status": "in_progress", "changed_at": at(2)}
        ),
        ComplaintReplied.model_validate(
            {
                **ids,
                "comment_id": "cmt-1",
                "agent_id": "ana",
                "public_comment": "A new kettle is on its way.",
                "replied_at": at(2.5),
            }
        ),
        ComplaintSlaBreached.model_validate(
            {
                **ids,
                "clock": "resolution",
                "due_at": at(3),
                "detected_at": at(3),
                "priority": "high",
            }
        ),
        ComplaintResolved.model_validate(
            {**ids, "resolution_type": "refund", "summary": "Refund agreed.", "resolved_at": at(4)}
        ),
        ComplaintReopened.model_validate(
            {**ids, "reason": "Not refunded yet", "reopened_at": at(5)}
        ),
        ComplaintClosed.model_validate({**ids, "closed_at": at(6)}),
        ComplaintFeedbackReceived.model_validate(
            {**ids, "csat": 4, "nps": 9, "received_at": at(7)}
        ),
    ]


def notification_events(customer_id: str) -> list[EventPayload]:
    ids = {"customer_id": customer_id, "rule": "purchase_thank_you"}
    return [
        NotificationSent.model_validate(
            {**ids, "notification_id": "n-1", "channel": "email", "sent_at": at(10)}
        ),
        NotificationFailed.model_validate(
            {
                **ids,
                "notification_id": "n-2",
                "channel": "sms",
                "reason": "number unreachable",
                "attempts": 3,
                "failed_at": at(11),
            }
        ),
        NotificationSuppressed.model_validate(
            {
                **ids,
                "notification_id": "n-3",
                "channel": "email",
                "reason": "no marketing consent",
                "suppressed_at": at(12),
            }
        ),
    ]


async def timeline(api: Api, customer_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get(
        f"/api/v1/customers/{customer_id}/timeline", params=params, headers=api.agent
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_complaint_and_notification_events_appear_once_each(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames, db: Database
) -> None:
    customer = await new_customer(api)
    complaints = [new_event(p, source="/tests") for p in complaint_events(customer["id"])]
    notifications = [new_event(p, source="/tests") for p in notification_events(customer["id"])]
    sentinel = new_event(
        NotificationSent.model_validate(
            {
                "customer_id": customer["id"],
                "rule": "birthday",
                "notification_id": "n-last",
                "channel": "in_app",
                "sent_at": at(20),
            }
        ),
        source="/tests",
    )
    await publisher.publish([(topics(COMPLAINTS), encode(event)) for event in complaints])
    await publisher.publish([(topics(NOTIFICATIONS), encode(event)) for event in notifications])
    # Redelivered copies, then a last event behind them in the same partitions.
    await publisher.publish(
        [
            (topics(COMPLAINTS), encode(complaints[0])),
            (topics(NOTIFICATIONS), encode(notifications[0])),
            (topics(NOTIFICATIONS), encode(sentinel)),
            (topics(COMPLAINTS), encode(complaints[-1])),
        ]
    )

    async def all_recorded() -> bool:
        ids = {doc["_id"] async for doc in db["processed_events"].find({}, {"_id": 1})}
        return {sentinel.id, complaints[-1].id} <= ids and len(ids) == 13

    await eventually(all_recorded, timeout=20, message="the events were not consumed")
    entries = await timeline(api, customer["id"], kind=["complaint", "notification"])

    assert [entry["summary"] for entry in entries] == [
        "in-app message sent (birthday)",
        "e-mail suppressed (purchase_thank_you)",
        "SMS failed (purchase_thank_you)",
        "e-mail sent (purchase_thank_you)",
        "complaint feedback: CSAT 4/5, NPS 9/10",
        "complaint closed",
        "complaint reopened",
        "complaint resolved (refund)",
        "complaint resolution deadline missed",
        "complaint: ana replied",
        "complaint acknowledged → in progress",
        "complaint acknowledged",
        "complaint opened: Kettle arrived dented",
    ]
    assert [entry["id"] for entry in entries[-9:]] == [event.id for event in reversed(complaints)]
    opened = entries[-1]
    assert opened["occurred_at"].startswith("2026-11-02T09:00:00")
    assert opened["details"] == {
        "complaint_id": "cmp-1",
        "status": "open",
        "category": "delivery",
        "priority": "high",
        "channel": "web",
    }
    sent = entries[3]
    assert sent["details"]["notification_id"] == "n-1"
    assert sent["details"]["channel"] == "email"
    assert sent["details"]["status"] == "sent"
    assert entries[2]["details"]["reason"] == "number unreachable"


async def store_directly(client: MongoClient, db: Database, customer: Customer) -> None:
    async def insert(session: Session) -> None:
        await CustomerStore(db).insert(customer, session)

    await in_transaction(client, insert)


async def test_events_of_a_merged_customer_go_to_the_survivor_and_unknown_ids_are_kept(
    api: Api,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    db: Database,
    mongo_client: MongoClient,
) -> None:
    survivor = await new_customer(api)
    merged_id = f"cus_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    await store_directly(
        mongo_client,
        db,
        Customer(
            id=merged_id,
            given_name="Zdenka",
            status=CustomerStatus.MERGED,
            merged_into=survivor["id"],
            created_at=now,
            updated_at=now,
        ),
    )
    to_merged = new_event(notification_events(merged_id)[0], source="/tests")
    to_stranger = new_event(notification_events("shop-customer-7")[0], source="/tests")
    await publisher.publish(
        [(topics(NOTIFICATIONS), encode(to_merged)), (topics(NOTIFICATIONS), encode(to_stranger))]
    )

    async def recorded() -> bool:
        return await db["timeline"].count_documents({"kind": "notification"}) == 2

    await eventually(recorded, timeout=20, message="the notifications were not recorded")
    [entry] = await timeline(api, survivor["id"], kind="notification")
    assert entry["id"] == to_merged.id
    stranger = await db["timeline"].find_one({"_id": to_stranger.id})
    assert stranger is not None
    assert stranger["customer_id"] == "shop-customer-7"


async def test_pages_are_newest_first_and_stable_while_entries_arrive(api: Api) -> None:
    customer = await new_customer(api)
    for minutes in (50, 40, 30, 20, 10):
        await log(api, customer["id"], occurred_at=ago(minutes), summary=f"call {minutes}")
    url = f"/api/v1/customers/{customer['id']}/timeline"

    first = (await api.http.get(url, params={"limit": 2}, headers=api.agent)).json()
    assert [item["summary"] for item in first["items"]] == [
        "profile created",
        "call (inbound): call 10",
    ]
    await log(api, customer["id"], summary="call now")  # newer than everything paged
    rest: list[str] = []
    cursor = first["next_cursor"]
    while cursor:
        page = (
            await api.http.get(url, params={"limit": 2, "cursor": cursor}, headers=api.agent)
        ).json()
        rest += [item["summary"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert rest == [f"call (inbound): call {m}" for m in (20, 30, 40, 50)]

    everything = await timeline(api, customer["id"], limit=200)
    assert [item["summary"] for item in everything][:2] == [
        "call (inbound): call now",
        "profile created",
    ]
    only_profile = await timeline(api, customer["id"], kind="profile")
    assert [item["kind"] for item in only_profile] == ["profile"]
    for bad in ({"limit": 0}, {"limit": 201}, {"kind": "gossip"}, {"cursor": "!!"}):
        response = await api.http.get(url, params=bad, headers=api.agent)
        assert response.status_code == 422, bad


async def test_a_customer_reads_its_own_timeline_only(api: Api) -> None:
    mine = await new_customer(api)
    other = await new_customer(api, emails=["eva@example.si"], phones=[])
    me = api.customer(mine["id"])
    own = await api.http.get(f"/api/v1/customers/{mine['id']}/timeline", headers=me)
    assert own.status_code == 200
    assert [item["summary"] for item in own.json()["items"]] == ["profile created"]
    forbidden = await api.http.get(f"/api/v1/customers/{other['id']}/timeline", headers=me)
    assert forbidden.status_code == 403
    unknown = await api.http.get("/api/v1/customers/cus_nobody/timeline", headers=api.agent)
    assert unknown.status_code == 404
