"""MongoDB adapters of the data rights: the profiles merged into a customer, and the
generic readers and erasers of the collections that have no store of their own (the
ledger's, the figures', the contracts')."""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

from services.profiles.domain import CustomerStatus
from services.profiles.store import CustomerStore
from shared.identity import MAX_MERGE_HOPS
from shared.identity import merged_sources as sources_of
from shared.mongo import Session


async def merged_sources(
    store: CustomerStore, customer_id: str, session: Session | None = None
) -> list[str]:
    """Ids of the profiles merged into ``customer_id``, directly or through others.

    All of them (export and erasure must reach every one: no limit on how many), down to
    ``MAX_MERGE_HOPS`` levels (one query a level).
    """
    levels = 0

    async def merged_into(ids: list[str]) -> list[str]:
        nonlocal levels
        if levels == MAX_MERGE_HOPS:
            return []  # as deep as a merge chain may go: read no further
        levels += 1
        cursor = store.customers.find(
            {"merged_into": {"$in": ids}, "status": CustomerStatus.MERGED.value},
            {"_id": 1},
            session=session,
        )
        return [document["_id"] async for document in cursor]

    return await sources_of(customer_id, merged_into, limit=sys.maxsize)


class CollectionSection:
    """Another part of the service's data read generically: a collection's documents
    about the customer (``key`` holds the customer id), whether or not it exists yet."""

    def __init__(self, section: str, collection: Any, key: str = "customer_id") -> None:
        self.section = section
        self.collection = collection
        self.key = key

    async def export(self, customer_ids: Sequence[str]) -> list[Any]:
        cursor = self.collection.find({self.key: {"$in": list(customer_ids)}}).sort("_id", 1)
        return [plain(document) async for document in cursor]


class FieldEraser:
    """Erasure in another part of the service's data: unset the fields that name the
    person (e.g. how a purchase named its buyer) and keep the rest (amounts, items)."""

    def __init__(self, collection: Any, fields: Sequence[str], key: str = "customer_id") -> None:
        self.collection = collection
        self.fields = list(fields)
        self.key = key

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        await self.collection.update_many(
            {self.key: {"$in": list(customer_ids)}},
            {"$unset": dict.fromkeys(self.fields, "")},
            session=session,
        )


def plain(value: Any) -> Any:
    """A stored value as JSON: decimals as strings, times in ISO 8601, bytes in base64."""
    if isinstance(value, dict):
        return {str(name): plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Decimal128):
        return format(value.to_decimal(), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ObjectId | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
