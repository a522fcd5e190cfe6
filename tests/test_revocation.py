"""The revocation store: at most one indexed lookup per request, a revoked token
remembered until it expires, a token found not revoked believed so for a short while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.events.customers import CustomerSignedOut
from shared.mongo import Database
from shared.outbox import Outbox
from shared.revocation import RevocationStore
from shared.topics import TopicNames
from shared.unit_of_work import UnitOfWork, UnitsOfWork


async def _record(store: RevocationStore, uow: UnitOfWork, signed_out: CustomerSignedOut) -> None:
    store.record(uow, signed_out)


class Ticking:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_lookups_are_cached_and_revocations_expire(db: Database) -> None:
    clock = Ticking()
    store = RevocationStore(db, negative_ttl=2.0, monotonic=clock)
    await store.ensure_indexes()
    other = RevocationStore(db, negative_ttl=2.0, monotonic=clock)  # another replica

    assert not await other.is_revoked("t-1")
    assert not await other.is_revoked("t-1")
    assert other.lookups == 1  # believed not revoked for the negative TTL

    signed_out = CustomerSignedOut(
        customer_id="c-1",
        token_id="t-1",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        signed_out_at=datetime.now(UTC),
    )
    units = UnitsOfWork(db.client, Outbox(db, TopicNames("test.")))
    await units.run(lambda uow: _record(store, uow, signed_out))  # remembered once committed
    assert await store.is_revoked("t-1")
    assert store.lookups == 0  # the writer knows at once

    assert not await other.is_revoked("t-1")  # still within the negative TTL
    clock.now += 2.5
    assert await other.is_revoked("t-1")
    assert await other.is_revoked("t-1")
    assert other.lookups == 2  # then remembered until the token expires

    expired = RevocationStore(db, monotonic=clock)
    expired.remember("t-2", datetime.now(UTC) - timedelta(seconds=1))
    assert not await expired.is_revoked("t-2")  # expired tokens are refused by signature

    ttl = (await db["revoked_tokens"].index_information())["expires_at_ttl"]
    assert ttl["expireAfterSeconds"] == 0
