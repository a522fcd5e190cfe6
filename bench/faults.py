"""The fault run: purchases at a steady rate while services, broker and store are stopped,
killed and restarted on a schedule; then what was lost and what was doubled.

``python -m bench.faults`` runs the four services as processes (``python -m
services.<name>``, supervised as ``make up`` supervises them: a service that exits is
restarted after a back-off) on a topic prefix and databases of their own, with an SMTP
sink in this process. It creates ``--customers`` customers over the profiles HTTP API (an
e-mail address and the e-mail transactional consent each) and waits until every service
has taken them in. A foreign producer (a raw ``AIOKafkaProducer``, the CloudEvents
written by hand) then sends ``--rate`` purchases per second for ``--seconds``, resending
a purchase, under the same event id, until the broker acknowledges it, as a till would.

Meanwhile, spread over the run, each service gets a SIGTERM and, at another moment, a
SIGKILL of its whole process group; the supervisor restarts it. With ``--own-infra`` the
script starts its own Kafka broker and SecantusDB (on disk, in a temporary folder) and
also kills the broker (SIGKILL) and stops the store (SIGTERM) mid-run, restarting each a
few seconds later. The store is not SIGKILLed: without ``--sync-on-commit`` SecantusDB
may lose its last commits to a kill, which would measure SecantusDB, not Rapport. On an
external broker and store (``--bootstrap``, ``--mongodb-uri``) those two are left alone.

When the purchases are all sent and every service is back, it waits until nothing moves
(every consumer group has committed everything, no delivery is pending, nothing changed
for ``--settle`` seconds; a delivery claimed by a sender that was killed is due again
when its claim expires, 120 s by default) and prints, for each effect, how many purchases
were produced, applied, lost and duplicated:

- profiles ledger: the purchase's ledger entry (profiles database, ``ledger``); a
  duplicate is a purchase counted twice in the customer's figures;
- analytics revenue: the purchase's fact (analytics database, ``purchases``), which the
  revenue KPI sums; the KPI (30 days) is printed against the amount produced;
- thank-you e-mails: mails that reached the SMTP sink naming the purchase; a duplicate is
  the same purchase thanked twice (and whether the repeat had the same Message-ID);

then the dead-lettered records, the thank-you deliveries by status, and whether the
analytics figures rebuilt from the topics (``services.analytics.replay``, what ``make
replay`` runs) equal the live ones. The services' output goes to a log file (printed).

It is a report, not a test: the exit status is 0 whenever the run itself worked. The
processes, topics, consumer groups and databases it made are removed at the end, on
Ctrl-C too (``--keep-topics`` keeps topics and groups).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import IO, Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient

from bench._common import (
    connection_parser,
    create_customers,
    database_name,
    delete_topics,
    group_lag,
    positive,
    quiet_logging,
    redact,
    servers,
)
from devstack.kafka import KafkaBroker
from devstack.mongo import SecantusServer
from devstack.paths import REPO_ROOT
from devstack.ports import free_port, free_ports
from devstack.processes import Backoff, Supervisor
from devstack.smtp import ReceivedMessage, SmtpSink
from services.analytics.replay import differences, live_figures, replay
from services.analytics.settings import AnalyticsSettings
from services.notifications.rules import PURCHASE_THANK_YOU
from shared.mongo import find_in
from shared.settings import Environment
from shared.topics import PURCHASES, TopicNames, ensure_topics

SERVICES = ("profiles", "complaints", "notifications", "analytics")
ADMIN_TOKEN = "fault-run-admin-token"
READY_WITHIN = 240.0
# Restarts as make up does them, but a service that stayed up 20 s counts as healthy
# again: the schedule kills each one twice within a minute or two.
RESTART_BACKOFF = Backoff(initial=1.0, maximum=30.0, reset_after=20.0)
INFRA_DOWNTIME = 5.0  # seconds the broker or the store stays down
PURCHASE_ID = re.compile(r"\bF[0-9a-f]{8}-\d{6}\b")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="purchases per second")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to produce")
    parser.add_argument("--customers", type=positive, default=50)
    parser.add_argument(
        "--own-infra",
        action="store_true",
        help="start a Kafka broker and a SecantusDB of its own, and restart them mid-run",
    )
    parser.add_argument(
        "--settle", type=float, default=15.0, help="quiet seconds that count as quiescence"
    )
    parser.add_argument(
        "--quiesce-timeout",
        type=float,
        default=600.0,
        help="give up waiting for quiescence after this many seconds (and count anyway)",
    )
    parser.add_argument("--log", type=Path, help="the services' output (default: a temp file)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    return args


# -- the schedule --------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the first purchase
    action: str  # "SIGTERM" or "SIGKILL"
    target: str  # a service, "broker" or "store"


def schedule(seconds: float, own_infra: bool) -> list[Fault]:
    """Every service stopped once and killed once (never both at the same moment), plus
    the broker killed and the store stopped when they are ours, spread over the run."""
    steps = [
        ("SIGTERM", "profiles"),
        ("SIGKILL", "notifications"),
        ("SIGTERM", "analytics"),
        ("SIGKILL", "complaints"),
        ("SIGKILL", "profiles"),
        ("SIGTERM", "notifications"),
        ("SIGKILL", "analytics"),
        ("SIGTERM", "complaints"),
    ]
    if own_infra:
        steps.insert(4, ("SIGKILL", "broker"))
        steps.append(("SIGTERM", "store"))
    first, last = 0.1 * seconds, 0.8 * seconds
    gap = (last - first) / (len(steps) - 1)
    return [
        Fault(round(first + index * gap, 1), action, target)
        for index, (action, target) in enumerate(steps)
    ]


# -- what is printed while it runs -----------------------------------------------------


class Report:
    """Progress lines on stdout (with the time since the first purchase) and in the log;
    the services' own lines only in the log."""

    def __init__(self, log: IO[str]) -> None:
        self._log = log
        self.t0: float | None = None

    def say(self, text: str) -> None:
        stamp = "" if self.t0 is None else f"[{time.monotonic() - self.t0:6.1f} s] "
        print(f"{stamp}{text}", flush=True)
        self._log.write(f"--- {stamp}{text}\n")
        self._log.flush()

    def supervisor(self, text: str) -> None:
        self.say(f"supervisor: {text}")

    def service_line(self, source: str, text: str) -> None:
        self._log.write(f"{source:<13}| {text}\n")


