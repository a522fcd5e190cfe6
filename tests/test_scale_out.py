"""Replicas of one service share its partitions, and a dead or stopped replica's
partitions move to the survivor with nothing lost and nothing doubled.

Two worker processes (``tests.batch_worker_child``) in one consumer group, seen from the
broker (the group's members and their assignments, as ``rapport status`` reads them).
Under load one is killed with SIGKILL (its partitions move when its session expires,
``CONSUMER_SESSION_TIMEOUT_MS``) or stopped with SIGTERM (it leaves the group, so they
move at once); the survivor then applies every purchase exactly once. The measured
hand-over times are printed (``pytest -s``), not asserted: the machine is shared.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import pytest

from ops.kafka import group_members
from shared.events import encode
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.topics import PURCHASES, TopicNames
from tests.service_harness import eventually
from tests.test_batches import start_child
from tests.test_consumer import purchase

GROUP_SERVICE = "batch-child"  # tests.batch_worker_child's service name
CUSTOMERS = 60
PURCHASES_EACH = 10


@pytest.fixture
async def replicas(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    children = [
        await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0.01) for _ in range(2)
    ]
    yield children
    for child in children:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def assignments(kafka_bootstrap: str, topics: TopicNames) -> list[set[tuple[str, int]]]:
    members = await group_members([kafka_bootstrap], f"{topics.prefix}rapport-{GROUP_SERVICE}")
    return list(members.values())


async def produce_load(kafka_bootstrap: str, topics: TopicNames) -> int:
    publisher = AiokafkaPublisher([kafka_bootstrap], client_id="rapport-tests")
    await publisher.start()
    try:
        events = [
            purchase(f"p-{customer}-{n}", customer_id=f"c-{customer}")
            for n in range(PURCHASES_EACH)
            for customer in range(CUSTOMERS)
        ]
        await publisher.publish([(topics(PURCHASES), encode(event)) for event in events])
    finally:
        await publisher.stop()
    return len(events)


async def assert_each_applied_once(db: Database, produced: int) -> None:
    async def all_applied() -> bool:
        return await db["effects"].count_documents({}) >= produced

    await eventually(all_applied, timeout=120, message="the survivor did not apply everything")
    assert await db["effects"].count_documents({}) == produced
    counts = {document["_id"]: document["n"] async for document in db["counts"].find()}
    # A purchase applied twice would count twice: every customer has exactly its ten.
    assert counts == {f"c-{customer}": PURCHASES_EACH for customer in range(CUSTOMERS)}


async def two_share_the_partitions(kafka_bootstrap: str, topics: TopicNames) -> None:
    async def shared_out() -> bool:
        owned = await assignments(kafka_bootstrap, topics)
        return len(owned) == 2 and all(owned)

    await eventually(shared_out, timeout=60, message="the two replicas did not share the group")
    first, second = await assignments(kafka_bootstrap, topics)
    assert not first & second
    assert first | second == {(topics(PURCHASES), partition) for partition in range(6)}


async def survivor_takes_all(kafka_bootstrap: str, topics: TopicNames, what: str) -> float:
    started = time.monotonic()

    async def one_owns_all() -> bool:
        owned = await assignments(kafka_bootstrap, topics)
        return len(owned) == 1 and len(owned[0]) == 6

    await eventually(one_owns_all, timeout=90, message="the survivor did not take every partition")
    seconds = time.monotonic() - started
    print(f"\npartitions of a {what} replica moved to the survivor in {seconds:.1f} s")
    return seconds


async def applied(db: Database) -> int:
    return await db["effects"].count_documents({})


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_a_replica_s_partitions_move_to_the_survivor_with_nothing_lost_or_doubled(
    kafka_bootstrap: str,
    topics: TopicNames,
    db: Database,
    replicas: list[asyncio.subprocess.Process],
    how: signal.Signals,
) -> None:
    await two_share_the_partitions(kafka_bootstrap, topics)
    produced = await produce_load(kafka_bootstrap, topics)

    async def under_way() -> bool:
        return await applied(db) >= 50

    await eventually(under_way, message="the replicas did not start applying")
    leaving, survivor = replicas
    leaving.send_signal(how)
    await survivor_takes_all(kafka_bootstrap, topics, how.name)
    assert survivor.returncode is None
    if how is signal.SIGTERM:
        assert await asyncio.wait_for(leaving.wait(), 60) == 0
    await assert_each_applied_once(db, produced)


async def test_one_process_with_two_stream_workers_shares_the_partitions_between_them(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> None:
    """``CONSUMER_STREAMS=2``: one process is two members of the group, each with
    partitions of its own; everything is applied once, and a stop leaves the group with
    both (nothing of the batches in hand lost or doubled)."""
    child = await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0.01, streams=2)
    try:
        await two_share_the_partitions(kafka_bootstrap, topics)
        produced = await produce_load(kafka_bootstrap, topics)

        async def under_way() -> bool:
            return await applied(db) >= 50

        await eventually(under_way, message="the stream workers did not start applying")
        child.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.wait(), 60) == 0

        async def left() -> bool:
            return await assignments(kafka_bootstrap, topics) == []

        await eventually(left, timeout=30, message="the stopped workers stayed in the group")
        stopped_at = await applied(db)
        assert stopped_at < produced  # stopped in the middle: a second run finishes
        child = await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0, streams=2)
        await assert_each_applied_once(db, produced)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
