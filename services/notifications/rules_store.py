"""MongoDB adapter of the rules: the overrides of their defaults made through the API, one
document per rule in ``rules`` (the rules themselves are ``rules.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.mongo import Database, Session


class RuleStore:
    """Overrides of the rules' defaults made through the API."""

    def __init__(self, db: Database) -> None:
        self.rules = db["rules"]

    async def overrides(self, session: Session | None = None) -> dict[str, dict[str, Any]]:
        cursor = self.rules.find({}, session=session)
        return {
            document["_id"]: {k: v for k, v in document.items() if k != "_id"}
            async for document in cursor
        }

    async def put(self, name: str, override: Mapping[str, Any]) -> None:
        await self.rules.update_one({"_id": name}, {"$set": dict(override)}, upsert=True)
