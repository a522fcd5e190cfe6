"""Batches on a real broker and store: one unit of work per poll, and what it promises.

A duplicate inside a batch or across batches has one effect; a poison event in the middle
of a batch is dead-lettered while its neighbours are applied; a handler sees what earlier
events of its batch changed, with one read per collection for the whole batch; a worker
killed (SIGKILL) or stopped (SIGTERM) in the middle of a batch loses nothing and doubles
nothing; nothing is acknowledged that was not applied.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from pymongo.errors import BulkWriteError

from shared import stream
from shared.consumer import EventConsumer, IncomingMessage, Outcome, Prepared, RejectEvent
from shared.events import Event, KafkaRecord, encode
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.mongo import Collection, Database, MongoClient
from shared.outbox import Outbox
from shared.routing import Routes
from shared.stream import StreamWorker
from shared.topics import PURCHASES, TopicNames
from shared.unit_of_work import UnitOfWork, UnitsOfWork
from tests.kafka_reading import read_topic
from tests.service_harness import eventually
from tests.support.commands import CommandCounter, counted_client, in_queries
from tests.test_consumer import dlq_headers, purchase


@dataclass
class Tally:
    """Each purchase bumps its customer's tally (read and rewritten through the unit of
    work) and records an effect per purchase; some purchase ids misbehave on purpose."""

    tallies: Collection
    effects: Collection
    seen_counts: list[int] = field(default_factory=list)


tally_routes: Routes[Tally] = Routes()


async def load_tallies(
    tally: Tally, events: Sequence[Event[PurchaseCompleted]], uow: UnitOfWork
) -> None:
    await uow.load(tally.tallies, [event.payload.customer_key() for event in events])


@tally_routes.on(PurchaseCompleted, load=load_tallies)
async def count_purchase(tally: Tally, event: Event[PurchaseCompleted], uow: UnitOfWork) -> None:
    purchase_id = event.payload.purchase_id
    if purchase_id.startswith("fail"):
        raise RuntimeError(f"cannot apply {purchase_id}")
    if purchase_id.startswith("reject"):
        raise RejectEvent(f"purchase {purchase_id} names an unknown customer")
    customer = event.payload.customer_key()
    document = await uow.get(tally.tallies, customer) or {"_id": customer, "count": 0}
    document["count"] += 1
    tally.seen_counts.append(document["count"])
    uow.put(tally.tallies, document)
    uow.insert(tally.effects, {"_id": event.id, "purchase_id": purchase_id})


@pytest.fixture
async def counted(mongodb_uri: str) -> AsyncIterator[tuple[MongoClient, CommandCounter]]:
    async with counted_client(mongodb_uri) as counted:
        yield counted


@pytest.fixture
def tally(db: Database) -> Tally:
    return Tally(db["tallies"], db["effects"])


def consumer_of(
    client: MongoClient,
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
    kind: type[EventConsumer] = EventConsumer,
) -> EventConsumer:
    service_db = client[db.name]
    return kind(
        service="batch-tests",
        client=client,
        db=service_db,
        publisher=publisher,
        routes=tally_routes.bind(
            Tally(service_db["tallies"], service_db["effects"], tally.seen_counts)
        ),
        topics=topics,
        outbox=Outbox(service_db, topics),
        retry_delay=0.01,
    )


def messages(topic: str, *records: KafkaRecord, start: int = 0) -> list[IncomingMessage]:
    return [
        IncomingMessage(topic, 0, start + offset, record.key, record.value, record.headers)
        for offset, record in enumerate(records)
    ]


async def test_a_duplicate_inside_a_batch_and_across_batches_has_one_effect(
    counted: tuple[MongoClient, CommandCounter],
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
) -> None:
    client, _ = counted
    consumer = consumer_of(client, db, publisher, topics, tally)
    first, second, third = purchase("p-1"), purchase("p-2"), purchase("p-3")
    topic = topics(PURCHASES)
    timed = {"service": "batch-tests"}
    batches_before = REGISTRY.get_sample_value("rapport_consumer_batch_seconds_count", timed)

    outcomes = await consumer.handle_batch(
        messages(topic, encode(first), encode(second), encode(first))
    )
    assert outcomes == [Outcome.PROCESSED, Outcome.PROCESSED, Outcome.DUPLICATE]
    again = await consumer.handle_batch(messages(topic, encode(second), encode(third), start=3))
    assert again == [Outcome.DUPLICATE, Outcome.PROCESSED]
    # Each batch's time is measured (``rapport_consumer_batch_seconds``).
    batches_after = REGISTRY.get_sample_value("rapport_consumer_batch_seconds_count", timed)
    assert (batches_after or 0.0) - (batches_before or 0.0) == 2

    assert await tally.effects.count_documents({}) == 3
    assert await tally.tallies.find_one({"_id": "c-1"}) == {"_id": "c-1", "count": 3}


async def test_a_batch_prepared_while_the_one_before_was_in_flight_skips_what_that_one_applied(
    counted: tuple[MongoClient, CommandCounter],
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
) -> None:
    """The worker prepares a batch (decode, read of the markers) while the one before it
    is applied: that read may predate the markers of the batch before; what that batch
    applied still counts as applied, without a failed transaction to find it out."""
    client, counter = counted
    consumer = consumer_of(client, db, publisher, topics, tally)
    topic = topics(PURCHASES)
    repeated = purchase("p-1")
    first = messages(topic, encode(repeated), encode(purchase("p-2")))
    second = messages(topic, encode(repeated), encode(purchase("p-3")), start=2)

    ahead = await consumer.prepare(second)  # read before the first batch is applied
    assert ahead.applied == set()
    assert await consumer.apply(await consumer.prepare(first)) == [Outcome.PROCESSED] * 2
    counter.clear()
    assert await consumer.apply(ahead) == [Outcome.DUPLICATE, Outcome.PROCESSED]

    # One transaction, nothing split: the markers of the one new event, in one insert.
    assert counter.written("processed_events") == [("insert", 1)]
    assert await tally.effects.count_documents({}) == 3
    assert await tally.tallies.find_one({"_id": "c-1"}) == {"_id": "c-1", "count": 3}


async def test_an_event_another_replica_applied_after_it_was_prepared_is_a_duplicate(
    mongo_client: MongoClient,
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
) -> None:
    """Two replicas with the same event in hand (a rebalance): the one that commits second
    finds the marker on insert and counts a duplicate; it does not dead-letter the event."""
    replica, other = (consumer_of(mongo_client, db, publisher, topics, tally) for _ in "ab")
    batch = messages(topics(PURCHASES), encode(purchase("p-1")))
    prepared = await replica.prepare(batch)
    assert await other.handle_batch(batch) == [Outcome.PROCESSED]

    assert await replica.apply(prepared) == [Outcome.DUPLICATE]
    assert await tally.effects.count_documents({}) == 1


class FailsOnceAfterReadingAhead(EventConsumer):
    """Its first batch fails (as a store lost in the middle of it would make it fail),
    once the next batch was read ahead."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.prepared: list[list[str]] = []  # each prepared batch's purchase ids
        self.read_ahead = asyncio.Event()
        self.failed = False
        # Run once the first batch is prepared, before it is applied (and read ahead of).
        self.after_first: Callable[[], Awaitable[None]] | None = None

    async def prepare(self, messages: Sequence[IncomingMessage]) -> Prepared:
        prepared = await super().prepare(messages)
        self.prepared.append([item.event.payload.purchase_id for _, item in prepared.decoded])
        if len(self.prepared) == 1 and self.after_first is not None:
            await self.after_first()
        if len(self.prepared) == 2:
            self.read_ahead.set()
        return prepared

    async def apply(self, prepared: Prepared) -> list[Outcome]:
        if not self.failed:
            self.failed = True
            await asyncio.wait_for(self.read_ahead.wait(), 60)
            raise RuntimeError("the store went away in the middle of the batch")
        return await super().apply(prepared)


