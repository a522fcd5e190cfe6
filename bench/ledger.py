"""Ledger projection: purchases through the profiles worker against raw consumption.

Creates ``--customers`` profiles, publishes ``--count`` PurchaseCompleted CloudEvents for
them on ``<prefix>crm.purchases``, then measures (a) a raw aiokafka consumer reading them
all and (b) the profiles service's worker (Faust agent, decode, idempotency marker, ledger
entry, figures, timeline entry, one transaction per purchase) projecting them all, timed
from its first ledger entry to its last. Prints both rates and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
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
from services.profiles import handlers
from services.profiles.bootstrap import create_app
from services.profiles.domain import ProfileFields
from services.profiles.settings import ProfilesSettings
from shared.events import encode, new_event
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.settings import Environment
from shared.topics import PURCHASES, TopicNames, ensure_topics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__ or "")
    parser.add_argument("--count", type=positive, default=2000, help="purchases to project")
    parser.add_argument("--customers", type=positive, default=100)
    return parser.parse_args(argv)


def purchase(number: int, customer_id: str) -> PurchaseCompleted:
    quantity = 1 + number % 3
    return PurchaseCompleted.model_validate(
        {
            "purchase_id": f"p-{number}",
            "customer_id": customer_id,
            "items": [
                {
                    "sku": f"SKU-{number % 41}",
                    "name": "Stainless kettle",
                    "category": ("kitchen", "tea", "garden")[number % 3],
                    "quantity": quantity,
                    "unit_price": "29.90",
                }
            ],
            "total_amount": str(Decimal("29.90") * quantity),
            "currency": "EUR",
            "channel": "web",
        }
    )


async def run(args: argparse.Namespace) -> None:
    quiet_logging()
    bootstrap = servers(args.bootstrap)
    names = TopicNames(args.prefix)
    topic = names(PURCHASES)
    database = database_name(args.prefix, "ledger")
    await ensure_topics(bootstrap, names)
    with tempfile.TemporaryDirectory(prefix="rapport-bench-ledger-") as state_dir:
        settings = ProfilesSettings(
            environment=Environment.DEVELOPMENT,
            kafka_bootstrap=args.bootstrap,
            mongodb_uri=args.mongodb_uri,
            topic_prefix=args.prefix,
            mongodb_database=database,
            state_dir=Path(state_dir),
        )
        try:
            await measure(args, settings, bootstrap, topic)
        finally:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongodb_uri)
            await client.drop_database(database)
            await client.close()
            if not args.keep_topics:
                await delete_topics(
                    bootstrap,
                    list(names.all()),
                    [settings.consumer_group, f"{args.prefix}raw-ledger"],
                )


async def measure(
    args: argparse.Namespace, settings: ProfilesSettings, bootstrap: list[str], topic: str
) -> None:
    app = create_app(settings)
    profiles = app.state.profiles
    ledger_entries = app.state.runtime.db["ledger"]
    async with app.router.lifespan_context(app):
        customers = [
            await handlers.register_customer(
                profiles, ProfileFields(given_name=f"Bench{n}", emails=[f"b{n}@example.com"])
            )
            for n in range(args.customers)
        ]
        publisher = AiokafkaPublisher(bootstrap, client_id="rapport-bench")
        await publisher.start()
        try:
            records = [
                (topic, encode(new_event(purchase(n, customers[n % len(customers)].id),
                                         source="/bench")))
                for n in range(args.count)
            ]  # fmt: skip
            for part in chunks(records, 1000):
                await publisher.publish(part)
        finally:
            await publisher.stop()
        print(f"broker {args.bootstrap}, store {redact(args.mongodb_uri)}")
        print(f"{args.count} purchases for {len(customers)} customers on {topic}\n")
        projected = await until_count(
            ledger_entries, args.count, "(b) profiles worker: ledger + figures + timeline"
        )
    raw_seconds = await read_group(bootstrap, topic, f"{args.prefix}raw-ledger", args.count, None)
    raw = Rate("(a) raw aiokafka consumer, getmany", args.count, raw_seconds)
    print(raw.line())
    print(projected.line())
    print(f"\nratio projection/raw: {ratio(projected, raw)}")


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
