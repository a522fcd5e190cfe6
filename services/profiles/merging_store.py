"""MongoDB adapters of merging: the record of each merge (what an undo needs), and the
documents of a customer that follow it through a merge (re-keyed, or for consents joined
into one document) and back on an undo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.profiles.domain import Customer
from services.profiles.merging_domain import Gains
from shared.mongo import Collection, Database, Document, Session


class MergeRecords:
    """One document per merge in ``merges``: who was merged into whom, the source as it
    was, what the target gained and which documents moved, and whether it was undone."""

    def __init__(self, db: Database) -> None:
        self.merges = db["merges"]

    async def ensure_indexes(self) -> None:
        await self.merges.create_index("source_id")

    async def add(
        self,
        session: Session,
        *,
        merge_id: str,
        source: Customer,
        target: Customer,
        gains: Gains,
        moved: dict[str, list[str]],
        merged_at: datetime,
    ) -> None:
        await self.merges.insert_one(
            {
                "_id": merge_id,
                "source_id": source.id,
                "target_id": target.id,
                "source_before": source.model_dump(mode="json"),
                "gains": gains.model_dump(mode="json"),
                "moved": moved,
                "merged_at": merged_at,
                "undone_at": None,
            },
            session=session,
        )

    async def get(self, merge_id: str) -> Document | None:
        return await self.merges.find_one({"_id": merge_id})

    async def mark_undone(self, merge_id: str, undone_at: datetime, session: Session) -> None:
        await self.merges.update_one(
            {"_id": merge_id}, {"$set": {"undone_at": undone_at}}, session=session
        )


@dataclass
class KeyedDocuments:
    """Documents with a ``customer_id`` field (ledger, contracts, interactions, timeline)."""

    name: str
    collection: Collection

    async def move(self, source: str, target: str, session: Session) -> list[str]:
        cursor = self.collection.find({"customer_id": source}, {"_id": 1}, session=session)
        moved = [document["_id"] async for document in cursor]
        if moved:
            await self.collection.update_many(
                {"_id": {"$in": moved}}, {"$set": {"customer_id": target}}, session=session
            )
        return moved

    async def move_back(self, moved: list[str], source: str, target: str, session: Session) -> None:
        if moved:
            await self.collection.update_many(
                {"_id": {"$in": moved}, "customer_id": target},
                {"$set": {"customer_id": source}},
                session=session,
            )


@dataclass
class ConsentDocuments:
    """Consents live in one document per customer: histories join, the latest wins."""

    name: str
    collection: Collection

    async def move(self, source: str, target: str, session: Session) -> list[str]:
        theirs = await self.collection.find_one({"_id": source}, session=session)
        if theirs is None:
            return []
        ours = await self.collection.find_one({"_id": target}, session=session) or {"_id": target}
        moved = [entry["id"] for entry in theirs.get("history", [])]
        history = sorted(
            [*ours.get("history", []), *theirs.get("history", [])],
            key=lambda entry: entry["changed_at"],
        )
        await self.collection.replace_one(
            {"_id": target}, _with_history(target, history), upsert=True, session=session
        )
        await self.collection.delete_one({"_id": source}, session=session)
        # Keep the source's own document to give back on undo.
        await self.collection.database["merged_consents"].replace_one(
            {"_id": source}, {**theirs, "_id": source}, upsert=True, session=session
        )
        return moved

    async def move_back(self, moved: list[str], source: str, target: str, session: Session) -> None:
        if not moved:
            return
        ours = await self.collection.find_one({"_id": target}, session=session) or {}
        kept = [entry for entry in ours.get("history", []) if entry["id"] not in set(moved)]
        await self.collection.replace_one(
            {"_id": target}, _with_history(target, kept), upsert=True, session=session
        )
        saved = self.collection.database["merged_consents"]
        theirs = await saved.find_one({"_id": source}, session=session)
        if theirs is not None:
            await self.collection.replace_one({"_id": source}, theirs, upsert=True, session=session)
            await saved.delete_one({"_id": source}, session=session)


def _with_history(customer_id: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """A consents document whose current decisions are the latest of its history."""
    current: dict[str, dict[str, Any]] = {}
    for entry in history:  # oldest first: later decisions overwrite earlier ones
        current.setdefault(entry["channel"], {})[entry["purpose"]] = {
            "granted": entry["granted"],
            "source": entry.get("source"),
            "changed_at": entry["changed_at"],
        }
    return {"_id": customer_id, "current": current, "history": history}
