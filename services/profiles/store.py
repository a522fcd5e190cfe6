"""MongoDB adapter of the profiles service (pymongo's AsyncMongoClient).

``customers`` holds one document per profile; ``identities`` maps each e-mail, phone and
external id of a live profile to its owner. The ``_id`` of an identity is the key, so the
database itself refuses a second live profile with the same e-mail or phone, even under
concurrent writes.

The session methods serve the profile use cases; the unit-of-work ones (``load``, ``of``,
``load_owners``, ``owner``, ``add``) serve the purchase path, which reads what a batch
touches in one query per collection and sees the profiles created earlier in the batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.profiles.domain import Customer, CustomerQuery, CustomerStatus, link_of_profile
from services.profiles.identity import match_keys
from shared.identity import MAX_MERGE_HOPS, Link
from shared.mongo import Database, Session
from shared.unit_of_work import UnitOfWork

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

    # In a unit of work

    async def load(self, uow: UnitOfWork, customer_ids: Iterable[str]) -> list[str]:
        """Read these profiles, and those they were merged into, into ``uow``.

        One query, and one more per step of a merge chain only when some were merged (a
        chain is followed as ``shared.identity.follow`` does, all chains a step at a time).
        Returns the ids of the live (active) profiles found. Each profile is looked at in
        place (its status and survivor), not made into a model: a batch loads hundreds.
        """
        live: list[str] = []
        seen: set[str] = set()
        wanted = list(dict.fromkeys(customer_ids))
        for _ in range(MAX_MERGE_HOPS):
            wanted = [customer_id for customer_id in wanted if customer_id not in seen]
            if not wanted:
                break
            seen.update(wanted)
            await uow.load(self.customers, wanted)
            survivors: list[str] = []
            for customer_id in wanted:
                document = await uow.view(self.customers, customer_id)
                if document is None:
                    continue
                status = document.get("status", CustomerStatus.ACTIVE)
                if status == CustomerStatus.ACTIVE:
                    live.append(customer_id)
                if survivor := link_of_profile(status, document.get("merged_into")).merged_into:
                    survivors.append(survivor)
            wanted = survivors
        return live

    async def of(self, uow: UnitOfWork, customer_id: str) -> Customer | None:
        """The profile as ``uow`` sees it (created earlier in it, or loaded)."""
        document = await uow.get(self.customers, customer_id)
        return None if document is None else _customer(document)

    async def link(self, uow: UnitOfWork, customer_id: str) -> Link | None:
        """The profile's merge link as ``uow`` sees it (``shared.identity``); None when
        there is no such profile."""
        document = await uow.view(self.customers, customer_id)  # (no model: on every event)
        if document is None:
            return None
        return link_of_profile(
            document.get("status", CustomerStatus.ACTIVE), document.get("merged_into")
        )

    async def load_owners(self, uow: UnitOfWork, keys: Iterable[str]) -> list[str]:
        """Read who owns these identity keys into ``uow``; returns the owners found."""
        keys = list(dict.fromkeys(keys))
        await uow.load(self.identities, keys)
        return [owner for key in keys if (owner := await self.owner(uow, key)) is not None]

    async def owner(self, uow: UnitOfWork, key: str) -> str | None:
        """The live profile that owns an identity key (``email:...``, ``external:...``)."""
        document = await uow.get(self.identities, key)
        return None if document is None else str(document["customer_id"])

    def add(self, uow: UnitOfWork, customer: Customer) -> None:
        """Store a new profile and claim its identity keys when ``uow`` commits; a key
        another profile claimed meanwhile fails the commit (a duplicate key)."""
        uow.insert(self.customers, _document(customer))
        for claim in _claims(customer.id, customer.identity_keys()):
            uow.insert(self.identities, claim)

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

    async def release_identities(self, customer_ids: Sequence[str], session: Session) -> None:
        """Let go of every identity key these profiles still hold (an erasure)."""
        await self.identities.delete_many(
            {"customer_id": {"$in": list(customer_ids)}}, session=session
        )

    async def owner_of(self, keys: Iterable[str]) -> tuple[str, str] | None:
        """The first of ``keys`` owned by a live profile, with its owner."""
        document = await self.identities.find_one({"_id": {"$in": sorted(keys)}})
        return None if document is None else (document["_id"], document["customer_id"])

    async def _claim(self, customer_id: str, keys: Iterable[str], session: Session) -> None:
        documents = _claims(customer_id, keys)
        if not documents:
            return
        try:
            await self.identities.insert_many(documents, session=session)
        except BulkWriteError as error:
            clashes = [e for e in error.details["writeErrors"] if e["code"] == DUPLICATE_KEY]
            if clashes:
                raise DuplicateKeyError(clashes[0]["errmsg"], DUPLICATE_KEY) from error
            raise

    async def search(
        self,
        query: CustomerQuery,
        after: tuple[Any, str] | None,
        limit: int,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[Customer]:
        """Live profiles matching ``query``, keyset-paginated on (``sort_by``, _id): pages
        never shift or repeat rows."""
        clauses = _criteria(query)
        if after is not None:
            value, customer_id = after
            beyond = "$lt" if descending else "$gt"
            clauses.append(
                {
                    "$or": [
                        {sort_by: {beyond: value}},
                        {sort_by: value, "_id": {beyond: customer_id}},
                    ]
                }
            )
        direction = DESCENDING if descending else ASCENDING
        cursor = (
            self.customers.find({"$and": clauses})
            .sort([(sort_by, direction), ("_id", direction)])
            .limit(limit)
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


def _claims(customer_id: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    return [{"_id": key, "customer_id": customer_id} for key in sorted(keys)]


def _customer(document: dict[str, Any]) -> Customer:
    return Customer.model_validate({**document, "id": document["_id"]})


def _criteria(query: CustomerQuery) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = [{"status": CustomerStatus.ACTIVE.value}]
    if query.email:
        clauses.append({"emails": query.email})
    if query.phone:
        clauses.append({"phones": query.phone})
    if query.tag:
        clauses.append({"tags": query.tag})
    if query.external_id:
        system, value = query.external_id
        clauses.append({f"external_ids.{system}": value})
    if query.name_prefix:
        pattern = {"$regex": f"^{re.escape(query.name_prefix)}", "$options": "i"}
        names = ("given_name", "family_name", "preferred_name")
        clauses.append({"$or": [{name: pattern} for name in names]})
    if query.created_after:
        clauses.append({"created_at": {"$gte": query.created_after}})
    if query.created_before:
        clauses.append({"created_at": {"$lt": query.created_before}})
    return clauses
