"""Analytics projection: events through the analytics worker against raw consumption.

Publishes ``--count`` PurchaseCompleted CloudEvents over ``--customers`` customers on
``<prefix>crm.purchases``, then measures (a) a raw aiokafka consumer reading them all,
(b) the analytics service's worker (Faust agent, decode, idempotency marker, purchase
fact, the customer's summary rebuilt from its facts and judged, segment changes into the
outbox, one transaction per event) projecting them all, timed from its first applied
event to its last, and (c) a replay of the same topics into a fresh database
(``services.analytics.replay``: a plain aiokafka consumer feeding the same handlers, plus
one judgement of every customer at the end). Prints the rates and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench._common import (
    Rate,
    chunks,
    connection_parser,
    database_name,
    delete_topics,
    positive,
    quiet_logging,
    ratio,
    redact,
    servers,
    until_count,
)
from bench.consume import read_group
from services.analytics.bootstrap import create_app
from services.analytics.replay import replay
from services.analytics.settings import AnalyticsSettings
from shared.events import encode, new_event
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.settings import Environment
from shared.topics import PURCHASES, TopicNames, ensure_topics

START = datetime(2026, 1, 1, tzinfo=UTC)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__ or "")
    parser.add_argument("--count", type=positive, default=2000, help="purchases to project")
    parser.add_argument("--customers", type=positive, default=200)
    parser.add_argument("--no-replay", action="store_true", help="skip the replay stage")
    return parser.parse_args(argv)


def purchase(number: int, customers: int) -> PurchaseCompleted:
    quantity = 1 + number % 3
    categories = ("kitchen", "tea", "garden", "books", "toys")
    return PurchaseCompleted.model_validate(
        {
            "purchase_id": f"p-{number}",
            "customer_id": f"c-{number % customers}",
            "items": [
                {
                    "sku": f"SKU-{number % 41}",
                    "name": "Stainless kettle",
                    "category": categories[number % len(categories)],
                    "quantity": quantity,
                    "unit_price": "29.90",
                }
            ],
            "total_amount": str(Decimal("29.90") * quantity),
            "currency": "EUR",
            "channel": "web",
            "purchased_at": START + timedelta(hours=number),
        }
    )


async def run(args: argparse.Namespace) -> None:
    quiet_logging()
    bootstrap = servers(args.bootstrap)
    names = TopicNames(args.prefix)
    topic = names(PURCHASES)
    database = database_name(args.prefix, "analytics")
    replayed = database_name(args.prefix, "analytics_replay")
    await ensure_topics(bootstrap, names)
    with tempfile.TemporaryDirectory(prefix="rapport-bench-analytics-") as state_dir:
        settings = AnalyticsSettings(
            environment=Environment.DEVELOPMENT,
            kafka_bootstrap=args.bootstrap,
            mongodb_uri=args.mongodb_uri,
            topic_prefix=args.prefix,
            mongodb_database=database,
            state_dir=Path(state_dir),
            recompute_interval_seconds=3600.0,
        )
        try:
            await measure(args, settings, bootstrap, topic, replayed)
        finally:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongodb_uri)
            await client.drop_database(database)
            await client.drop_database(replayed)
            await client.close()
            if not args.keep_topics:
                await delete_topics(
                    bootstrap,
                    list(names.all()),
                    [
                        settings.consumer_group,
                        f"{args.prefix}raw-analytics",
                        f"{args.prefix}replay-analytics",
                    ],
                )


async def measure(
    args: argparse.Namespace,
    settings: AnalyticsSettings,
    bootstrap: list[str],
    topic: str,
    replayed: str,
) -> None:
    publisher = AiokafkaPublisher(bootstrap, client_id="rapport-bench")
    await publisher.start()
    try:
        records = [
            (topic, encode(new_event(purchase(n, args.customers), source="/bench")))
            for n in range(args.count)
        ]
        for part in chunks(records, 1000):
            await publisher.publish(part)
    finally:
        await publisher.stop()
    print(f"broker {args.bootstrap}, store {redact(args.mongodb_uri)}")
    print(f"{args.count} purchases for {args.customers} customers on {topic}\n")
    app = create_app(settings)
    markers = app.state.runtime.db["processed_events"]
    async with app.router.lifespan_context(app):
        projected = await until_count(
            markers, args.count, "(b) analytics worker: fact + summary + judgement"
        )
    raw_seconds = await read_group(
        bootstrap, topic, f"{args.prefix}raw-analytics", args.count, None
    )
    raw = Rate("(a) raw aiokafka consumer, getmany", args.count, raw_seconds)
    print(raw.line())
    print(projected.line())
    if not args.no_replay:
        started = time.perf_counter()
        result = await replay(
            settings,
            database=replayed,
            now=START + timedelta(days=400),
            group=f"{settings.topic_prefix}replay-analytics",
        )
        seconds = time.perf_counter() - started
        rebuilt = Rate("(c) replay into a fresh database", result.outcomes["processed"], seconds)
        print(rebuilt.line())
    print(f"\nratio worker/raw: {ratio(projected, raw)}")
    if not args.no_replay:
        print(f"ratio replay/raw: {ratio(rebuilt, raw)}")


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
