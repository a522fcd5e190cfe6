"""MongoDB adapter of the in-app inbox: messages a customer reads in the app or portal.

``inbox`` holds one document per delivered message, keyed by the delivery id, so a
delivery that is attempted again never shows twice. A customer token reads only its own
inbox (403 otherwise); staff and services read any. An erased customer's messages keep
only their ids (so a late retry cannot bring the text back) and disappear from the API;
a merge moves them to the surviving customer, and an undone merge takes them back.

The dispatcher stores a batch's in-app messages in the transaction that records their
outcomes (one bulk write): a message is in the inbox exactly when the ledger says it was
sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, UpdateOne

from services.notifications.domain import OutgoingMessage, TextDirection
from services.notifications.inbox_domain import InboxMessage
from shared.clock import Clock, utc_now
from shared.errors import NotFound
from shared.mongo import Database, Session


class InboxStore:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self.messages = db["inbox"]
        self.clock = clock

    async def ensure_indexes(self) -> None:
        await self.messages.create_index(
            [("customer_id", 1), ("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        await self.messages.create_index([("customer_id", 1), ("read_at", 1)])

    async def store(
        self, messages: Sequence[OutgoingMessage], session: Session | None = None
    ) -> None:
        """Store each message once per delivery id, in one bulk write: a repeat (a retried
        delivery) changes nothing, and an erased message keeps only its id."""
        if not messages:
            return
        now = self.clock()
        await self.messages.bulk_write(
            [
                UpdateOne(
                    {"_id": message.delivery_id},
                    {"$setOnInsert": _document(message, now)},
                    upsert=True,
                )
                for message in messages
            ],
            ordered=False,
            session=session,
        )

    async def page(
        self,
        customer_id: str,
        *,
        unread_only: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[InboxMessage]:
        query: dict[str, Any] = {"customer_id": customer_id, "erased": {"$ne": True}}
        if unread_only:
            query["read_at"] = None
        if after is not None:
            moment, message_id = after
            query["$or"] = [
                {"created_at": {"$lt": moment}},
                {"created_at": moment, "_id": {"$lt": message_id}},
            ]
        cursor = (
            self.messages.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [_message(document) async for document in cursor]

    async def unread_count(self, customer_id: str) -> int:
        return await self.messages.count_documents(
            {"customer_id": customer_id, "read_at": None, "erased": {"$ne": True}}
        )

    async def mark_read(self, customer_id: str, message_id: str) -> InboxMessage:
        """Mark read once; marking again keeps the first time."""
        owned = {"_id": message_id, "customer_id": customer_id, "erased": {"$ne": True}}
        await self.messages.update_one(
            {**owned, "read_at": None}, {"$set": {"read_at": self.clock()}}
        )
        document = await self.messages.find_one(owned)
        if document is None:
            raise NotFound(f"customer {customer_id} has no inbox message {message_id}")
        return _message(document)

    async def mark_all_read(self, customer_id: str) -> int:
        result = await self.messages.update_many(
            {"customer_id": customer_id, "read_at": None, "erased": {"$ne": True}},
            {"$set": {"read_at": self.clock()}},
        )
        return result.modified_count

    async def erase_customer(self, customer_id: str, session: Session | None = None) -> None:
        """Forget what the messages said; keep their ids so a retried delivery stays a
        repeat instead of bringing the text back."""
        await self.messages.update_many(
            {"customer_id": customer_id},
            {"$set": {"subject": "", "text": "", "erased": True}},
            session=session,
        )

    async def move_customer(
        self, source_id: str, target_id: str, *, undo: bool = False, session: Session | None = None
    ) -> None:
        """Messages follow a merge to the survivor; an undone merge takes back exactly
        those that moved."""
        if undo:
            await self.messages.update_many(
                {"customer_id": target_id, "moved_from": source_id},
                {"$set": {"customer_id": source_id}, "$unset": {"moved_from": ""}},
                session=session,
            )
        else:
            await self.messages.update_many(
                {"customer_id": source_id},
                {"$set": {"customer_id": target_id, "moved_from": source_id}},
                session=session,
            )


def _document(message: OutgoingMessage, now: datetime) -> dict[str, Any]:
    rendered = message.rendered
    return {
        "customer_id": message.recipient.customer_id,
        "rule": message.rule,
        "subject": rendered.subject,
        "text": rendered.text,
        "locale": rendered.locale,
        "direction": rendered.direction.value,
        "created_at": now,
        "read_at": None,
    }


def _message(document: dict[str, Any]) -> InboxMessage:
    return InboxMessage(
        id=document["_id"],
        customer_id=document["customer_id"],
        rule=document["rule"],
        subject=document["subject"],
        text=document["text"],
        locale=document["locale"],
        direction=TextDirection(document.get("direction", "ltr")),
        created_at=document["created_at"],
        read_at=document.get("read_at"),
    )
