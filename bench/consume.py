"""Consume rate: raw aiokafka against Rapport's consumer path, same broker and records.

Run from the project root::

    python -m bench.consume --bootstrap 127.0.0.1:9092 \
        --mongodb-uri 'mongodb://127.0.0.1:27017/?retryWrites=false'

``--count`` PurchaseCompleted CloudEvents are produced once to ``<prefix>crm.purchases``
(6 partitions); every stage then reads them in a consumer group of its own:

(a) raw aiokafka: ``AIOKafkaConsumer.getmany`` until ``--count`` records, decoding nothing.
(b) raw aiokafka + ``decode()``: the same, validating each CloudEvent envelope and payload.
(c) Rapport's consumer path: ``EventConsumer.handle_batch()`` on each poll of an aiokafka
    consumer: decode, one ``$in`` idempotency read, then the markers and a handler inserting
    one document per event, in one MongoDB transaction per batch. Reads ``--rapport-count``.
(d) the same through the service's stream worker (``ServiceRuntime.build``), as a service
    runs it, offsets committed after each batch. Reads ``--rapport-count`` records;
    ``--no-worker`` skips it.

Each clock starts when the group has assigned the stage's consumer its partitions (so
joining the group is not timed; finding the offsets and every fetch is) and stops when
the last record has been processed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from pydantic_settings import SettingsConfigDict

from bench._common import (
    Rate,
    Stopwatch,
    best,
    chunks,
    connection_parser,
    database_name,
    delete_topics,
    positive,
    purchase_events,
    quiet_logging,
    ratio,
    redact,
    rounds_line,
    servers,
)
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events.envelope import Event, KafkaRecord, decode, encode
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.mongo import Collection, MongoClient, create_client
from shared.outbox import Outbox
from shared.routing import Routes
from shared.runtime import ServiceRuntime
from shared.settings import Environment, ServiceSettings
from shared.topics import PURCHASES, TopicNames, ensure_topics
from shared.unit_of_work import UnitOfWork

PURCHASE_COMPLETED = "crm.purchase.completed"
RAW_STAGES = ("raw", "decode")
STALL_TIMEOUT = 60.0  # seconds without a new record before a stage gives up

Process = Callable[[list[Any]], Awaitable[None]]


class BenchSettings(ServiceSettings):
    """Settings of the benchmark's own service (not a Rapport service)."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_BENCH_", extra="ignore")
    service_name: ClassVar[str] = "bench"


class Effects:
    """A trivial handler: one document per event, in the consumer's transaction."""

    def __init__(self, database: str, target: int) -> None:
        self.database = database
        self.target = target
        self.watch = Stopwatch()
        self.done = asyncio.Event()


routes: Routes[Effects] = Routes()


@routes.on(PurchaseCompleted)
async def record_effect(effects: Effects, event: Event[PurchaseCompleted], uow: UnitOfWork) -> None:
    effects.watch.start_once()  # the worker's clock starts at its first event
    collection = uow.session.client[effects.database]["effects"]
    uow.insert(collection, {"_id": event.id, "purchase_id": event.payload.purchase_id})


class KeptDeadLetters:
    """Stands in for the DLQ producer: the bench's events are valid, so it stays empty."""

    def __init__(self) -> None:
        self.records: list[tuple[str, KafkaRecord]] = []

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        self.records.extend(records)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__.splitlines()[0] if __doc__ else "consume benchmark")
    parser.add_argument(
        "--count",
        type=positive,
        default=20_000,
        help="events produced, and read by (a) and (b) (default 20000)",
    )
    parser.add_argument(
        "--rapport-count",
        type=positive,
        default=5_000,
        help="events read by (c) and (d), bound by MongoDB (default 5000, at most --count)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=5,
        help="rounds of (a) and (b), alternated; the best of each is kept (default 5)",
    )
    parser.add_argument("--no-worker", action="store_true", help="skip (d), the stream worker")
    return parser.parse_args(argv)


async def pre_produce(bootstrap: list[str], topic: str, count: int) -> int:
    """Produce ``count`` events to ``topic``; returns the average record size."""
    records = [(topic, encode(event)) for event in purchase_events(count)]
    publisher = AiokafkaPublisher(bootstrap, client_id="rapport-bench")
    await publisher.start()
    try:
        for part in chunks(records, 1000):
            await publisher.publish(part)
    finally:
        await publisher.stop()
    return sum(len(record.value) for _, record in records) // count


class StartClock(ConsumerRebalanceListener):  # type: ignore[misc]
    """Starts a stopwatch once the group has assigned the consumer its partitions."""

    def __init__(self, watch: Stopwatch) -> None:
        self.watch = watch

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.watch.start_once()


async def read_group(
    bootstrap: list[str], topic: str, group: str, target: int, process: Process | None
) -> float:
    """Seconds from the group's assignment until ``target`` records are read and processed."""
    consumer: Any = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="rapport-bench",
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    watch = Stopwatch()
    consumer.subscribe([topic], listener=StartClock(watch))
    seen = 0
    last_progress = time.monotonic()
    try:
        while seen < target:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                taken = records[: target - seen]
                if process is not None:
                    await process(taken)
                seen += len(taken)
                last_progress = time.monotonic()
                if seen >= target:
                    break
            if time.monotonic() - last_progress > STALL_TIMEOUT:
                raise RuntimeError(f"group {group} stalled after {seen} of {target} records")
        watch.stop()
    finally:
        await consumer.stop()
    return watch.seconds


async def decode_all(records: list[Any]) -> None:
    for record in records:
        decode(record.value, record.headers)


