"""The version of what a search index is built from (the help centre's articles, the
community's questions): one counter document, ``$inc``-ed in the transaction of every
write search should see, and read before a search to know whether the index in the
process is still current (see ``search.py``)."""

from __future__ import annotations

import contextlib

from pymongo.errors import DuplicateKeyError

from shared.mongo import Collection, Session


class CatalogueVersion:
    def __init__(self, counters: Collection, name: str) -> None:
        self.counters = counters
        self.name = name

    async def ensure(self) -> None:
        """The counter exists before the first write, so writes only ever ``$inc`` it."""
        with contextlib.suppress(DuplicateKeyError):  # another replica was first
            await self.counters.update_one(
                {"_id": self.name}, {"$setOnInsert": {"version": 0}}, upsert=True
            )

    async def bump(self, session: Session) -> None:
        """Say that what search finds changed (in the transaction that changed it)."""
        await self.counters.update_one(
            {"_id": self.name}, {"$inc": {"version": 1}}, upsert=True, session=session
        )

    async def current(self) -> int:
        document = await self.counters.find_one({"_id": self.name})
        return 0 if document is None else int(document["version"])
