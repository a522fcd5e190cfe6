"""Produce rate: raw aiokafka against Rapport's outbox path and its publisher, same broker.

Run from the project root::

    python -m bench.produce --bootstrap 127.0.0.1:9092 \
        --mongodb-uri 'mongodb://127.0.0.1:27017/?retryWrites=false'

(a) raw aiokafka: an idempotent ``acks=all`` ``AIOKafkaProducer`` sends pre-encoded
    PurchaseCompleted CloudEvents keyed by customer id and awaits every delivery.
(b) Rapport's path: ``--rapport-count`` events are written to the outbox in MongoDB
    transactions of ``--batch`` events, then the relay publishes them
    (``OutboxRelay.publish_pending``, lease held) until nothing is pending. Shown as the
    two phases, the relay's time inside the publisher, and end to end.
(c) Rapport's publisher alone: ``AiokafkaPublisher.publish`` over the same pre-encoded
    records in chunks of the relay's batch size: the broker's share of (b).

(a) and (c) run ``--rounds`` times, alternated, and the best round of each is reported;
(b) runs once. The bench database is dropped and the topics deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

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
from shared.events.envelope import Event, KafkaRecord, encode
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient, create_client, in_transaction
from shared.outbox import Outbox, OutboxRelay
from shared.topics import PURCHASES, TopicNames, ensure_topics

Records = Sequence[tuple[str, KafkaRecord]]
RELAY_BATCH = 500  # OutboxRelay's default batch size
WARM_UP = 500  # records each producer sends before its timing starts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__.splitlines()[0] if __doc__ else "produce benchmark")
    parser.add_argument(
        "--count", type=positive, default=20_000, help="events for (a) and (c) (default 20000)"
    )
    parser.add_argument(
        "--rapport-count",
        type=positive,
        default=5_000,
        help="events for the outbox path (b), bound by MongoDB (default 5000)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=5,
        help="rounds of (a) and (c), alternated; the best of each is kept (default 5)",
    )
    parser.add_argument(
        "--batch", type=positive, default=100, help="events per outbox transaction (default 100)"
    )
    parser.add_argument(
        "--relay-batch",
        type=positive,
        default=RELAY_BATCH,
        help=f"events per relay batch and per publish() call of (c) (default {RELAY_BATCH})",
    )
    return parser.parse_args(argv)


async def send_all(producer: Any, records: Records) -> None:
    """Send every record, then await every delivery: what raw aiokafka code does."""
    futures = [
        await producer.send(topic, value=record.value, key=record.key, headers=record.headers)
        for topic, record in records
    ]
    await asyncio.gather(*futures)


async def raw_aiokafka(bootstrap: list[str], records: Records, warm_up: Records) -> Rate:
    producer: Any = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="rapport-bench-raw",
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    watch = Stopwatch()
    try:
        await send_all(producer, warm_up)  # connections, metadata, producer id: untimed
        watch.start()
        await send_all(producer, records)
        watch.stop()
    finally:
        await producer.stop()
    return Rate("(a) raw aiokafka producer, acks=all, idempotent", len(records), watch.seconds)


async def started_publisher(bootstrap: list[str], warm_up: Records) -> AiokafkaPublisher:
    publisher = AiokafkaPublisher(bootstrap, client_id="rapport-bench")
    await publisher.start()
    await publisher.publish(warm_up)  # connections, metadata, producer id: untimed
    return publisher


async def rapport_publisher(
    bootstrap: list[str], records: Records, warm_up: Records, chunk: int
) -> Rate:
    publisher = await started_publisher(bootstrap, warm_up)
    watch = Stopwatch()
    try:
        watch.start()
        for part in chunks(records, chunk):
            await publisher.publish(part)
        watch.stop()
    finally:
        await publisher.stop()
    return Rate(
        f"(c) Rapport AiokafkaPublisher.publish, {chunk} per call", len(records), watch.seconds
    )


class TimedPublisher:
    """Wraps the relay's publisher to tell broker time from MongoDB time."""

    def __init__(self, publisher: AiokafkaPublisher) -> None:
        self.publisher = publisher
        self.seconds = 0.0

    async def publish(self, records: Records) -> None:
        started = time.perf_counter()
        try:
            await self.publisher.publish(records)
        finally:
            self.seconds += time.perf_counter() - started