async def test_a_batch_that_fails_is_read_again_with_the_batch_read_ahead_of_it(
    kafka_bootstrap: str,
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first batch is on partition 0, the one read ahead while it fails on partition
    1: both partitions are read again, so nothing is lost, and nothing doubles."""
    monkeypatch.setattr(stream, "POLL_TIMEOUT", 5.0)  # (a loaded machine is slow to fetch)
    topic = topics(PURCHASES)
    consumer = consumer_of(db.client, db, publisher, topics, tally, FailsOnceAfterReadingAhead)
    assert isinstance(consumer, FailsOnceAfterReadingAhead)
    group = f"{topics.prefix}read-ahead"
    worker = StreamWorker(
        consumer, bootstrap_servers=[kafka_bootstrap], group_id=group, topics=[topic],
        batch_size=5, linger=0.5,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def send(partition: int, prefix: str, customer: str) -> None:
        for n in range(5):
            record = encode(purchase(f"{prefix}-{n}", customer_id=customer))
            await producer.send_and_wait(
                topic, record.value, key=record.key, partition=partition,
                headers=list(record.headers),
            )  # fmt: skip

    # Partition 1's records are sent once the first batch (partition 0's) is in hand, so
    # only the batch read ahead of it can hold them.
    consumer.after_first = lambda: send(1, "q", "c-2")
    try:
        await send(0, "p", "c-1")
        await worker.start()

        async def all_applied() -> bool:
            return await tally.effects.count_documents({}) >= 10

        await eventually(all_applied, timeout=60, message="a batch was lost")
    finally:
        await worker.stop()
        await producer.stop()
    assert consumer.prepared[:2] == [[f"p-{n}" for n in range(5)], [f"q-{n}" for n in range(5)]]
    assert await tally.effects.count_documents({}) == 10
    tallies = {document["_id"]: document["count"] async for document in tally.tallies.find()}
    assert tallies == {"c-1": 5, "c-2": 5}
    committed = await committed_offsets(kafka_bootstrap, group, topic)
    assert (committed[0], committed[1]) == (5, 5)


async def test_a_handler_sees_its_batch_s_earlier_changes_with_one_read_per_collection(
    counted: tuple[MongoClient, CommandCounter],
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
) -> None:
    client, counter = counted
    consumer = consumer_of(client, db, publisher, topics, tally)
    customers = [f"c-{number}" for number in range(5)]
    events = [purchase(f"p-{n}", customer_id=customers[n % 5]) for n in range(200)]

    counter.clear()
    outcomes = await consumer.handle_batch(messages(topics(PURCHASES), *map(encode, events)))

    assert outcomes == [Outcome.PROCESSED] * 200
    # Each tally was put 40 times and is written once, as it ended up; the effects in one go.
    assert counter.written("tallies") == [("update", 5)]
    assert counter.written("effects") == [("insert", 200)]
    # A look-up of the markers (per RAPPORT_MONGODB_IN_CHUNK event ids if set) and one
    # load of the five tallies: the reads follow the keys, not the events.
    assert Counter(counter.finds()) == {"processed_events": in_queries(200), "tallies": 1}
    tallies = {document["_id"]: document["count"] async for document in tally.tallies.find()}
    assert tallies == dict.fromkeys(customers, 40)
    # Each event saw the tally as the events before it in the batch left it.
    assert tally.seen_counts == [n // 5 + 1 for n in range(200)]


async def test_a_poison_event_in_the_middle_of_a_batch_is_dead_lettered_and_its_neighbours_applied(
    counted: tuple[MongoClient, CommandCounter],
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
    kafka_bootstrap: str,
) -> None:
    client, _ = counted
    consumer = consumer_of(client, db, publisher, topics, tally)
    before = [purchase(f"p-{n}") for n in range(10)]
    after = [purchase(f"q-{n}") for n in range(10)]
    unreadable = KafkaRecord(key=b"c-1", value=b'{"oops": ', headers=[])
    batch = [
        *map(encode, before[:5]),
        unreadable,
        *map(encode, before[5:]),
        encode(purchase("fail-1")),
        encode(purchase("reject-1")),
        *map(encode, after),
    ]

    outcomes = await consumer.handle_batch(messages(topics(PURCHASES), *batch))

    dead = [Outcome.DEAD_LETTERED]
    applied = [Outcome.PROCESSED]
    assert outcomes == applied * 5 + dead + applied * 5 + dead + dead + applied * 10
    assert await tally.effects.count_documents({}) == 20
    assert await tally.tallies.find_one({"_id": "c-1"}) == {"_id": "c-1", "count": 20}
    letters = await read_topic(
        kafka_bootstrap, topics.dlq(topics(PURCHASES)), until=lambda records: len(records) >= 3
    )
    reasons = sorted(dlq_headers(record)["dlq-error-type"] for record in letters)
    assert reasons == ["InvalidEvent", "RejectEvent", "RuntimeError"]
    offsets = sorted(int(dlq_headers(record)["dlq-source-offset"]) for record in letters)
    assert offsets == [5, 11, 12]


# A worker process, killed or stopped in the middle of a batch.


async def start_child(
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    delay: float,
    streams: int = 1,
) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.batch_worker_child",
        kafka_bootstrap,
        mongodb_uri,
        topics.prefix,
        db.name,
        str(delay),
        str(streams),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"started"
    return child


async def committed_offsets(kafka_bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, partition) for partition in range(6)]
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in partitions}
    finally:
        await consumer.stop()


async def assert_nothing_unapplied_is_committed(
    kafka_bootstrap: str, group: str, topics: TopicNames, db: Database
) -> None:
    """Every record below its partition's committed offset has its effect stored."""
    committed = await committed_offsets(kafka_bootstrap, group, topics(PURCHASES))
    records = await read_topic(kafka_bootstrap, topics(PURCHASES))
    applied = {document["_id"] async for document in db["effects"].find({}, {"_id": 1})}
    acknowledged = [r for r in records if r.offset < committed[r.partition]]
    assert acknowledged, "no batch was committed before the stop"
    missing = [r.offset for r in acknowledged if _event_id(r.value) not in applied]
    assert missing == []


def _event_id(value: bytes) -> str:
    return str(json.loads(value)["id"])


async def produce(publisher: AiokafkaPublisher, topics: TopicNames, count: int) -> list[str]:
    events = [purchase(f"p-{n}", customer_id=f"c-{n % 20}") for n in range(count)]
    await publisher.publish([(topics(PURCHASES), encode(event)) for event in events])
    return [event.id for event in events]


async def assert_each_applied_once(db: Database, ids: list[str]) -> None:
    async def all_there() -> bool:
        return await db["effects"].count_documents({}) >= len(ids)

    await eventually(all_there, timeout=120, message="not every purchase was applied")
    assert sorted([d["_id"] async for d in db["effects"].find({}, {"_id": 1})]) == sorted(ids)
    counts = {d["_id"]: d["n"] async for d in db["counts"].find()}
    assert counts == {f"c-{n}": len(ids) // 20 for n in range(20)}  # nothing doubled


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_a_worker_killed_or_stopped_in_the_middle_of_a_batch_loses_and_doubles_nothing(
    stop: signal.Signals,
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    ids = await produce(publisher, topics, 400)
    child = await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0.01)

    async def some_applied() -> bool:
        return await db["effects"].count_documents({}) >= 60

    await eventually(some_applied, timeout=90, message="the child applied nothing")
    child.send_signal(stop)  # SIGKILL: nothing gets to clean up; SIGTERM: a graceful stop
    assert await asyncio.wait_for(child.wait(), 60) == (-stop if stop is signal.SIGKILL else 0)
    assert await db["effects"].count_documents({}) < len(ids)
    await assert_nothing_unapplied_is_committed(
        kafka_bootstrap, f"{topics.prefix}rapport-batch-child", topics, db
    )

    restarted = await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0.0)
    try:
        await assert_each_applied_once(db, ids)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await restarted.wait() == 0


async def test_a_stop_that_cannot_finish_its_batch_acknowledges_nothing_of_it(
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    publisher: AiokafkaPublisher,
) -> None:
    ids = await produce(publisher, topics, 200)
    # 0.5 s per event: a batch of 50 cannot finish within the 0.5 s a stop allows, so
    # the stop abandons it: its transaction aborts and its offsets stay uncommitted.
    child = await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0.5)
    await asyncio.sleep(3)
    child.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(child.wait(), 60) == 0
    assert await db["effects"].count_documents({}) == 0
    committed = await committed_offsets(
        kafka_bootstrap, f"{topics.prefix}rapport-batch-child", topics(PURCHASES)
    )
    assert committed == dict.fromkeys(range(6), 0)

    restarted = await start_child(kafka_bootstrap, mongodb_uri, topics, db, delay=0.0)
    try:
        await assert_each_applied_once(db, ids)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await restarted.wait() == 0


