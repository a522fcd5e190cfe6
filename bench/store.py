"""What a write costs the store: why a thank-you costs more than a baseline event.

``python -m bench store`` times, on the store given (the development SecantusDB by
default, or ``RAPPORT_MONGODB_URI``), the writes the pipeline benchmark's baseline and the
notifications service make for one purchase, ``--count`` documents per operation, each in
its own transaction as the services do, on collections with the services' real indexes:

- the baseline's: the idempotency markers and ledger entries (``insert_many``, no
  secondary index) and the per-customer figures (``bulk_write`` of ``$inc`` upserts);
- notifications': the deliveries (``insert_many`` into the ledger with its five indexes),
  their outcomes (the dispatcher's ``bulk_write`` of
  :func:`~services.notifications.deliveries_store.finish`), the in-app message (an
  ``insert_many`` into the inbox), and the ``crm.notification.sent`` events into the outbox
  and out of it (``insert_many``, then the relay's mark as published).

It prints microseconds per document for each (the best of ``--rounds``), then what one
purchase costs in store time on each path, and the rate each path could not exceed on
this store if these writes were all it waited for (notifications also reads, renders,
sends, and shares the store with its relay; the baseline also decodes and polls). A
thank-you is two deliveries (e-mail and in-app), each recorded, sent and announced.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient, InsertOne, UpdateOne

from bench._common import connection_parser, database_name, positive, redact
from services.notifications.deliveries_domain import Delivery, DeliveryStatus
from services.notifications.deliveries_store import DeliveryLedger, delivery_document, finish
from services.notifications.inbox_store import InboxStore
from services.notifications.rules import Audience
from shared.mongo import Collection, MongoClient, update_in
from shared.outbox import Outbox
from shared.topics import TopicNames

# What one purchase costs each path, in documents written per operation.
# (the baseline's polls of up to 500 purchases name about 50 of the 100 customers each)
BASELINE = {"markers": 1.0, "ledger entries": 1.0, "figures ($inc)": 0.1}
THANK_YOU = {
    "markers": 1.0,
    "deliveries (insert)": 2.0,
    "delivery outcomes": 2.0,
    "inbox (insert)": 1.0,
    "outbox (insert)": 2.0,
    "outbox (marked published)": 2.0,
}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = connection_parser(__doc__ or "")
    parser.add_argument("--count", type=positive, default=400, help="documents per operation")
    parser.add_argument("--rounds", type=positive, default=3, help="best of this many")
    return parser.parse_args(argv)


async def timed(client: MongoClient, work: Callable[[Any], Awaitable[object]], count: int) -> float:
    """Microseconds per document of ``work``, run in one transaction."""
    started = time.perf_counter()
    async with client.start_session() as session, await session.start_transaction():
        await work(session)
    return (time.perf_counter() - started) / count * 1e6


def deliveries(count: int, now: datetime) -> list[Delivery]:
    return [
        Delivery(
            id=str(uuid.uuid4()),
            source_event_id=str(uuid.uuid4()),
            source_event_type="rapport.purchases.purchase.completed",
            subject=f"purchase:{number}",
            rule="purchase_thank_you",
            channel="email",
            customer_id=f"customer-{number % 100}",
            purpose="transactional",
            audience=Audience.CUSTOMER,
            status=DeliveryStatus.PENDING,
            context={"purchase_id": f"p-{number}", "amount": "12.50", "currency": "EUR"},
            due_at=now,
            created_at=now,
            updated_at=now,
            claim="bench",
            claimed_until=now + timedelta(minutes=2),
        )
        for number in range(count)
    ]


def inbox_documents(sent: list[Delivery], now: datetime) -> list[dict[str, Any]]:
    return [
        {"_id": d.id, "customer_id": d.customer_id, "rule": d.rule,
         "subject": "Hvala na narudžbi P-1", "text": "Hvala na narudžbi! " * 8, "locale": "hr",
         "direction": "ltr", "created_at": now, "read_at": None}
        for d in sent
    ]  # fmt: skip


def outbox_documents(count: int) -> list[dict[str, Any]]:
    return [
        {"_id": str(uuid.uuid4()), "order": ObjectId(), "type": "rapport.notification.sent",
         "topic": "crm.notifications", "key": b"customer", "value": b"x" * 600, "headers": [],
         "created_at": datetime.now(UTC), "published_at": None}
        for _ in range(count)
    ]  # fmt: skip


async def one_round(client: MongoClient, name: str, count: int) -> dict[str, float]:
    db = client[name]
    ledger = DeliveryLedger(db)
    await ledger.ensure_indexes()
    outbox = Outbox(db, TopicNames(""))
    await outbox.ensure_indexes()
    inbox = InboxStore(db)
    await inbox.ensure_indexes()
    markers, entries, figures = db["markers"], db["entries"], db["figures"]
    now = datetime.now(UTC)
    sent = deliveries(count, now)
    events = outbox_documents(count)

    def on(collection: Collection, operations: list[Any]) -> Callable[[Any], Awaitable[object]]:
        return lambda session: collection.bulk_write(operations, ordered=False, session=session)

    costs = {
        "markers": await timed(
            client,
            on(markers, [InsertOne({"_id": str(uuid.uuid4()), "at": now}) for _ in range(count)]),
            count,
        ),
        "ledger entries": await timed(
            client,
            on(
                entries,
                [
                    InsertOne(
                        {"_id": str(uuid.uuid4()), "customer_id": "c", "amount": 1250, "at": now}
                    )
                    for _ in range(count)
                ],
            ),
            count,
        ),
        "figures ($inc)": await timed(
            client,
            on(
                figures,
                [
                    UpdateOne({"_id": f"c-{n % 100}"}, {"$inc": {"total": 1}}, upsert=True)
                    for n in range(count)
                ],
            ),
            count,
        ),
        "deliveries (insert)": await timed(
            client, on(ledger.deliveries, [InsertOne(delivery_document(d)) for d in sent]), count
        ),
        "delivery outcomes": await timed(
            client,
            on(ledger.deliveries, [finish(d, {"status": "sent", "sent_at": now}) for d in sent]),
            count,
        ),
        "inbox (insert)": await timed(
            client, on(inbox.messages, [InsertOne(d) for d in inbox_documents(sent, now)]), count
        ),
        "outbox (insert)": await timed(
            client, on(outbox.collection, [InsertOne(d) for d in events]), count
        ),
        "outbox (marked published)": await timed(
            client,
            lambda session: update_in(
                outbox.collection,
                "_id",
                [d["_id"] for d in events],
                {"$set": {"published_at": now}},
                session=session,
            ),
            count,
        ),
    }
    assert await ledger.deliveries.count_documents({"status": "sent"}) == count
    await client.drop_database(name)
    return costs


async def run(args: argparse.Namespace) -> None:
    client: MongoClient = AsyncMongoClient(args.mongodb_uri, tz_aware=True)
    try:
        print(f"store {redact(args.mongodb_uri)}, {args.count} documents per operation")
        rounds = [
            await one_round(client, database_name(args.prefix, f"store{number}"), args.count)
            for number in range(args.rounds)
        ]
    finally:
        await client.close()
    best = {name: min(found[name] for found in rounds) for name in rounds[0]}
    print(f"\n{'write':32} {'µs/document':>12}  (best of {args.rounds})")
    for name, cost in best.items():
        print(f"  {name:30} {cost:12,.0f}")
    baseline = sum(best[name] * share for name, share in BASELINE.items())
    thank_you = sum(best[name] * share for name, share in THANK_YOU.items())
    print(f"\nstore time per purchase: baseline {baseline / 1000:.2f} ms, "
          f"thank-you {thank_you / 1000:.2f} ms")  # fmt: skip
    print(
        f"these writes alone cap the baseline at {1e6 / baseline:,.0f} events/s and"
        f" notifications at {1e6 / thank_you:,.0f} purchases/s on this store"
    )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    main()