# -- the infrastructure ----------------------------------------------------------------


class OwnInfra:
    """A Kafka broker and a SecantusDB of this run, on disk in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.broker = KafkaBroker(
            folder / "kafka", *free_ports(2), log_file=folder / "kafka.log", heap="512m"
        )
        self.store = SecantusServer(
            free_port(), folder / "mongo", log_file=folder / "secantusd.log"
        )

    def start(self) -> None:
        self.broker.start()
        self.store.start()

    def stop(self) -> None:
        self.store.stop()
        self.broker.stop()

    async def kill_broker(self, report: Report) -> None:
        pid = self.broker.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.broker.stop()  # reaps it and forgets its pid file
        report.say(f"SIGKILL broker (pid {pid}); restarting it in {INFRA_DOWNTIME:g} s")
        await asyncio.sleep(INFRA_DOWNTIME)
        self.broker.launch()  # from the main thread, so it dies with us
        await asyncio.to_thread(self.broker.wait_ready, 120.0)
        report.say(f"broker back (pid {self.broker.pid})")

    async def stop_store(self, report: Report) -> None:
        pid = self.store.pid
        report.say(f"SIGTERM store (pid {pid}); restarting it {INFRA_DOWNTIME:g} s after it exits")
        await asyncio.to_thread(self.store.stop)
        await asyncio.sleep(INFRA_DOWNTIME)
        # Started from a worker thread (its start waits for a ping): no parent-death
        # signal then, but the atexit hook and the final stop still end it.
        await asyncio.to_thread(self.store.start)
        report.say(f"store back (pid {self.store.pid})")


# -- the run -----------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    report: Report
    names: TopicNames
    bootstrap: list[str]
    mongodb_uri: str
    supervisor: Supervisor
    sink: SmtpSink
    ports: dict[str, int]
    infra: OwnInfra | None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    produced: dict[str, Decimal] = field(default_factory=dict)  # purchase id -> amount
    acknowledged: int = 0
    resends: int = 0

    @property
    def prefix(self) -> str:
        return self.names.prefix

    def database(self, service: str) -> str:
        return database_name(self.prefix, service)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def group(self, service: str) -> str:
        return f"{self.prefix}rapport-{service}"

    def subscriptions(self, service: str) -> dict[str, int]:
        topics: list[str] = import_module(f"services.{service}.worker").SUBSCRIPTIONS
        partitions = self.names.all()
        return {self.names(topic): partitions[self.names(topic)] for topic in topics}

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RAPPORT_ENVIRONMENT="development",
            RAPPORT_KAFKA_BOOTSTRAP=",".join(self.bootstrap),
            RAPPORT_MONGODB_URI=self.mongodb_uri,
            RAPPORT_TOPIC_PREFIX=self.prefix,
            RAPPORT_ADMIN_TOKEN=ADMIN_TOKEN,
            RAPPORT_NOTIFICATIONS_SMTP_HOST=self.sink.host,
            RAPPORT_NOTIFICATIONS_SMTP_PORT=str(self.sink.port),
            # Count what is lost, not what the night holds back.
            RAPPORT_NOTIFICATIONS_QUIET_HOURS_START="",
            RAPPORT_NOTIFICATIONS_QUIET_HOURS_END="",
            PYTHONUNBUFFERED="1",
        )
        for service in SERVICES:
            env[f"RAPPORT_{service.upper()}_MONGODB_DATABASE"] = self.database(service)
            env[f"RAPPORT_{service.upper()}_HTTP_PORT"] = str(self.ports[service])
        return env


async def supervise(supervisor: Supervisor) -> None:
    """Restart what died, from this (the main) thread."""
    while True:
        supervisor.poll()
        await asyncio.sleep(0.2)


async def ready(run: Run, service: str, client: httpx.AsyncClient) -> bool:
    try:
        response = await client.get(f"{run.url(service)}/readyz", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def wait_all_ready(run: Run, within: float = READY_WITHIN) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        waiting = set(SERVICES)
        while waiting:
            for service in sorted(waiting):
                child = run.supervisor.child(service)
                if child.exit_code() is None and await ready(run, service, client):
                    waiting.discard(service)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {within:.0f} s: {', '.join(sorted(waiting))}")
            await asyncio.sleep(0.5)


async def total_lag(run: Run) -> dict[str, int]:
    return {
        service: await group_lag(run.bootstrap, run.group(service), run.subscriptions(service))
        for service in SERVICES
    }


async def wait_caught_up(run: Run, within: float) -> None:
    """Until every group has committed everything on its topics."""
    deadline = time.monotonic() + within
    while True:
        lags = await total_lag(run)
        if not any(lags.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the services did not catch up within {within:.0f} s: {lags}")
        await asyncio.sleep(1)


# -- the foreign till ----------------------------------------------------------------------


def purchase_envelope(purchase_id: str, customer_id: str, amount: Decimal) -> dict[str, Any]:
    """A purchase as a shop writes it by hand: a structured CloudEvent, no Rapport code."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:shop:fault-run-till",
        "type": "crm.purchase.completed",
        "subject": customer_id,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "purchase_id": purchase_id,
            "customer_id": customer_id,
            "items": [
                {
                    "sku": "KET-1",
                    "name": "Stainless kettle",
                    "category": "kitchen",
                    "quantity": 1,
                    "unit_price": str(amount),
                }
            ],
            "total_amount": str(amount),
            "currency": "EUR",
            "channel": "store",
        },
    }


