"""MongoDB adapter of webhooks: the subscriptions, one document per subscription in
``webhook_subscriptions`` (with its signing secret)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.notifications.webhooks_domain import Subscription
from shared.errors import NotFound
from shared.mongo import Database


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.subscriptions = db["webhook_subscriptions"]

    async def ensure_indexes(self) -> None:
        await self.subscriptions.create_index("active")

    async def insert(self, subscription: Subscription) -> None:
        document = subscription.model_dump()
        document["_id"] = document.pop("id")
        document["secret"] = subscription.secret
        await self.subscriptions.insert_one(document)

    async def get(self, subscription_id: str) -> Subscription:
        document = await self.subscriptions.find_one({"_id": subscription_id})
        if document is None:
            raise NotFound(f"no webhook subscription {subscription_id}")
        return _subscription(document)

    async def all(self) -> list[Subscription]:
        cursor = self.subscriptions.find({}).sort("created_at", 1)
        return [_subscription(document) async for document in cursor]

    async def active(self) -> list[Subscription]:
        cursor = self.subscriptions.find({"active": True})
        return [_subscription(document) async for document in cursor]

    async def update(self, subscription_id: str, changes: dict[str, Any]) -> Subscription:
        if changes:
            await self.subscriptions.update_one({"_id": subscription_id}, {"$set": changes})
        return await self.get(subscription_id)

    async def delete(self, subscription_id: str) -> None:
        result = await self.subscriptions.delete_one({"_id": subscription_id})
        if result.deleted_count == 0:
            raise NotFound(f"no webhook subscription {subscription_id}")

    async def disable(self, subscription_id: str, reason: str) -> None:
        await self.subscriptions.update_one(
            {"_id": subscription_id}, {"$set": {"active": False, "disabled_reason": reason}}
        )


def _subscription(document: Mapping[str, Any]) -> Subscription:
    return Subscription(
        id=document["_id"],
        url=document["url"],
        event_types=document["event_types"],
        description=document.get("description"),
        active=document.get("active", True),
        disabled_reason=document.get("disabled_reason"),
        created_at=document["created_at"],
        secret=document["secret"],
    )
