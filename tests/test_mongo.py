"""shared.mongo: reads by key send as many ``$in`` queries as the store wants, one by default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from shared.mongo import find_in, in_chunk, set_in_chunk, update_in
from shared.runtime import ServiceRuntime
from shared.topics import PURCHASES, TopicNames
from tests.service_harness import harness_settings
from tests.support.commands import counted_client


@pytest.fixture
def restored_in_chunk() -> Iterator[None]:
    before = in_chunk()
    try:
        yield
    finally:
        set_in_chunk(before)


@pytest.mark.usefixtures("restored_in_chunk")
async def test_a_read_by_many_keys_is_one_query_unless_the_store_asks_for_fewer_keys(
    mongodb_uri: str, test_id: str
) -> None:
    async with counted_client(mongodb_uri) as (client, counter):
        collection = client[f"test_{test_id}"]["things"]
        try:
            await collection.insert_many([{"_id": n, "seen": False} for n in range(120)])
            keys = [*range(120), 500, 3]  # (one missing, one named twice)
            by_chunk: dict[int, tuple[list[str], list[tuple[str, int]], int, int]] = {}
            for size in (0, 50):
                set_in_chunk(size)
                counter.clear()
                found = await find_in(collection, "_id", keys, {"seen": False})
                modified = await update_in(collection, "_id", keys, {"$set": {"seen": True}})
                await collection.update_many({}, {"$set": {"seen": False}})
                by_chunk[size] = (
                    counter.finds(),
                    counter.written("things")[:-1],
                    len(found),
                    modified,
                )
        finally:
            await client.drop_database(f"test_{test_id}")
    # MongoDB's way, the default: one query for all the keys, and one update.
    assert by_chunk[0] == (["things"], [("update", 1)], 120, 120)
    # A store that wants at most 50 keys a query: 121 distinct keys in three of each.
    assert by_chunk[50] == (["things"] * 3, [("update", 1)] * 3, 120, 120)


@pytest.mark.usefixtures("restored_in_chunk")
async def test_a_service_reads_with_the_in_chunk_its_settings_name(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, mongodb_uri: str
) -> None:
    monkeypatch.setenv("RAPPORT_MONGODB_IN_CHUNK", "7")
    settings = harness_settings(kafka_bootstrap, mongodb_uri, TopicNames("t."), "unused")
    assert settings.mongodb_in_chunk == 7
    set_in_chunk(0)
    runtime = ServiceRuntime.build(settings, subscriptions=[PURCHASES])
    try:
        assert in_chunk() == 7
    finally:
        await runtime.client.close()
    monkeypatch.setenv("RAPPORT_MONGODB_IN_CHUNK", "-1")
    with pytest.raises(ValidationError, match="mongodb_in_chunk"):
        harness_settings(kafka_bootstrap, mongodb_uri, TopicNames("t."), "unused")
    with pytest.raises(ValueError, match="0 \\(no limit\\) or more"):
        set_in_chunk(-1)