class Till:
    """Sends each purchase until the broker has it (``acks=all``), resending the very same
    record after a failure; a new producer when the old one has failed for a while."""

    RENEW_AFTER = 15.0

    def __init__(self, run: Run) -> None:
        self._run = run
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._last_success = time.monotonic()

    async def _current(self) -> AIOKafkaProducer:
        async with self._lock:
            stale = time.monotonic() - self._last_success > self.RENEW_AFTER
            if self._producer is not None and stale:
                old, self._producer = self._producer, None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.stop(), 10)
                self._last_success = time.monotonic()
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._run.bootstrap,
                    client_id="fault-run-till",
                    acks="all",
                    request_timeout_ms=10_000,
                )
                try:
                    await producer.start()
                except Exception:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                producer = await self._current()
                await producer.send_and_wait(
                    topic,
                    value,
                    key=key,
                    headers=[("content-type", b"application/cloudevents+json")],
                )
            except (TimeoutError, KafkaError, OSError):
                self._run.resends += 1
                await asyncio.sleep(0.5)
                continue
            self._last_success = time.monotonic()
            self._run.acknowledged += 1
            return

    async def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 10)


async def produce(run: Run, customers: list[str]) -> None:
    till = Till(run)
    topic = run.names(PURCHASES)
    total = round(run.args.rate * run.args.seconds)
    in_flight: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(200)
    assert run.report.t0 is not None
    try:
        for number in range(total):
            delay = run.report.t0 + number / run.args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            purchase_id = f"F{run.tag}-{number:06d}"
            customer_id = customers[number % len(customers)]
            amount = Decimal("10.00") + number % 5
            envelope = purchase_envelope(purchase_id, customer_id, amount)
            run.produced[purchase_id] = amount
            await limit.acquire()
            task = asyncio.create_task(
                till.send(topic, customer_id.encode(), json.dumps(envelope).encode())
            )
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: limit.release())
        await asyncio.gather(*in_flight)
    finally:
        for task in in_flight:
            task.cancel()
        await till.close()
    run.report.say(f"all {total} purchases acknowledged by the broker ({run.resends} resends)")