async def rapport_outbox(
    bootstrap: list[str],
    client: MongoClient,
    db: Database,
    names: TopicNames,
    events: Sequence[Event[Any]],
    warm_up: Records,
    batch: int,
    relay_batch: int,
) -> tuple[Rate, Rate, Rate, Rate]:
    """Outbox writes, relay publishing, its publish() calls, and writes + relay."""
    outbox = Outbox(db, names)
    await outbox.ensure_indexes()
    publisher = await started_publisher(bootstrap, warm_up)
    timed = TimedPublisher(publisher)
    relay = OutboxRelay(db, timed, "bench", batch_size=relay_batch)
    writes, publishing = Stopwatch(), Stopwatch()
    try:
        writes.start()
        for part in chunks(events, batch):
            await in_transaction(client, functools.partial(outbox.add, events=part))
        writes.stop()
        published = 0
        batch_seconds: list[float] = []
        publishing.start()
        while True:
            started = time.perf_counter()
            if not await relay.acquire_lease():
                raise RuntimeError("another relay holds the lease of the bench database")
            done = await relay.publish_pending()
            if not done:
                break
            published += done
            batch_seconds.append(time.perf_counter() - started)
        publishing.stop()
    finally:
        await relay.stop()
        await publisher.stop()
    if published != len(events) or await relay.pending_count():
        raise RuntimeError(f"the relay published {published} of {len(events)} events")
    count = len(events)
    slowest = max(batch_seconds, default=0.0)
    return (
        Rate(f"(b) Rapport outbox writes, {batch} per transaction", count, writes.seconds),
        Rate(
            f"    relay publish_pending, {relay_batch} per batch (slowest {slowest:.2f} s)",
            count,
            publishing.seconds,
        ),
        Rate("      of which in AiokafkaPublisher.publish", count, timed.seconds),
        Rate("    outbox end to end (writes + relay)", count, writes.seconds + publishing.seconds),
    )


async def run(args: argparse.Namespace) -> None:
    bootstrap = servers(args.bootstrap)
    names = TopicNames(args.prefix)
    topic = names(PURCHASES)
    created = await ensure_topics(bootstrap, names)
    if topic not in created:  # never write fake purchases into a deployment's topics
        await delete_topics(bootstrap, created)
        raise SystemExit(f"{topic} exists already: give the bench a --prefix of its own")
    client = create_client(args.mongodb_uri, app_name="rapport-bench")
    db = client[database_name(args.prefix, "produce")]
    try:
        events = purchase_events(max(args.count, args.rapport_count))
        records = [(topic, encode(event)) for event in events[: args.count]]
        outbox_events = events[: args.rapport_count]
        size = sum(len(record.value) for _, record in records) // len(records)
        print(f"broker {args.bootstrap}, store {redact(args.mongodb_uri)}")
        print(f"topic {topic}: PurchaseCompleted CloudEvents, ~{size} B each, 1000 keys")
        print()
        warm_up = records[:WARM_UP]
        raws: list[Rate] = []
        publishers: list[Rate] = []
        for number in range(args.rounds):  # each goes first every other round
            if number % 2:
                publishers.append(
                    await rapport_publisher(bootstrap, records, warm_up, args.relay_batch)
                )
            raws.append(await raw_aiokafka(bootstrap, records, warm_up))
            if not number % 2:
                publishers.append(
                    await rapport_publisher(bootstrap, records, warm_up, args.relay_batch)
                )
        raw, publisher = best(raws), best(publishers)
        for rate, rounds in ((raw, raws), (publisher, publishers)):
            print(rate.line())
            print(rounds_line(rounds), flush=True)
        writes, relay, relay_publish, end_to_end = await rapport_outbox(
            bootstrap, client, db, names, outbox_events, warm_up, args.batch, args.relay_batch
        )
        for rate in (writes, relay, relay_publish, end_to_end):
            print(rate.line(), flush=True)
        print()
        print("ratio to raw aiokafka (rapport events/s / raw events/s):")
        print(f"  (c) publisher alone          {ratio(publisher, raw)}")
        print(f"  (b) outbox writes            {ratio(writes, raw)}")
        print(f"  (b) relay publish_pending    {ratio(relay, raw)}")
        print(f"  (b) outbox end to end        {ratio(end_to_end, raw)}")
    finally:
        await client.drop_database(db.name)
        await client.close()
        if not args.keep_topics:
            await delete_topics(bootstrap, created)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logging()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
