"""MongoDB adapter of consents: one document per customer in ``consents``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.profiles.consents_domain import ConsentChange, ConsentOverview, ConsentState
from shared.events.customers import Channel, Purpose
from shared.mongo import Database, Session


class ConsentStore:
    """One document per customer (``_id`` is the customer id): ``current`` decisions by
    channel and purpose, and the ``history`` of changes, oldest first."""

    section = "consents"

    def __init__(self, db: Database) -> None:
        self.consents = db["consents"]

    async def overview(self, customer_id: str) -> ConsentOverview:
        document = await self.consents.find_one({"_id": customer_id}) or {}
        return _overview(customer_id, document)

    async def record(self, session: Session, customer_id: str, change: ConsentChange) -> bool:
        """Record ``change`` unless it is already the current decision; True if recorded."""
        path = f"current.{change.channel.value}.{change.purpose.value}"
        entry = change.model_dump(mode="python")
        entry |= {"channel": change.channel.value, "purpose": change.purpose.value}
        await self.consents.update_one(
            {"_id": customer_id},
            {"$setOnInsert": {"history": []}},
            upsert=True,
            session=session,
        )
        result = await self.consents.update_one(
            {"_id": customer_id, f"{path}.granted": {"$ne": change.granted}},
            {
                "$set": {
                    path: {
                        "granted": change.granted,
                        "source": change.source,
                        "changed_at": change.changed_at,
                    }
                },
                "$push": {"history": entry},
            },
            session=session,
        )
        return result.modified_count == 1

    async def state(self, customer_id: str, channel: Channel, purpose: Purpose) -> ConsentState:
        overview = await self.overview(customer_id)
        return next(
            state
            for state in overview.consents
            if state.channel is channel and state.purpose is purpose
        )

    async def export(self, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
        cursor = self.consents.find({"_id": {"$in": list(customer_ids)}})
        return [
            _overview(document["_id"], document).model_dump(mode="json")
            async for document in cursor
        ]

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        """Keep the decisions and their times; drop who made them and where."""
        cursor = self.consents.find({"_id": {"$in": list(customer_ids)}}, session=session)
        async for document in cursor:
            for entry in document.get("history", []):
                entry["source"] = None
                entry["changed_by"] = None
            for purposes in document.get("current", {}).values():
                for state in purposes.values():
                    state["source"] = None
            await self.consents.replace_one({"_id": document["_id"]}, document, session=session)


def _overview(customer_id: str, document: dict[str, Any]) -> ConsentOverview:
    current = document.get("current", {})
    states = [
        ConsentState(channel=channel, purpose=purpose, **current.get(channel, {}).get(purpose, {}))
        for channel in Channel
        for purpose in Purpose
    ]
    history = [ConsentChange.model_validate(entry) for entry in document.get("history", [])]
    return ConsentOverview(customer_id=customer_id, consents=states, history=history[::-1])