async def inflict(run: Run, faults: list[Fault]) -> None:
    """Each fault at its time, whether or not the one before is over (a broker restart
    takes a while)."""
    await asyncio.gather(*(one_fault(run, fault) for fault in faults))


async def one_fault(run: Run, fault: Fault) -> None:
    assert run.report.t0 is not None
    delay = run.report.t0 + fault.at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    if fault.target == "broker":
        assert run.infra is not None
        await run.infra.kill_broker(run.report)
    elif fault.target == "store":
        assert run.infra is not None
        await run.infra.stop_store(run.report)
    else:
        pid = run.supervisor.send_signal(fault.target, signal.Signals[fault.action])
        if pid is None:
            run.report.say(f"{fault.action} {fault.target}: not running (skipped)")
        else:
            run.report.say(f"{fault.action} {fault.target} (pid {pid})")


# -- counting ------------------------------------------------------------------------------


@dataclass
class Counts:
    ledger: set[str]
    ledger_figures: int
    facts: set[str]
    mails: Counter[str]
    same_message_id: int
    pending: int


def thanked(messages: Sequence[ReceivedMessage]) -> tuple[Counter[str], int]:
    """Mails per purchase id, and how many repeats carried a Message-ID seen before."""
    per_purchase: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    repeats = 0
    for message in messages:
        found = PURCHASE_ID.search(str(message["Subject"] or "")) or PURCHASE_ID.search(
            message.text()
        )
        if found is None:
            continue
        per_purchase[found.group(0)] += 1
        key = (found.group(0), str(message["Message-ID"]))
        if key in seen:
            repeats += 1
        seen.add(key)
    return per_purchase, repeats


async def count(run: Run, client: AsyncMongoClient[dict[str, Any]]) -> Counts:
    ids = list(run.produced)
    profiles = client[run.database("profiles")]
    # (by RAPPORT_MONGODB_IN_CHUNK keys: one $in of thousands costs the Python store minutes)
    entries = await find_in(
        profiles["ledger"], "_id", [f"purchase:{pid}" for pid in ids], projection=["_id"]
    )
    ledger = {document["_id"].removeprefix("purchase:") for document in entries}
    figures = 0
    async for document in profiles["customer_figures"].find({}, {"purchase_count": 1}):
        figures += int(document.get("purchase_count", 0))
    analytics = client[run.database("analytics")]
    facts = {
        document["_id"]
        for document in await find_in(analytics["purchases"], "_id", ids, projection=["_id"])
    }
    mails, same = thanked(run.sink.messages)
    pending = await client[run.database("notifications")]["deliveries"].count_documents(
        {"status": "pending"}
    )
    return Counts(ledger, figures, facts, mails, same, pending)


async def wait_quiescent(run: Run, client: AsyncMongoClient[dict[str, Any]]) -> float:
    """Seconds until every group has committed everything, no delivery is pending (one
    claimed by a sender that was killed waits for the claim to expire) and nothing
    changed for ``--settle`` seconds; or the timeout."""
    started = time.monotonic()
    last: tuple[int, ...] | None = None
    still_since = started
    while True:
        counts = await count(run, client)
        lags = await total_lag(run)
        now = time.monotonic()
        state = (
            len(counts.ledger),
            len(counts.facts),
            sum(counts.mails.values()),
            counts.pending,
            *lags.values(),
        )
        if state != last:
            last, still_since = state, now
        caught_up = not any(lags.values()) and counts.pending == 0
        if caught_up and now - still_since >= run.args.settle:
            return now - started
        if now - started > run.args.quiesce_timeout:
            run.report.say(f"still moving after {run.args.quiesce_timeout:.0f} s; counting now")
            return now - started
        await asyncio.sleep(2)