async def raw_stages(
    bootstrap: list[str], topic: str, prefix: str, count: int, rounds: int
) -> tuple[list[Rate], list[Rate]]:
    raws: list[Rate] = []
    decoded: list[Rate] = []
    for number in range(rounds):  # each goes first every other round
        for stage in RAW_STAGES if number % 2 == 0 else RAW_STAGES[::-1]:
            group = f"{prefix}{stage}-{number}"
            if stage == "raw":
                seconds = await read_group(bootstrap, topic, group, count, None)
                raws.append(Rate("(a) raw aiokafka consumer, getmany, no decoding", count, seconds))
            else:
                seconds = await read_group(bootstrap, topic, group, count, decode_all)
                decoded.append(Rate("(b) raw aiokafka consumer + decode()", count, seconds))
    return raws, decoded


async def rapport_handle(
    bootstrap: list[str],
    client: MongoClient,
    database: str,
    names: TopicNames,
    target: int,
) -> Rate:
    db = client[database]
    await db.create_collection("effects")
    dead_letters = KeptDeadLetters()
    effects = Effects(database, target)
    consumer = EventConsumer(
        service="bench",
        client=client,
        db=db,
        publisher=dead_letters,
        routes=routes.bind(effects),
        topics=names,
        outbox=Outbox(db, names),
    )
    await consumer.ensure_indexes()
    outcomes: Counter[Outcome] = Counter()

    async def handle_all(records: list[Any]) -> None:
        outcomes.update(await consumer.handle_batch([IncomingMessage.of(r) for r in records]))

    topic = names(PURCHASES)
    seconds = await read_group(bootstrap, topic, f"{names.prefix}handle", target, handle_all)
    if outcomes[Outcome.PROCESSED] != target or dead_letters.records:
        raise RuntimeError(f"unexpected outcomes {dict(outcomes)}")
    if await db["effects"].count_documents({}) != target:
        raise RuntimeError("the handler's effects are not all stored")
    return Rate("(c) Rapport EventConsumer.handle_batch(), 1 txn per poll", target, seconds)


async def rapport_worker(
    args: argparse.Namespace, client: MongoClient, database: str, target: int
) -> Rate:
    await client[database].create_collection("effects")
    effects = Effects(database, target)
    settings = BenchSettings(
        environment=Environment.DEVELOPMENT,
        kafka_bootstrap=args.bootstrap,
        mongodb_uri=args.mongodb_uri,
        topic_prefix=args.prefix,
        mongodb_database=database,
    )
    runtime = ServiceRuntime.build(settings, subscriptions=[PURCHASES])
    runtime.handle(routes.bind(effects))
    await runtime.start()
    try:
        await _wait_for(effects, client[database]["effects"])
    finally:
        await runtime.stop()
    return Rate("(d) Rapport stream worker (ServiceRuntime)", target, effects.watch.seconds)


async def _wait_for(effects: Effects, stored: Collection) -> None:
    """Until every event's effect is committed (read from the store: what a user sees)."""
    last = (-1, time.monotonic())
    while not effects.done.is_set():
        await asyncio.sleep(0.05)
        count = await stored.count_documents({})
        if count >= effects.target:
            effects.watch.stop()
            effects.done.set()
        elif count != last[0]:
            last = (count, time.monotonic())
        elif time.monotonic() - last[1] > STALL_TIMEOUT:
            raise RuntimeError(f"the worker stalled after {count} of {effects.target} events")


def bench_groups(prefix: str, rounds: int) -> list[str]:
    """Every consumer group the stages use (the worker's is the runtime's ``consumer_group``)."""
    stages = [f"{prefix}{stage}-{number}" for number in range(rounds) for stage in RAW_STAGES]
    return [*stages, f"{prefix}handle", f"{prefix}rapport-{BenchSettings.service_name}"]


async def run(args: argparse.Namespace) -> None:
    bootstrap = servers(args.bootstrap)
    names = TopicNames(args.prefix)
    topic = names(PURCHASES)
    rapport_count = min(args.rapport_count, args.count)
    created = await ensure_topics(bootstrap, names)
    if topic not in created:  # never write fake purchases into a deployment's topics
        await delete_topics(bootstrap, created)
        raise SystemExit(f"{topic} exists already: give the bench a --prefix of its own")
    client = create_client(args.mongodb_uri, app_name="rapport-bench")
    databases = [database_name(args.prefix, "handle"), database_name(args.prefix, "worker")]
    try:
        size = await pre_produce(bootstrap, topic, args.count)
        print(f"broker {args.bootstrap}, store {redact(args.mongodb_uri)}")
        print(f"topic {topic} (6 partitions): {args.count} PurchaseCompleted, ~{size} B each")
        print()
        raws, decoded = await raw_stages(bootstrap, topic, args.prefix, args.count, args.rounds)
        raw, with_decode = best(raws), best(decoded)
        for rate, rounds in ((raw, raws), (with_decode, decoded)):
            print(rate.line())
            print(rounds_line(rounds), flush=True)
        handle = await rapport_handle(bootstrap, client, databases[0], names, rapport_count)
        print(handle.line(), flush=True)
        worker: Rate | None = None
        if not args.no_worker:
            worker = await rapport_worker(args, client, databases[1], rapport_count)
            print(worker.line(), flush=True)
        print()
        print("ratio to raw aiokafka (events/s / raw events/s):")
        print(f"  (b) raw + decode()             {ratio(with_decode, raw)}")
        print(f"  (c) handle_batch()             {ratio(handle, raw)}")
        if worker is not None:
            print(f"  (d) stream worker              {ratio(worker, raw)}")
    finally:
        for database in databases:
            await client.drop_database(database)
        await client.close()
        if not args.keep_topics:
            await delete_topics(bootstrap, created, bench_groups(args.prefix, args.rounds))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logging()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