async def test_a_document_inserted_then_put_is_written_once_as_an_insert(
    counted: tuple[MongoClient, CommandCounter], db: Database, topics: TopicNames
) -> None:
    client, counter = counted
    units = UnitsOfWork(client, Outbox(client[db.name], topics))
    tallies = client[db.name]["tallies"]
    await tallies.insert_one({"_id": "taken", "count": 0})

    async def work(uow: UnitOfWork) -> None:
        uow.insert(tallies, {"_id": "new", "count": 1})
        uow.put(tallies, {"_id": "new", "count": 2})
        uow.put(tallies, {"_id": "other", "count": 1})
        uow.put(tallies, {"_id": "other", "count": 5})

    counter.clear()
    await units.run(work)
    assert counter.written("tallies") == [("insert", 1), ("update", 1)]
    assert {d["_id"]: d["count"] async for d in tallies.find()} == {
        "taken": 0,
        "new": 2,
        "other": 5,
    }

    async def duplicate(uow: UnitOfWork) -> None:
        uow.insert(tallies, {"_id": "taken", "count": 1})
        uow.put(tallies, {"_id": "taken", "count": 9})  # still an insert: the duplicate fails

    with pytest.raises(BulkWriteError):
        await units.run(duplicate)
    assert await tallies.find_one({"_id": "taken"}) == {"_id": "taken", "count": 0}