async def progress(run: Run, client: AsyncMongoClient[dict[str, Any]], every: float) -> None:
    """A line every ``every`` seconds: what was sent, what each effect has reached."""
    while True:
        await asyncio.sleep(every)
        try:
            counts = await asyncio.wait_for(count(run, client), every)
            effects = (
                f"ledger {len(counts.ledger)}, facts {len(counts.facts)},"
                f" mails {sum(counts.mails.values())}, pending deliveries {counts.pending}"
            )
        except Exception as error:  # the store restarting: say so, go on
            effects = f"store unreachable ({type(error).__name__})"
        try:  # no time limit: a cancelled lag query would leave its consumer open
            lags = await total_lag(run)
            lag = "lag " + ", ".join(f"{s} {n}" for s, n in lags.items())
        except Exception as error:  # the broker restarting
            lag = f"broker unreachable ({type(error).__name__})"
        run.report.say(f"sent {run.acknowledged}/{len(run.produced)}; {effects}; {lag}")


async def dead_letters(run: Run) -> dict[str, int]:
    consumer: Any = AIOKafkaConsumer(bootstrap_servers=run.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(name, number)
            for name, count in run.names.all().items()
            if name.endswith(".dlq")
            for number in range(count)
        ]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    found: Counter[str] = Counter()
    for partition, end in ends.items():
        found[partition.topic.removeprefix(run.prefix)] += end
    return {topic: records for topic, records in sorted(found.items()) if records}


async def deliveries(
    run: Run, client: AsyncMongoClient[dict[str, Any]]
) -> list[tuple[str, str | None, int]]:
    pipeline: list[dict[str, Any]] = [
        {"$match": {"rule": PURCHASE_THANK_YOU, "channel": "email"}},
        {"$group": {"_id": {"status": "$status", "reason": "$reason"}, "count": {"$sum": 1}}},
    ]
    collection = client[run.database("notifications")]["deliveries"]
    rows = [document async for document in await collection.aggregate(pipeline)]
    return sorted(
        ((row["_id"]["status"], row["_id"].get("reason"), row["count"]) for row in rows),
        key=lambda row: (row[0], -row[2]),
    )


def row(label: str, produced: int, applied: int, duplicated: int) -> str:
    lost = produced - applied
    return f"{label:<22} {produced:>9} {applied:>9} {lost:>7} {duplicated:>11}"


async def summarise(run: Run, client: AsyncMongoClient[dict[str, Any]], waited: float) -> None:
    counts = await count(run, client)
    produced = set(run.produced)
    settings = AnalyticsSettings(
        environment=Environment.DEVELOPMENT,
        kafka_bootstrap=",".join(run.bootstrap),
        mongodb_uri=run.mongodb_uri,
        topic_prefix=run.prefix,
        mongodb_database=run.database("analytics"),
    )
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    live = await live_figures(settings, now)
    revenue = Decimal(live["kpis"]["30d"]["revenue"].get("EUR", "0"))
    kpi_purchases = int(live["kpis"]["30d"]["purchases"])
    expected = sum(run.produced.values(), Decimal(0))
    mails_duplicated = sum(n - 1 for n in counts.mails.values() if n > 1)

    print()
    print(f"quiescent after {waited:.0f} s")
    print(f"{'':<22} {'produced':>9} {'applied':>9} {'lost':>7} {'duplicated':>11}")
    print(
        row(
            "profiles ledger",
            len(produced),
            len(counts.ledger & produced),
            max(0, counts.ledger_figures - len(counts.ledger)),
        )
    )
    print(
        row(
            "analytics revenue",
            len(produced),
            len(counts.facts & produced),
            max(0, kpi_purchases - len(counts.facts)),
        )
    )
    print(row("thank-you e-mails", len(produced), len(counts.mails.keys() & produced),
              mails_duplicated))  # fmt: skip
    print(
        f"analytics revenue KPI (30d): {revenue:,.2f} EUR shown, {expected:,.2f} EUR produced"
        f" (difference {revenue - expected:+,.2f})"
    )
    if mails_duplicated:
        print(f"  repeated mails with a Message-ID seen before: {counts.same_message_id}")
    print(f"foreign producer resends: {run.resends}")
    dlq = await dead_letters(run)
    print("dead-lettered: " + (", ".join(f"{t} {n}" for t, n in dlq.items()) or "none"))
    print("thank-you deliveries (e-mail):")
    for status, reason, number in await deliveries(run, client):
        print(f"  {status:<10} {number:>6}" + (f"  ({reason})" if reason else ""))

    replayed_db = database_name(run.prefix, "analytics_replay")
    result = await replay(
        settings, database=replayed_db, now=now, group=f"{run.prefix}replay-analytics"
    )
    found = differences(live, result.figures)
    if found:
        print(f"replay equals live: NO, {len(found)} differences ({result.events} events read)")
        for line in found[:10]:
            print(f"  {line}")
    else:
        print(f"replay equals live: yes ({result.events} events read)")


