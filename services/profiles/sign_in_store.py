"""MongoDB adapter of the portal's passwordless sign-in: the links sent, and how many.

``sign_in_links`` holds one document per link sent, keyed by the SHA-256 digest of its
token: the token itself is never stored, so a copy of the database signs nobody in. A
link is used by a conditional update (``used_at`` still null), so of two redemptions at
once exactly one wins. Links are removed a day after they expire (a TTL index); until
then an expired link is still recognised and answered as expired rather than unknown.

``sign_in_throttle`` counts the links sent per e-mail address (keyed by a digest of the
address, not the address) over a sliding window; a document expires when its window has
passed since the last link.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING

from services.profiles.sign_in_domain import SignInLink
from shared.mongo import Database, Session

# An expired link is still told apart from an unknown one for this long.
LINK_RETENTION = timedelta(days=1)


class ThrottleRace(Exception):
    """Another request for the same address counted at the same time: count again."""


class SignInStore:
    def __init__(self, db: Database) -> None:
        self.links = db["sign_in_links"]
        self.throttle = db["sign_in_throttle"]

    async def ensure_indexes(self) -> None:
        await self.links.create_index(
            "expires_at",
            name="expires_at_ttl",
            expireAfterSeconds=int(LINK_RETENTION.total_seconds()),
        )
        await self.links.create_index([("customer_id", ASCENDING), ("used_at", ASCENDING)])
        await self.throttle.create_index("expires_at", name="expires_at_ttl", expireAfterSeconds=0)

    async def insert(self, session: Session, link: SignInLink) -> None:
        await self.links.insert_one(_document(link), session=session)

    async def get(self, digest: str, session: Session | None = None) -> SignInLink | None:
        document = await self.links.find_one({"_id": digest}, session=session)
        return None if document is None else _link(document)

    async def use(self, session: Session, digest: str, now: datetime) -> bool:
        """Mark the link used unless it already is (or was withdrawn); True if this did."""
        result = await self.links.update_one(
            {"_id": digest, "used_at": None, "withdrawn_at": None},
            {"$set": {"used_at": now}},
            session=session,
        )
        return result.modified_count == 1

    async def withdraw_unused(self, customer_id: str, now: datetime) -> int:
        """Withdraw the customer's links that are neither used nor expired."""
        result = await self.links.update_many(
            {
                "customer_id": customer_id,
                "used_at": None,
                "withdrawn_at": None,
                "expires_at": {"$gt": now},
            },
            {"$set": {"withdrawn_at": now}},
        )
        return result.modified_count

    async def admit(
        self, session: Session, address_key: str, now: datetime, limit: int, window: timedelta
    ) -> bool:
        """Count one more link for the address unless ``limit`` were sent within ``window``
        before ``now``; True when it may go. Raises :class:`ThrottleRace` (or a duplicate
        key) when a concurrent request counted meanwhile: run the transaction again."""
        document = await self.throttle.find_one({"_id": address_key}, session=session)
        since = now - window
        recent = [sent for sent in (document or {}).get("sent", []) if sent > since]
        if len(recent) >= limit:
            return False
        version = int((document or {}).get("version", 0))
        counted = {"sent": [*recent, now], "expires_at": now + window, "version": version + 1}
        if document is None:
            await self.throttle.insert_one({"_id": address_key, **counted}, session=session)
            return True
        result = await self.throttle.update_one(
            {"_id": address_key, "version": version}, {"$set": counted}, session=session
        )
        if result.matched_count == 0:
            raise ThrottleRace(address_key)
        return True


def _document(link: SignInLink) -> dict[str, Any]:
    return {
        "_id": link.id,
        "customer_id": link.customer_id,
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "used_at": link.used_at,
        "withdrawn_at": link.withdrawn_at,
    }


def _link(document: dict[str, Any]) -> SignInLink:
    return SignInLink(
        id=document["_id"],
        customer_id=document["customer_id"],
        created_at=document["created_at"],
        expires_at=document["expires_at"],
        used_at=document.get("used_at"),
        withdrawn_at=document.get("withdrawn_at"),
    )
