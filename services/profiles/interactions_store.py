"""MongoDB adapter of interactions: one document per interaction in ``interactions``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.profiles.interactions_domain import Interaction
from services.profiles.timeline_domain import ERASED
from services.profiles.timeline_store import NEWEST_FIRST, newer_than_cursor
from shared.mongo import Database, Session


class InteractionStore:
    section = "interactions"

    def __init__(self, db: Database) -> None:
        self.interactions = db["interactions"]

    async def ensure_indexes(self) -> None:
        await self.interactions.create_index([("customer_id", 1), ("occurred_at", -1), ("_id", -1)])

    async def insert(self, interaction: Interaction, session: Session) -> None:
        document = interaction.model_dump(exclude={"id"})
        document["kind"] = interaction.kind.value
        document["direction"] = interaction.direction.value
        await self.interactions.insert_one({"_id": interaction.id, **document}, session=session)

    async def get(self, customer_id: str, interaction_id: str) -> Interaction | None:
        document = await self.interactions.find_one(
            {"_id": interaction_id, "customer_id": customer_id}
        )
        return None if document is None else _interaction(document)

    async def page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Interaction]:
        """Newest first, keyset-paginated on (occurred_at, _id)."""
        query = {"customer_id": customer_id, **newer_than_cursor(after)}
        cursor = self.interactions.find(query).sort(NEWEST_FIRST).limit(limit)
        return [_interaction(document) async for document in cursor]

    async def export(self, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
        query = {"customer_id": {"$in": list(customer_ids)}}
        cursor = self.interactions.find(query).sort(NEWEST_FIRST)
        return [_interaction(document).model_dump(mode="json") async for document in cursor]

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        """Keep that a contact happened (kind, direction, when, who for the company)."""
        await self.interactions.update_many(
            {"customer_id": {"$in": list(customer_ids)}},
            {"$set": {"summary": ERASED, "channel": None}},
            session=session,
        )


def _interaction(document: dict[str, Any]) -> Interaction:
    return Interaction.model_validate({**document, "id": document["_id"]})
