"""A named lease in MongoDB: one holder at a time among a service's replicas (the outbox
relay, the analytics re-judge), lapsing ``ttl`` after its last renewal if the holder dies."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.mongo import Collection


class Lease:
    """``acquire`` takes the lease or renews it; ``release`` hands it over at once.

    With ``lazy_renewal`` a holder writes only once half the term has passed, for loops
    that ask every fraction of a second.
    """

    def __init__(
        self,
        collection: Collection,
        name: str,
        owner: str,
        ttl: timedelta,
        *,
        lazy_renewal: bool = False,
    ) -> None:
        self.collection = collection
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.lazy_renewal = lazy_renewal
        self._held_until: datetime | None = None

    async def acquire(self) -> bool:
        now = datetime.now(UTC)
        if (
            self.lazy_renewal
            and self._held_until is not None
            and now < self._held_until - self.ttl / 2
        ):
            return True
        try:
            lease = await self.collection.find_one_and_update(
                {"_id": self.name, "$or": [{"owner": self.owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "expires_at": now + self.ttl}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # another holder's lease is still live
            self._held_until = None
            return False
        held = lease is not None and lease.get("owner") == self.owner
        self._held_until = now + self.ttl if held else None
        return held

    async def release(self) -> None:
        self._held_until = None
        with contextlib.suppress(PyMongoError):
            await self.collection.delete_one({"_id": self.name, "owner": self.owner})
