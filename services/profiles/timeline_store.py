"""MongoDB adapter of the customer's timeline: one document per entry in ``timeline``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import DESCENDING

from services.profiles.timeline_domain import ERASED, EntryKind, Happening, TimelineEntry
from shared.mongo import Database, Session
from shared.unit_of_work import UnitOfWork


def newer_than_cursor(after: tuple[datetime, str] | None) -> dict[str, Any]:
    """The filter for keyset pagination on (occurred_at, _id), newest first."""
    if after is None:
        return {}
    occurred_at, entry_id = after
    return {
        "$or": [
            {"occurred_at": {"$lt": occurred_at}},
            {"occurred_at": occurred_at, "_id": {"$lt": entry_id}},
        ]
    }


NEWEST_FIRST = [("occurred_at", DESCENDING), ("_id", DESCENDING)]


class TimelineStore:
    section = "timeline"

    def __init__(self, db: Database) -> None:
        self.entries = db["timeline"]

    async def ensure_indexes(self) -> None:
        await self.entries.create_index(
            [("customer_id", DESCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)]
        )

    async def append(
        self,
        session: Session,
        *,
        entry_id: str,
        customer_id: str,
        kind: EntryKind,
        occurred_at: datetime,
        summary: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an entry; ``entry_id`` (e.g. the event id) keeps it unique."""
        happening = Happening(kind, occurred_at, summary, details or {})
        await self.entries.insert_one(_document(entry_id, customer_id, happening), session=session)

    def add(
        self, uow: UnitOfWork, *, entry_id: str, customer_id: str, happening: Happening
    ) -> None:
        """Add an entry when ``uow`` commits. ``entry_id`` is the id of the event or ledger
        entry it records, applied once (the consumer's markers, the ledger's own ids), so
        the entry is inserted: an insert costs the store a third of an upsert."""
        uow.insert(self.entries, _document(entry_id, customer_id, happening))

    async def page(
        self,
        customer_id: str,
        *,
        kinds: Sequence[EntryKind] = (),
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[TimelineEntry]:
        """Newest first, keyset-paginated on (occurred_at, _id) so pages never shift."""
        query: dict[str, Any] = {"customer_id": customer_id, **newer_than_cursor(after)}
        if kinds:
            query["kind"] = {"$in": [kind.value for kind in kinds]}
        cursor = self.entries.find(query).sort(NEWEST_FIRST).limit(limit)
        return [_entry(document) async for document in cursor]

    async def export(self, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
        cursor = self.entries.find({"customer_id": {"$in": list(customer_ids)}}).sort(NEWEST_FIRST)
        return [_entry(document).model_dump(mode="json") async for document in cursor]

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        """Keep what happened and when; drop the words that could describe the person."""
        await self.entries.update_many(
            {"customer_id": {"$in": list(customer_ids)}},
            {"$set": {"summary": ERASED, "details": {}}},
            session=session,
        )


def _document(entry_id: str, customer_id: str, happening: Happening) -> dict[str, Any]:
    return {
        "_id": entry_id,
        "customer_id": customer_id,
        "kind": happening.kind.value,
        "occurred_at": happening.occurred_at,
        "summary": happening.summary,
        "details": happening.details,
    }


def _entry(document: dict[str, Any]) -> TimelineEntry:
    return TimelineEntry.model_validate({**document, "id": document["_id"]})
