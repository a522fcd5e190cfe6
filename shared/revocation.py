"""Signed-out customer tokens: each service's own deny-list, kept from an event.

Tokens are verified locally (:mod:`shared.auth`), so a service learns that a customer
signed out the way it learns anything: from ``crm.customer.signed_out`` on
``crm.customers``. Profiles stores the revocation when the customer signs out (and
announces it in the same transaction); complaints, notifications and analytics store
what they hear through :data:`routes`, bound in their bootstrap. Each keeps it in its own
``revoked_tokens`` collection (``_id`` the token's ``jti``, ``customer_id``,
``expires_at``); a TTL index removes an entry once its token has expired, since the
signature check refuses it from then on.

A request costs at most one lookup by ``_id``: :class:`RevocationStore` caches a revoked
token until it expires, and a token found not revoked for :data:`NEGATIVE_TTL` seconds.
So a service that stored the revocation itself refuses the token at once (the store
remembers what it wrote); another replica of that service, which may have just looked the
token up, refuses it at most :data:`NEGATIVE_TTL` seconds later. Tokens without a ``jti``
(minted before revocation existed) cannot be named and work until they expire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.events import Event
from shared.events.customers import CustomerSignedOut
from shared.mongo import Database
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

REVOKED_TOKENS = "revoked_tokens"
# How long (seconds) a token found not revoked is believed so without asking again: how
# late a service may notice a revocation another process (its consumer on another
# replica) stored.
NEGATIVE_TTL = 2.0
# At most this many tokens are remembered each way; the oldest are forgotten first.
CACHE_SIZE = 10_000


class RevocationStore:
    """The service's ``revoked_tokens``, with an in-process cache in front."""

    def __init__(
        self,
        db: Database,
        *,
        negative_ttl: float = NEGATIVE_TTL,
        cache_size: int = CACHE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collection = db[REVOKED_TOKENS]
        self.negative_ttl = negative_ttl
        self.cache_size = cache_size
        self._monotonic = monotonic
        self._revoked: dict[str, datetime] = {}  # jti: the token's expiry
        self._clear: dict[str, float] = {}  # jti: believed not revoked until (monotonic)
        self.lookups = 0  # round trips made, for tests

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(
            "expires_at", name="expires_at_ttl", expireAfterSeconds=0
        )

    async def is_revoked(self, token_id: str) -> bool:
        """Whether the token ``token_id`` was signed out: at most one lookup by ``_id``."""
        expires_at = self._revoked.get(token_id)
        if expires_at is not None:
            if expires_at > datetime.now(UTC):
                return True
            del self._revoked[token_id]  # expired: the signature check refuses it now
        now = self._monotonic()
        believed_until = self._clear.get(token_id)
        if believed_until is not None and believed_until > now:
            return False
        self.lookups += 1
        document = await self.collection.find_one({"_id": token_id}, {"expires_at": 1})
        if document is not None:
            self.remember(token_id, _aware(document["expires_at"]))
            return True
        self._clear.pop(token_id, None)
        self._clear[token_id] = now + self.negative_ttl
        _bound(self._clear, self.cache_size)
        return False

    def remember(self, token_id: str, expires_at: datetime) -> None:
        """Refuse ``token_id`` from now on in this process (once its revocation is stored)."""
        self._clear.pop(token_id, None)
        self._revoked[token_id] = expires_at
        _bound(self._revoked, self.cache_size)

    def record(self, uow: UnitOfWork, signed_out: CustomerSignedOut) -> None:
        """Store the revocation with the unit of work (idempotent: keyed by the jti) and
        refuse the token in this process once it committed: profiles at sign-out, the
        other services when they hear of it."""
        uow.put(self.collection, _document(signed_out))
        uow.after_commit(lambda: self.remember(signed_out.token_id, signed_out.expires_at))


def _document(signed_out: CustomerSignedOut) -> dict[str, Any]:
    return {
        "_id": signed_out.token_id,
        "customer_id": signed_out.customer_id,
        "expires_at": signed_out.expires_at,
        "signed_out_at": signed_out.signed_out_at,
    }


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bound(cache: dict[str, Any], size: int) -> None:
    while len(cache) > size:
        del cache[next(iter(cache))]


routes: Routes[RevocationStore] = Routes()
"""What a service that consumes ``crm.customers`` binds to its store:
``runtime.handle(revocation.routes.bind(runtime.revocations))``."""


@routes.on(CustomerSignedOut)
async def signed_out(
    store: RevocationStore, event: Event[CustomerSignedOut], uow: UnitOfWork
) -> None:
    store.record(uow, event.payload)
