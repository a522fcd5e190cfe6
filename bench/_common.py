"""What the benchmark scripts share: arguments, sample events, timing and clean-up."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from ops.kafka import uncommitted
from shared.events.envelope import Event, new_event
from shared.events.purchases import PurchaseCompleted

T = TypeVar("T")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_MONGODB_URI = "mongodb://127.0.0.1:27017/?retryWrites=false"
CUSTOMERS = 1000  # distinct customer ids, so keys spread over every partition
SOURCE = "/bench"
GROUP_ID_NOT_FOUND = 69  # Kafka error code: nothing to delete


def connection_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the arguments every script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("RAPPORT_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers, comma separated (env RAPPORT_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("RAPPORT_MONGODB_URI", DEFAULT_MONGODB_URI),
        help="MongoDB URI of a replica set or transaction-capable server (env RAPPORT_MONGODB_URI)",
    )
    parser.add_argument(
        "--prefix",
        default=f"bench-{uuid.uuid4().hex[:12]}.",
        help="topic prefix (and consumer group / database name stem); unique by default",
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="leave the topics and consumer groups made under --prefix on the broker",
    )
    return parser


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def servers(bootstrap: str) -> list[str]:
    return [server.strip() for server in bootstrap.split(",") if server.strip()]


def database_name(prefix: str, stage: str) -> str:
    """A database name for ``stage`` derived from the topic prefix (no dots allowed)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", prefix.rstrip("."))
    return f"{stem}_{stage}"


def redact(uri: str) -> str:
    """``uri`` without the password, fit to print."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)


def quiet_logging() -> None:
    """Warnings and errors only: benchmark output is the rates."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def purchase_events(count: int) -> list[Event[PurchaseCompleted]]:
    """``count`` valid PurchaseCompleted events over :data:`CUSTOMERS` customers."""
    events = []
    for number in range(count):
        payload = PurchaseCompleted.model_validate(
            {
                "purchase_id": f"p-{number}",
                "customer_id": f"c-{number % CUSTOMERS}",
                "items": [
                    {
                        "sku": f"SKU-{number % 97}",
                        "name": "Stainless kettle",
                        "category": "kitchen",
                        "quantity": 1 + number % 3,
                        "unit_price": "29.90",
                    }
                ],
                "total_amount": "29.90",
                "currency": "EUR",
                "channel": "web",
            }
        )
        events.append(new_event(payload, source=SOURCE))
    return events


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Rate:
    """``count`` events in ``seconds``."""

    label: str
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")

    def line(self, width: int = 58) -> str:
        return (
            f"{self.label:<{width}} {self.count:>7} events in {self.seconds:7.2f} s"
            f" = {self.per_second:>9,.0f} events/s"
        )


class Stopwatch:
    """Monotonic wall-clock time between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.stopped: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def start_once(self) -> None:
        if self.started is None:
            self.start()

    def stop(self) -> None:
        self.stopped = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.started is None or self.stopped is None:
            raise RuntimeError("the stopwatch was not started and stopped")
        return self.stopped - self.started


def best(rates: Sequence[Rate]) -> Rate:
    """The fastest of several rounds (the least disturbed by the rest of the machine)."""
    return max(rates, key=lambda rate: rate.per_second)


def rounds_line(rates: Sequence[Rate]) -> str:
    shown = " / ".join(f"{rate.per_second:,.0f}" for rate in rates)
    return f"    rounds (best kept): {shown} events/s"


def ratio(rapport: Rate, raw: Rate) -> str:
    value = rapport.per_second / raw.per_second
    if value >= 1:
        return f"{value:9.3g}"
    return f"{value:9.3g}  (1/{1 / value:,.1f})"


async def delete_topics(
    bootstrap: list[str], topics: Sequence[str], groups: Sequence[str] = ()
) -> None:
    """Delete the bench's topics and (empty) consumer groups; best effort for the groups."""
    if not topics and not groups:
        return
    admin: Any = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rapport-bench")
    await admin.start()
    try:
        if topics:
            await admin.delete_topics(list(topics), timeout_ms=30_000)
        for group in groups:
            try:
                await _delete_group(admin, group)
            except Exception as error:  # a group is left behind: worth a word, not a failure
                logging.getLogger(__name__).warning("group %s not deleted: %s", group, error)
    finally:
        await admin.close()


