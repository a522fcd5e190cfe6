"""MongoDB adapter of the profiles service (pymongo's AsyncMongoClient).

``customers`` holds one document per profile; ``identities`` maps each e-mail, phone and
external id of a live profile to its owner. The ``_id`` of an identity is the key, so the
database itself refuses a second live profile with the same e-mail or phone, even under
concurrent writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.profiles.domain import Customer
from services.profiles.identity import match_keys
from shared.mongo import Database, Session

DUPLICATE_KEY = 11000


class CustomerStore:
    def __init__(self, db: Database) -> None:
        self.customers = db["customers"]
        self.identities = db["identities"]

    async def ensure_indexes(self) -> None:
        await self.customers.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.customers.create_index([("updated_at", DESCENDING), ("_id", DESCENDING)])
        await self.customers.create_index("emails")
        await self.customers.create_index("phones")
        await self.customers.create_index("tags")
        await self.customers.create_index("match_keys")
        await self.identities.create_index("customer_id")

    async def get(self, customer_id: str, session: Session | None = None) -> Customer | None:
        document = await self.customers.find_one({"_id": customer_id}, session=session)
        return None if document is None else _customer(document)

    async def insert(self, customer: Customer, session: Session) -> None:
        await self.customers.insert_one(_document(customer), session=session)
        await self._claim(customer.id, customer.identity_keys(), session)

    async def replace(self, before: Customer, after: Customer, session: Session) -> bool:
        """Store ``after`` if the stored version is still ``before``'s; False otherwise."""
        result = await self.customers.replace_one(
            {"_id": before.id, "version": before.version}, _document(after), session=session
        )
        if result.matched_count == 0:
            return False
        old_keys, new_keys = before.identity_keys(), after.identity_keys()
        await self.identities.delete_many(
            {"_id": {"$in": sorted(old_keys - new_keys)}, "customer_id": before.id},
            session=session,
        )
        await self._claim(after.id, new_keys - old_keys, session)
        return True

    async def owner_of(self, keys: Iterable[str]) -> tuple[str, str] | None:
        """The first of ``keys`` owned by a live profile, with its owner."""
        document = await self.identities.find_one({"_id": {"$in": sorted(keys)}})
        return None if document is None else (document["_id"], document["customer_id"])

    async def _claim(self, customer_id: str, keys: Iterable[str], session: Session) -> None:
        documents = [{"_id": key, "customer_id": customer_id} for key in sorted(keys)]
        if not documents:
            return
        try:
            await self.identities.insert_many(documents, session=session)
        except BulkWriteError as error:
            clashes = [e for e in error.details["writeErrors"] if e["code"] == DUPLICATE_KEY]
            if clashes:
                raise DuplicateKeyError(clashes[0]["errmsg"], DUPLICATE_KEY) from error
            raise

    async def page(
        self,
        filters: dict[str, Any],
        after: tuple[Any, str] | None,
        limit: int,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[Customer]:
        """Keyset pagination on (``sort_by``, _id): pages never shift or repeat rows."""
        query = filters
        if after is not None:
            value, customer_id = after
            beyond = "$lt" if descending else "$gt"
            keyset = {
                "$or": [
                    {sort_by: {beyond: value}},
                    {sort_by: value, "_id": {beyond: customer_id}},
                ]
            }
            query = {"$and": [filters, keyset]}
        direction = DESCENDING if descending else ASCENDING
        cursor = (
            self.customers.find(query).sort([(sort_by, direction), ("_id", direction)]).limit(limit)
        )
        return [_customer(document) async for document in cursor]

    async def sharing_match_keys(self, customer: Customer, limit: int = 50) -> list[Customer]:
        """Live profiles other than ``customer`` that share one of its match keys."""
        cursor = self.customers.find(
            {
                "match_keys": {"$in": match_keys(customer)},
                "_id": {"$ne": customer.id},
                "status": "active",
            }
        ).limit(limit)
        return [_customer(document) async for document in cursor]

    async def count(self) -> int:
        return await self.customers.count_documents({})


def _document(customer: Customer) -> dict[str, Any]:
    document = customer.model_dump(mode="python", exclude={"id"})
    document["match_keys"] = match_keys(customer)
    if customer.birthday is not None:
        document["birthday"] = customer.birthday.isoformat()  # BSON has no date-only type
    if customer.address is not None:
        document["address"] = customer.address.model_dump()
    document["_id"] = customer.id
    return document


def _customer(document: dict[str, Any]) -> Customer:
    return Customer.model_validate({**document, "id": document["_id"]})
