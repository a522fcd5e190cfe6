"""Notifications end to end: latency from publishing a purchase to its e-mail arriving.

The notifications service runs as its own process (as in production) on a fresh topic
prefix and database, with an SMTP sink in this process. ``--customers`` registrations are
published first (and awaited in the service's directory); then ``--count`` purchases go
to ``crm.purchases`` at a fixed ``--rate`` per second, each timed from the moment its
producer call returned to the moment the sink received the thank-you mail that names it.
Prints the count, the achieved rate and latency percentiles (p50, p90, p99, max).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from bench._common import (
    connection_parser,
    database_name,
    delete_topics,
    positive,
    quiet_logging,
    redact,
    servers,
)
from bench.profiles import start, wait_ready
from devstack.ports import free_port
from devstack.smtp import SmtpSink
from services.notifications.deliveries_domain import delivery_id
from services.notifications.domain import Channel
from services.notifications.planning import purchase_subject
from services.notifications.rules import PURCHASE_THANK_YOU
from shared.events import encode, new_event
from shared.events.customers import CustomerRegistered
from shared.events.purchases import PurchaseCompleted
from shared.kafka import AiokafkaPublisher
from shared.topics import CUSTOMERS, PURCHASES, TopicNames, ensure_topics

DELIVERY = re.compile(rb"X-Rapport-Delivery-Id: ([0-9a-f-]{36})")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__ or "")
    parser.add_argument("--customers", type=positive, default=50)
    parser.add_argument("--count", type=positive, default=300, help="purchases to publish")
    parser.add_argument("--rate", type=float, default=10.0, help="purchases per second")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for mail")
    return parser.parse_args(argv)


def registration(number: int, now: datetime) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=f"bc-{number}",
        given_name=f"Bench{number}",
        emails=[f"bench{number}@example.com"],
        locale=("hr", "en", "cs", "sl", "fa")[number % 5],
        time_zone="UTC",
        created_at=now,
        updated_at=now,
        version=1,
    )


def purchase(number: int, customers: int) -> PurchaseCompleted:
    return PurchaseCompleted.model_validate(
        {
            "purchase_id": f"bn-{number}",
            "customer_id": f"bc-{number % customers}",
            "items": [{"sku": "K-1", "name": "Kettle", "category": "kitchen", "quantity": 1,
                       "unit_price": "29.90"}],
            "total_amount": "29.90",
            "currency": "EUR",
            "channel": "web",
        }
    )  # fmt: skip


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def run(args: argparse.Namespace) -> None:
    quiet_logging()
    names = TopicNames(args.prefix)
    database = database_name(args.prefix, "notifications")
    await ensure_topics(servers(args.bootstrap), names)
    received: dict[str, float] = {}
    sink = SmtpSink("127.0.0.1", free_port())
    original = sink._deliver

    def timed(mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        moment = time.perf_counter()
        found = DELIVERY.search(raw)
        if found:
            received.setdefault(found.group(1).decode(), moment)
        original(mail_from, rcpt_tos, raw)

    sink._deliver = timed  # type: ignore[method-assign]
    sink.start()
    port = free_port()
    env = {
        **os.environ,
        "RAPPORT_KAFKA_BOOTSTRAP": args.bootstrap,
        "RAPPORT_MONGODB_URI": args.mongodb_uri,
        "RAPPORT_TOPIC_PREFIX": args.prefix,
        "RAPPORT_NOTIFICATIONS_MONGODB_DATABASE": database,
        "RAPPORT_NOTIFICATIONS_HTTP_PORT": str(port),
        "RAPPORT_NOTIFICATIONS_SMTP_HOST": sink.host,
        "RAPPORT_NOTIFICATIONS_SMTP_PORT": str(sink.port),
        # Measure the path, not the night: no quiet hours.
        "RAPPORT_NOTIFICATIONS_QUIET_HOURS_START": "",
        "RAPPORT_NOTIFICATIONS_QUIET_HOURS_END": "",
        "RAPPORT_NOTIFICATIONS_DISPATCHER_POLL_INTERVAL_SECONDS": "0.05",
        "RAPPORT_NOTIFICATIONS_OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
        "RAPPORT_LOG_LEVEL": "WARNING",
    }
    process = start([sys.executable, "-m", "services.notifications"], env)
    publisher = AiokafkaPublisher(servers(args.bootstrap), client_id="bench-notifications")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongodb_uri)
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        await publisher.start()
        now = datetime.now(UTC)
        registrations = [
            (names(CUSTOMERS), encode(new_event(registration(n, now), source="/bench")))
            for n in range(args.customers)
        ]
        await publisher.publish(registrations)
        directory = client[database]["customers"]
        deadline = time.monotonic() + args.timeout
        while await directory.count_documents({}) < args.customers:
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not take in the registrations")
            await asyncio.sleep(0.2)
        print(
            f"broker {args.bootstrap}, store {redact(args.mongodb_uri)}; {args.customers}"
            f" customers, {args.count} purchases at {args.rate:g}/s", flush=True,
        )  # fmt: skip
        published: dict[str, float] = {}
        interval = 1.0 / args.rate
        started = time.perf_counter()
        for number in range(args.count):
            due = started + number * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = new_event(purchase(number, args.customers), source="/bench")
            await publisher.publish([(names(PURCHASES), encode(event))])
            mailed_as = delivery_id(
                purchase_subject(event.payload.purchase_id), PURCHASE_THANK_YOU, Channel.EMAIL
            )
            published[mailed_as] = time.perf_counter()
        sending = time.perf_counter() - started
        deadline = time.monotonic() + args.timeout
        while len(received.keys() & published.keys()) < args.count:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        latencies = sorted(
            (received[key] - published[key]) * 1000 for key in published if key in received
        )
        report(args, latencies, sending)
    finally:
        await publisher.stop()
        process.terminate()
        process.wait(timeout=30)
        sink.stop()
        await client.drop_database(database)
        await client.close()
        if not args.keep_topics:
            await delete_topics(
                servers(args.bootstrap), list(names.all()), [f"{args.prefix}rapport-notifications"]
            )


def report(args: argparse.Namespace, latencies: list[float], sending: float) -> None:
    if not latencies:
        print("no mail arrived")
        return
    rate = args.count / sending if sending else float("inf")
    print(f"published {args.count} in {sending:.1f} s ({rate:.1f}/s); mailed {len(latencies)}")
    print(
        f"publish -> SMTP receipt   p50 {statistics.median(latencies):8.1f} ms"
        f"   p90 {percentile(latencies, 0.90):8.1f} ms"
        f"   p99 {percentile(latencies, 0.99):8.1f} ms"
        f"   max {latencies[-1]:8.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