async def _delete_group(admin: Any, group: str) -> None:
    # aiokafka's admin client has no delete_consumer_groups: send DeleteGroups ourselves.
    coordinator = await admin.find_coordinator(group)
    response = await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
    for _, error_code in response.results:
        if error_code not in (0, GROUP_ID_NOT_FOUND):
            raise for_code(error_code)(f"cannot delete group {group}")


async def until_count(collection: Any, count: int, label: str, stall: float = 120.0) -> Rate:
    """The rate of a projection: time from the first document in ``collection`` to the
    ``count``-th; fails when nothing moves for ``stall`` seconds."""
    first: float | None = None
    baseline = 0
    last_change, seen = time.monotonic(), 0
    while True:
        done = await collection.count_documents({})
        now = time.monotonic()
        if done and first is None:
            first, baseline = now, done
        if done != seen:
            seen, last_change = done, now
        if done >= count:
            break
        if now - last_change > stall:
            raise RuntimeError(f"the projection stalled at {done} of {count}")
        await asyncio.sleep(0.05)
    assert first is not None
    return Rate(label, count - baseline, now - first)


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def partitions_of(topics: Mapping[str, int]) -> list[TopicPartition]:
    """Every partition of ``topics`` (name -> partition count)."""
    return [
        TopicPartition(name, number) for name, count in topics.items() for number in range(count)
    ]


async def commit_ends(bootstrap: list[str], group: str, topics: Mapping[str, int]) -> None:
    """Commit the end of every partition of ``topics`` for ``group``, whose members must be
    stopped: the group then reads only what is produced from now on."""
    partitions = partitions_of(topics)
    consumer: Any = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)  # manual assignment: commits without joining the group
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def group_lag(bootstrap: list[str], group: str, topics: Mapping[str, int]) -> int:
    """Records of ``topics`` that ``group`` has not committed yet (all of them for a group
    that never committed)."""
    lag, _ = await uncommitted(bootstrap, group, list(topics))
    return sum(lag.values())


async def wait_stable(bootstrap: list[str], groups: Sequence[str], within: float = 120.0) -> None:
    """Until every group has members and is ``Stable``: its partitions are assigned."""
    admin: Any = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rapport-bench")
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while True:
            states = {}
            for group in groups:
                [response] = await admin.describe_consumer_groups([group])
                [found] = response.to_object()["groups"]
                states[group] = found["state"] if found["members"] else "no members"
            if all(state == "Stable" for state in states.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumer groups not stable after {within:.0f} s: {states}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def create_customers(
    base: str,
    token: str,
    count: int,
    *,
    name: str,
    email: str,
    locales: Sequence[str] = ("en",),
    consent_source: str | None = None,
    tags: Sequence[str] = (),
) -> list[str]:
    """``count`` customers created over the profiles API at ``base`` (8 requests at a time):
    given name ``<name><n>``, the address ``email.format(n=n)``, locales in turn, and with
    ``consent_source`` the e-mail transactional consent granted. Returns their ids."""
    limit = asyncio.Semaphore(8)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def one(number: int) -> str:
            async with limit:
                created = await client.post(
                    "/api/v1/customers",
                    json={
                        "given_name": f"{name}{number}",
                        "family_name": "Bench",
                        "emails": [email.format(n=number)],
                        "locale": locales[number % len(locales)],
                        "time_zone": "Europe/Zagreb",
                        "tags": list(tags),
                    },
                )
                created.raise_for_status()
                customer_id = str(created.json()["id"])
                if consent_source is not None:
                    consent = await client.put(
                        f"/api/v1/customers/{customer_id}/consents/email/transactional",
                        json={"granted": True, "source": consent_source},
                    )
                    consent.raise_for_status()
                return customer_id

        return list(await asyncio.gather(*(one(number) for number in range(count))))
