"""Replay: rebuild every analytics projection from the beginning of the topics.

``python -m services.analytics.replay [--database NAME] [--now ISO] [--compare]`` reads
every subscribed topic from offset 0 with a fresh consumer group into a fresh database
(wiped first), through the very handlers the live worker runs, until it reaches the end
offsets it found at the start; then it judges every customer at ``--now`` and prints the
figures. ``--compare`` also computes the live database's figures at the same moment and
reports every difference (exit status 1 when there is one).

Nothing is announced: the replay's outbox is never relayed, and events the live run
dead-lettered are counted, not dead-lettered again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.analytics import queries, worker
from services.analytics.handlers.context import Analytics
from services.analytics.handlers.recompute import recompute
from services.analytics.handlers.routing import routes
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared.clock import to_millisecond
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events.envelope import KafkaRecord
from shared.mongo import MongoClient, connect
from shared.outbox import Outbox
from shared.topics import TopicNames

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class CountingPublisher:
    """Stands in for the producer: a replay must not dead-letter again what the live run
    already did, so it only counts."""

    def __init__(self) -> None:
        self.records: list[tuple[str, KafkaRecord]] = []

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        self.records.extend(records)


@dataclass(frozen=True)
class ReplayResult:
    database: str
    group: str
    events: int
    outcomes: dict[str, int]
    figures: dict[str, Any]


def analytics_for(client: MongoClient, database: str, topics: TopicNames) -> Analytics:
    db = client[database]
    return Analytics(
        client=client, store=AnalyticsStore(db), outbox=Outbox(db, topics), announce=False
    )


async def replay(
    settings: AnalyticsSettings,
    *,
    database: str,
    now: datetime,
    group: str | None = None,
    idle_timeout: float = 30.0,
    progress: Progress | None = None,
) -> ReplayResult:
    """Rebuild into ``database`` (wiped first) and return its figures at ``now``;
    ``progress(done, total)`` hears of each batch (records read of the total to read)."""
    topics = TopicNames(settings.topic_prefix)
    group_id = group or f"{settings.consumer_group}-replay-{uuid.uuid4().hex[:8]}"
    client = connect(settings, app_name="rapport-analytics-replay")
    try:
        await client.drop_database(database)
        ctx = analytics_for(client, database, topics)
        await ctx.store.ensure_indexes()
        consumer = EventConsumer(
            service=settings.service_name,
            client=client,
            db=client[database],
            publisher=CountingPublisher(),
            routes=routes.bind(ctx),
            topics=topics,
            outbox=ctx.outbox,
            max_attempts=settings.consumer_max_attempts,
        )
        await consumer.ensure_indexes()
        outcomes = await _consume_all(
            settings,
            [topics(t) for t in worker.SUBSCRIPTIONS],
            group_id,
            consumer,
            idle_timeout,
            progress,
        )
        await recompute(ctx, now)
        figures = await queries.snapshot(ctx, now)
    finally:
        await client.close()
    return ReplayResult(
        database=database,
        group=group_id,
        events=sum(outcomes.values()),
        outcomes=outcomes,
        figures=figures,
    )


async def _consume_all(
    settings: AnalyticsSettings,
    topics: list[str],
    group_id: str,
    consumer: EventConsumer,
    idle_timeout: float,
    progress: Progress | None = None,
) -> dict[str, int]:
    kafka = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await kafka.start()
    outcomes: dict[str, int] = {outcome.value: 0 for outcome in Outcome}
    try:
        metadata = await kafka._client.fetch_all_metadata()  # aiokafka has no public call
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(metadata.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return outcomes
        kafka.assign(partitions)
        await kafka.seek_to_beginning(*partitions)
        ends = await kafka.end_offsets(partitions)
        waiting = {tp for tp, end in ends.items() if end > 0}
        starts = await kafka.beginning_offsets(partitions)
        total = sum(end - starts[tp] for tp, end in ends.items())
        done = 0
        idle = 0.0
        while waiting:
            batch = await kafka.getmany(timeout_ms=500, max_records=settings.consumer_batch_size)
            if not batch:
                idle += 0.5
                if idle >= idle_timeout:
                    raise TimeoutError(f"replay stalled before the end of {sorted(waiting)}")
                continue
            idle = 0.0
            messages = [
                IncomingMessage.of(record)
                for partition, records in batch.items()
                for record in records
                if record.offset < ends[partition]
            ]
            for outcome in await consumer.handle_batch(messages):  # one unit of work a poll
                outcomes[outcome.value] += 1
            done += len(messages)
            if progress is not None:
                progress(done, total)
            for partition in batch:
                if await kafka.position(partition) >= ends[partition]:
                    waiting.discard(partition)
                    kafka.pause(partition)
        await kafka.commit({tp: end for tp, end in ends.items() if end > 0})
    finally:
        await kafka.stop()
    return outcomes


async def live_figures(settings: AnalyticsSettings, now: datetime) -> dict[str, Any]:
    """The live database's figures at ``now``, judged afresh; nothing is written."""
    client = connect(settings, app_name="rapport-analytics-replay")
    try:
        ctx = analytics_for(client, settings.mongodb_database, TopicNames(settings.topic_prefix))
        return await queries.snapshot(ctx, now)
    finally:
        await client.close()


def differences(live: Any, replayed: Any, path: str = "") -> list[str]:
    """Where two figure trees differ, as ``path: live != replayed`` lines."""
    if isinstance(live, dict) and isinstance(replayed, dict):
        found = []
        for key in sorted(set(live) | set(replayed), key=str):
            found += differences(live.get(key), replayed.get(key), f"{path}/{key}")
        return found
    if isinstance(live, list) and isinstance(replayed, list) and len(live) == len(replayed):
        found = []
        for index, (a, b) in enumerate(zip(live, replayed, strict=True)):
            found += differences(a, b, f"{path}[{index}]")
        return found
    return [] if live == replayed else [f"{path}: {live!r} != {replayed!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    settings = AnalyticsSettings()
    parser.add_argument(
        "--database",
        default=f"{settings.mongodb_database}_replay",
        help="database to rebuild into (wiped first); default <live database>_replay",
    )
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=None, help="judge at this moment (UTC)"
    )
    parser.add_argument("--compare", action="store_true", help="compare with the live figures")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    args = parser.parse_args(argv)
    if args.database == settings.mongodb_database:
        parser.error("the replay must not rebuild into the live database")
    logging.basicConfig(level=logging.WARNING)
    now = to_millisecond(args.now or datetime.now(UTC))
    result = asyncio.run(replay(settings, database=args.database, now=now))
    figures = result.figures
    print(f"replayed {result.events} events into {result.database} (group {result.group})")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in result.outcomes.items()))
    if args.json:
        print(json.dumps(figures, default=str, indent=2, sort_keys=True))
    else:
        day = figures["kpis"]["24h"]
        print(
            f"at {now.isoformat()}: last 24h {day['purchases']} purchases, revenue {day['revenue']}"
        )
        print("segments: " + ", ".join(f"{k} {v}" for k, v in figures["segments"].items()))
    if not args.compare:
        return 0
    found = differences(asyncio.run(live_figures(settings, now)), figures)
    if found:
        print(f"{len(found)} differences from the live figures:")
        print("\n".join(found[:200]))
        return 1
    print("the replayed figures equal the live figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