async def execute(args: argparse.Namespace) -> int:
    quiet_logging()
    # A broker that is down makes aiokafka log every attempt; the till counts them.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    log_path = args.log or Path(tempfile.mkstemp(prefix="rapport-faults-", suffix=".log")[1])
    workdir = Path(tempfile.mkdtemp(prefix="rapport-faults-"))
    with log_path.open("a", encoding="utf-8") as log:
        report = Report(log)
        infra = OwnInfra(workdir) if args.own_infra else None
        supervisor = Supervisor(report.supervisor, report.service_line, RESTART_BACKOFF)
        sink = SmtpSink("127.0.0.1", free_port())
        cleanups: list[Callable[[], Awaitable[None]]] = []
        try:
            if infra is not None:
                report.say("starting a Kafka broker and a SecantusDB (on disk) for this run")
                infra.start()
                bootstrap, mongodb_uri = infra.broker.bootstrap, infra.store.uri
            else:
                bootstrap, mongodb_uri = args.bootstrap, args.mongodb_uri
            sink.start()
            run = Run(
                args=args,
                report=report,
                names=TopicNames(args.prefix),
                bootstrap=servers(bootstrap),
                mongodb_uri=mongodb_uri,
                supervisor=supervisor,
                sink=sink,
                ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
                infra=infra,
            )
            cleanups.append(lambda: clean_up(run))
            return await drive(run, log_path)
        finally:
            supervisor.stop(timeout=20)
            for step in cleanups:
                try:
                    await step()
                except Exception as error:  # clean up the rest regardless
                    print(f"clean-up: {error}", file=sys.stderr)
            sink.stop()
            if infra is not None:
                infra.stop()
            shutil.rmtree(workdir, ignore_errors=True)


async def drive(run: Run, log_path: Path) -> int:
    args, report = run.args, run.report
    await ensure_topics(run.bootstrap, run.names)
    broker = ",".join(run.bootstrap)
    own = run.infra is not None
    broker_note = "ours, killed mid-run" if own else "external: not restarted"
    store_note = "ours, stopped mid-run" if own else "external: not restarted"
    report.say(f"broker {broker} ({broker_note}), store {redact(run.mongodb_uri)} ({store_note})")
    report.say(f"topic prefix {run.prefix}; the services' output goes to {log_path}")
    env = run.service_env()
    for service in SERVICES:
        command = [sys.executable, "-m", f"services.{service}"]
        run.supervisor.start(service, command, env=env, cwd=REPO_ROOT)
    watcher = asyncio.create_task(supervise(run.supervisor))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(run.mongodb_uri)
    try:
        await wait_all_ready(run)
        customers = await create_customers(
            run.url("profiles"), ADMIN_TOKEN, run.args.customers,
            name="Faulty", email=f"faulty{{n}}.{run.tag}@example.com",
            consent_source="fault run",
        )  # fmt: skip
        await wait_caught_up(run, READY_WITHIN)
        faults = schedule(args.seconds, own)
        report.say(
            f"{len(customers)} customers known to every service; {args.rate:g} purchases/s"
            f" for {args.seconds:g} s, {len(faults)} faults"
        )
        report.t0 = time.monotonic()
        reporter = asyncio.create_task(progress(run, client, every=10.0))
        try:
            await asyncio.gather(produce(run, customers), inflict(run, faults))
            report.say("waiting for every service to be back and ready")
            await wait_all_ready(run)
            waited = await wait_quiescent(run, client)
        finally:
            reporter.cancel()
        await summarise(run, client, waited)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await client.close()
    return 0


async def clean_up(run: Run) -> None:
    if run.infra is not None:
        return  # the broker and the store go with the temporary folder
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(run.mongodb_uri)
    try:
        for service in (*SERVICES, "analytics_replay"):
            await client.drop_database(run.database(service))
    finally:
        await client.close()
    if not run.args.keep_topics:
        groups = [run.group(service) for service in SERVICES]
        await delete_topics(
            run.bootstrap, list(run.names.all()), [*groups, f"{run.prefix}replay-analytics"]
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await execute(args)

    try:
        status = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything the run made was removed", file=sys.stderr)
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
