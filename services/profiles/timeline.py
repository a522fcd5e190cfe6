"""The customer's timeline: one entry per thing that happened, newest first.

Every use case that changes something about a customer appends its entry in the same
transaction as the change, and the worker appends the complaint and notification events
it consumes, so the timeline is complete without asking any other service.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pymongo import DESCENDING

from shared.mongo import Database, Session


class EntryKind(StrEnum):
    PROFILE = "profile"
    PURCHASE = "purchase"
    RETURN = "return"
    INTERACTION = "interaction"
    CONSENT = "consent"
    CONTRACT = "contract"
    COMPLAINT = "complaint"
    NOTIFICATION = "notification"
    MERGE = "merge"


class TimelineStore:
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
        await self.entries.insert_one(
            {
                "_id": entry_id,
                "customer_id": customer_id,
                "kind": kind.value,
                "occurred_at": occurred_at,
                "summary": summary,
                "details": details or {},
            },
            session=session,
        )