async def test_a_view_reads_what_the_unit_sees_without_a_copy_and_once(
    counted: tuple[MongoClient, CommandCounter], db: Database, topics: TopicNames
) -> None:
    """``view`` (the handlers' read-only hot path) reads a document once, sees what the
    unit changed, and hands out the unit's own document rather than a copy per call."""
    client, counter = counted
    units = UnitsOfWork(client, Outbox(client[db.name], topics))
    tallies = client[db.name]["tallies"]
    await tallies.insert_many([{"_id": "a", "count": 1}, {"_id": "b", "count": 7}])
    seen: list[object] = []

    async def work(uow: UnitOfWork) -> None:
        first = await uow.view(tallies, "a")
        assert first == {"_id": "a", "count": 1}
        assert await uow.view(tallies, "a") is first  # the same document, not a copy
        assert await uow.view(tallies, "missing") is None
        uow.put(tallies, {"_id": "b", "count": 8})
        seen.append(await uow.view(tallies, "b"))

    counter.clear()
    await units.run(work)
    assert seen == [{"_id": "b", "count": 8}]
    assert counter.finds() == ["tallies", "tallies"]  # "a", then "missing"; "b" was put


async def test_a_kept_object_is_decoded_once_encoded_once_and_written_as_it_ended(
    counted: tuple[MongoClient, CommandCounter], db: Database, topics: TopicNames
) -> None:
    """``decoded`` and ``keep`` (a document changed event after event, such as a
    customer's figures): the stored document is decoded once, each change is kept as an
    object, and it is encoded once, at commit, into one write of what it ended up as; a
    ``view`` in between sees the change, and an insert kept afterwards stays an insert."""
    client, counter = counted
    units = UnitsOfWork(client, Outbox(client[db.name], topics))
    tallies = client[db.name]["tallies"]
    await tallies.insert_one({"_id": "a", "count": 1})
    decodes: list[object] = []
    encodes: list[int] = []

    def decode(document: Mapping[str, Any] | None) -> int:
        decodes.append(document)
        return 0 if document is None else int(document["count"])

    def encode(count: int) -> dict[str, Any]:
        encodes.append(count)
        return {"count": count}

    async def work(uow: UnitOfWork) -> None:
        for _ in range(3):
            count = await uow.decoded(tallies, "a", decode)
            uow.keep(tallies, "a", count + 1, lambda n: {"_id": "a", **encode(n)})
        assert await uow.view(tallies, "a") == {"_id": "a", "count": 4}
        uow.insert(tallies, {"_id": "new", "count": 0})
        for _ in range(2):
            count = await uow.decoded(tallies, "new", decode)
            uow.keep(tallies, "new", count + 5, lambda n: {"_id": "new", **encode(n)})
        assert await uow.decoded(tallies, "missing", decode) == 0
        assert await uow.decoded(tallies, "missing", decode) == 0

    counter.clear()
    await units.run(work)
    # "a" read and decoded once; "new" decoded once from its insert; "missing" once.
    assert decodes == [{"_id": "a", "count": 1}, {"_id": "new", "count": 0}, None]
    assert encodes == [4, 10]  # "a" for the view (the commit writes that), "new" at commit
    assert counter.written("tallies") == [("update", 1), ("insert", 1)]
    assert await tallies.find({}, sort=[("_id", 1)]).to_list() == [
        {"_id": "a", "count": 4},
        {"_id": "new", "count": 10},
    ]

    async def insert_again(uow: UnitOfWork) -> None:
        uow.insert(tallies, {"_id": "new", "count": 0})
        uow.keep(tallies, "new", 1, lambda n: {"_id": "new", "count": n})

    with pytest.raises(BulkWriteError):  # still an insert: the duplicate is refused
        await units.run(insert_again)


