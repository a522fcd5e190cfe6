"""The in-app inbox over HTTP: newest first, paged, unread filter, mark read; a customer
sees only its own; erasure and merges."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.notifications.domain import (
    Channel,
    OutgoingMessage,
    Recipient,
    RenderedMessage,
    TextDirection,
)
from shared.mongo import Database
from tests.notifications.delivery_app import DeliveryApi, delivery_api

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
async def api(db: Database) -> AsyncIterator[DeliveryApi]:
    async with delivery_api(db) as service:
        service.inbox.clock = Clock()
        yield service


async def deliver(api: DeliveryApi, customer_id: str, subject: str, locale: str = "en") -> str:
    delivery_id = f"dlv-{uuid.uuid4().hex}"
    await api.inbox.store(
        [
            OutgoingMessage(
                delivery_id=delivery_id,
                channel=Channel.IN_APP,
                rule="purchase_thank_you",
                address=customer_id,
                recipient=Recipient(customer_id=customer_id),
                rendered=RenderedMessage(
                    locale=locale,
                    subject=subject,
                    text=f"text of {subject}",
                    direction=TextDirection.RTL if locale == "fa" else TextDirection.LTR,
                ),
            )
        ]
    )
    return delivery_id


async def test_a_customer_reads_its_inbox_newest_first_page_by_page(api: DeliveryApi) -> None:
    for number in range(5):
        await deliver(api, "c-1", f"message {number}")
    await deliver(api, "c-2", "someone else's")

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await api.http.get(
            "/api/v1/customers/c-1/inbox", params=params, headers=api.customer("c-1")
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["unread_count"] == 5
        seen += [item["subject"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"message {number}" for number in (4, 3, 2, 1, 0)]


async def test_a_customer_token_sees_only_its_own_inbox(api: DeliveryApi) -> None:
    await deliver(api, "c-1", "private")
    other = await api.http.get("/api/v1/customers/c-1/inbox", headers=api.customer("c-2"))
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    message_id = (
        await api.http.get("/api/v1/customers/c-1/inbox", headers=api.customer("c-1"))
    ).json()["items"][0]["id"]
    steal = await api.http.post(
        f"/api/v1/customers/c-1/inbox/{message_id}/read", headers=api.customer("c-2")
    )
    assert steal.status_code == 403
    wrong_owner = await api.http.post(
        f"/api/v1/customers/c-2/inbox/{message_id}/read", headers=api.customer("c-2")
    )
    assert wrong_owner.status_code == 404
    for staff in (api.agent, api.admin):
        response = await api.http.get("/api/v1/customers/c-1/inbox", headers=staff)
        assert response.status_code == 200
        assert response.json()["items"][0]["subject"] == "private"
    anonymous = await api.http.get("/api/v1/customers/c-1/inbox")
    assert anonymous.status_code == 401


async def test_marking_read_is_idempotent_and_the_unread_filter_follows(api: DeliveryApi) -> None:
    first = await deliver(api, "c-1", "first")
    await deliver(api, "c-1", "second", locale="fa")
    path = f"/api/v1/customers/c-1/inbox/{first}/read"
    once = await api.http.post(path, headers=api.customer("c-1"))
    again = await api.http.post(path, headers=api.customer("c-1"))
    assert once.status_code == again.status_code == 200
    assert once.json()["read_at"] is not None
    assert again.json()["read_at"] == once.json()["read_at"]

    unread = await api.http.get(
        "/api/v1/customers/c-1/inbox", params={"unread": "true"}, headers=api.customer("c-1")
    )
    body = unread.json()
    assert [item["subject"] for item in body["items"]] == ["second"]
    assert body["items"][0]["direction"] == "rtl"
    assert body["unread_count"] == 1


async def test_an_unknown_message_or_a_foreign_cursor_is_a_clear_error(api: DeliveryApi) -> None:
    missing = await api.http.post(
        "/api/v1/customers/c-1/inbox/nope/read", headers=api.customer("c-1")
    )
    assert missing.status_code == 404
    bad_cursor = await api.http.get(
        "/api/v1/customers/c-1/inbox", params={"cursor": "garbage!"}, headers=api.customer("c-1")
    )
    assert bad_cursor.status_code == 422
    bad_limit = await api.http.get(
        "/api/v1/customers/c-1/inbox", params={"limit": 0}, headers=api.customer("c-1")
    )
    assert bad_limit.status_code == 422


async def test_an_erased_customers_messages_are_gone_and_stay_gone(api: DeliveryApi) -> None:
    delivery_id = await deliver(api, "c-1", "secret")
    await api.inbox.erase_customer("c-1")
    response = await api.http.get("/api/v1/customers/c-1/inbox", headers=api.admin)
    assert response.json() == {"items": [], "unread_count": 0, "next_cursor": None}
    stored = await api.inbox.messages.find_one({"_id": delivery_id})
    assert stored is not None
    assert "secret" not in str(stored)
    # a retry of the same delivery after the erasure does not bring it back
    await api.inbox.store(
        [
            OutgoingMessage(
                delivery_id=delivery_id,
                channel=Channel.IN_APP,
                rule="purchase_thank_you",
                address="c-1",
                recipient=Recipient(customer_id="c-1"),
                rendered=RenderedMessage(locale="en", subject="secret", text="secret"),
            )
        ]
    )
    again = await api.http.get("/api/v1/customers/c-1/inbox", headers=api.admin)
    assert again.json()["items"] == []


async def test_messages_follow_a_merge_and_come_back_when_it_is_undone(api: DeliveryApi) -> None:
    await deliver(api, "source", "from the source")
    await deliver(api, "target", "from the target")
    await api.inbox.move_customer("source", "target", undo=False)
    merged = await api.http.get("/api/v1/customers/target/inbox", headers=api.customer("target"))
    assert {item["subject"] for item in merged.json()["items"]} == {
        "from the source",
        "from the target",
    }
    await api.inbox.move_customer("source", "target", undo=True)
    source = await api.http.get("/api/v1/customers/source/inbox", headers=api.admin)
    target = await api.http.get("/api/v1/customers/target/inbox", headers=api.admin)
    assert [item["subject"] for item in source.json()["items"]] == ["from the source"]
    assert [item["subject"] for item in target.json()["items"]] == ["from the target"]


async def test_everything_can_be_marked_read_at_once(api: DeliveryApi) -> None:
    for number in range(3):
        await deliver(api, "c-1", f"message {number}")
    await deliver(api, "c-2", "not mine")
    marked = await api.http.post(
        "/api/v1/customers/c-1/inbox/read-all", headers=api.customer("c-1")
    )
    assert marked.json() == {"marked": 3}
    again = await api.http.post("/api/v1/customers/c-1/inbox/read-all", headers=api.customer("c-1"))
    assert again.json() == {"marked": 0}
    other = await api.http.get("/api/v1/customers/c-2/inbox", headers=api.customer("c-2"))
    assert other.json()["unread_count"] == 1
    forbidden = await api.http.post(
        "/api/v1/customers/c-2/inbox/read-all", headers=api.customer("c-1")
    )
    assert forbidden.status_code == 403