async def test_a_unit_of_work_that_meets_a_write_conflict_runs_again_and_is_counted(
    mongo_client: MongoClient, db: Database, topics: TopicNames
) -> None:
    """Two units change the same document at once: the second meets a write conflict,
    runs again once the first committed, and ``rapport_transaction_retries_total`` says
    so (the metric an operator reads when batches slow down)."""
    units = UnitsOfWork(mongo_client, Outbox(db, topics))
    tallies = db["tallies"]
    await tallies.insert_one({"_id": "shared", "count": 0})
    holding, release = asyncio.Event(), asyncio.Event()

    async def first(uow: UnitOfWork) -> None:
        await tallies.update_one({"_id": "shared"}, {"$inc": {"count": 1}}, session=uow.session)
        holding.set()
        await release.wait()

    async def second(uow: UnitOfWork) -> None:
        await tallies.update_one({"_id": "shared"}, {"$inc": {"count": 10}}, session=uow.session)

    before = REGISTRY.get_sample_value("rapport_transaction_retries_total") or 0.0
    held = asyncio.create_task(units.run(first))
    await holding.wait()
    conflicting = asyncio.create_task(units.run(second))
    await asyncio.sleep(0.5)  # the second meets the first's uncommitted change meanwhile
    release.set()
    await asyncio.gather(held, conflicting)
    assert (await tallies.find_one({"_id": "shared"}) or {})["count"] == 11
    after = REGISTRY.get_sample_value("rapport_transaction_retries_total") or 0.0
    assert after > before


async def test_the_markers_have_no_index_but_their_id_and_an_older_one_is_dropped(
    mongo_client: MongoClient,
    db: Database,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
    tally: Tally,
) -> None:
    """Each index on the markers would cost the store a second write per applied event,
    and nothing reads them but by id: the index earlier versions made goes at start."""
    await db["processed_events"].create_index([("processed_at", 1)])  # as they made it
    consumer = consumer_of(mongo_client, db, publisher, topics, tally)
    await consumer.ensure_indexes()
    await consumer.ensure_indexes()  # again (another replica): nothing left to drop, no error
    indexes = [index["name"] async for index in await db["processed_events"].list_indexes()]
    assert indexes == ["_id_"]
