"""The pipeline as a shop sees it: purchases in from a foreign producer, effects out.

``python -m bench pipeline`` runs the four services as processes (``python -m
services.<name>``, as ``make up`` does) on a topic prefix and databases of their own, with
an SMTP sink in this process. It creates ``--customers`` customers over the profiles HTTP
API (an e-mail address and the e-mail transactional consent each) and waits until
notifications and analytics know them. Purchases then come from a foreign producer:
librdkafka (confluent-kafka) when it is installed, else a raw ``AIOKafkaProducer``; the
CloudEvents are written by hand, not by Rapport's publisher. A purchase is applied when:

- profiles: its ledger entry is stored (profiles database, ``ledger``);
- analytics: its purchase fact is stored, which the revenue figures sum (analytics
  database, ``purchases``);
- notifications: its thank-you e-mail reached the SMTP sink.

Every measurement works the same way: the consumer groups of what is about to run are
moved to the end of their topics (so no backlog of an earlier measurement is read), the
processes are started and their groups joined (neither is timed), then ``--count`` fresh
purchases are sent as fast as the producer goes, and each service's time runs from the
first purchase sent to its last one applied. Measurements:

1. baseline: a plain aiokafka consumer in this process doing the same kind of work per
   poll: decode each CloudEvent, ``insert_many`` the idempotency markers, ``insert_many``
   the ledger entries, ``$inc`` the per-customer figures (one ``bulk_write`` of
   ``UpdateOne`` upserts), all in one transaction, then commit the offsets.
   When an e-mail rate is measured, the e-mail baseline runs after it
   (``bench.raw_mail``, a process of its own): a plain aiokafka consumer that sends a
   plain-text thank-you per purchase through aiosmtplib to the same sink and records
   markers and sends in one transaction per poll. It is no target, it tells what an
   e-mail costs here before any of Rapport's work: the summary prints its ratio to the
   baseline and notifications' ratio to it.
2. alone: profiles, analytics and notifications in turn, only that one process running.
3. platform: the four services at once.
4. latency: with the platform still running, ``--rate`` purchases per second for
   ``--seconds``, each timed from the moment it was handed to the producer to the moment
   its thank-you e-mail reached the sink.

``--replicas N`` runs every service as N processes (one consumer group, an HTTP port
each), as a deployment scales it; the targets are for one, and the summary says so.

Measurements 1 to 3 make a round, run ``--rounds`` times (default 2): the machine is shared
and a rate moves between runs minutes apart, so every throughput figure, the baseline's
as the services', counts at the fastest of its rounds (the platform at its best round:
the one whose slowest service did best), and the summary shows each round's ratios to
that round's baseline beside it. Latency runs once, after the last round.

It prints each time, events/s, the ratio to the baseline and the targets (alone: at least
0.5 each; platform: the slowest at least 0.2; latency: p99 under 2 s). Under each
measurement a ``cpu:`` line says how busy each process was meanwhile (CPU seconds over
the measurement's seconds: 100 % is one core busy all along): the services, the store and
the broker when they run on this machine, and this process (the producer, the SMTP sink,
the baseline). It tells what a rate was waiting for: a service near 100 % is bound by its
own code, one well under it by what it waits on. A measurement that
makes no progress for ``--stall`` seconds, or takes longer than ``--timeout``, is reported
with how far each service got, and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from subprocess import Popen
from typing import Any, Protocol

import httpx
import psutil
from aiokafka import AIOKafkaProducer
from bson import Decimal128
from pymongo import UpdateOne
from pymongo.uri_parser import parse_uri

from bench._common import (
    Rate,
    commit_ends,
    connection_parser,
    create_customers,
    database_name,
    delete_topics,
    group_lag,
    positive,
    quiet_logging,
    redact,
    servers,
    verdict,
    wait_stable,
)
from bench.notifications import DELIVERY, percentile
from bench.raw import RawLoop
from bench.raw_mail import MAIL_BASELINE
from devstack import processes
from devstack.paths import REPO_ROOT
from devstack.ports import free_port
from devstack.smtp import SmtpSink
from services.notifications.deliveries_domain import delivery_id
from services.notifications.domain import Channel
from services.notifications.planning import purchase_subject
from services.notifications.rules import PURCHASE_THANK_YOU
from services.profiles.ledger import purchase_entry_id
from shared.events.envelope import CONTENT_TYPE, decode
from shared.events.purchases import PurchaseCompleted
from shared.mongo import (
    Collection,
    Database,
    MongoClient,
    Session,
    chunks,
    create_client,
    find_in,
    in_transaction,
)
from shared.topics import PURCHASES, TopicNames, ensure_topics

SERVICES = ("profiles", "complaints", "notifications", "analytics")
MEASURED = ("profiles", "analytics", "notifications")  # what a purchase visibly changes
ADMIN_TOKEN = "bench-pipeline-admin-token"
SHOP = "/shop/checkout"
ALONE_TARGET = 0.5
PLATFORM_TARGET = 0.2
LATENCY_TARGET_MS = 2000.0
POLL = 0.1  # seconds between looks at the store
PROGRESS_EVERY = 10.0  # seconds between full counts (progress, stalls)
SAY_EVERY = 30.0  # seconds between progress lines on stderr
STOP_TIMEOUT = 30.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__.splitlines()[0] if __doc__ else "pipeline benchmark")
    parser.add_argument("--count", type=positive, default=2000, help="purchases per measurement")
    parser.add_argument(
        "--rounds",
        type=positive,
        default=2,
        help="times each throughput measurement runs, the baseline's like the services'"
        " (the fastest of each counts)",
    )
    parser.add_argument(
        "--replicas",
        type=positive,
        default=1,
        help="processes of each service (one consumer group, HTTP ports of their own); the"
        " targets are for one",
    )
    parser.add_argument("--customers", type=positive, default=100)
    parser.add_argument("--rate", type=positive, default=100, help="latency: purchases/s")
    parser.add_argument("--seconds", type=positive, default=60, help="latency: how long")
    parser.add_argument(
        "--stall", type=float, default=120.0, help="give up after this long without progress"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up on a measurement after this long"
    )
    parser.add_argument(
        "--producer",
        choices=("auto", "librdkafka", "aiokafka"),
        default="auto",
        help="the foreign producer (auto: librdkafka if confluent-kafka is installed)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="leave the databases, topics and groups (``python -m bench`` passes it when the"
        " broker and store are its own, thrown away with their data at the end)",
    )
    parser.add_argument(
        "--modes",
        type=modes,
        default=",".join(MODES),
        help=f"what to measure, comma-separated (default: {','.join(MODES)})",
    )
    parser.add_argument(
        "--alone",
        type=measured,
        default=",".join(MEASURED),
        help="the services measured alone, comma-separated (default: all three)",
    )
    return parser.parse_args(argv)


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        wrong = [part for part in chosen if part not in allowed]
        if wrong or not chosen:
            raise argparse.ArgumentTypeError(f"choose among {', '.join(allowed)}")
        return chosen

    return parse


modes = _choices(MODES := ("alone", "platform", "latency"))
measured = _choices(MEASURED)


# The purchases, as a shop's own code would write them


@dataclass
class Purchase:
    event_id: str
    purchase_id: str
    customer_id: str
    total: Decimal
    value: bytes
    sent_at: float = 0.0  # perf_counter when handed to the producer
    partition: int = -1
    offset: int = -1

    @property
    def mail_id(self) -> str:
        return delivery_id(purchase_subject(self.purchase_id), PURCHASE_THANK_YOU, Channel.EMAIL)


def purchase(purchase_id: str, number: int, customer_id: str) -> Purchase:
    """A ``crm.purchase.completed`` structured-mode CloudEvent, written by hand."""
    quantity = 1 + number % 3
    unit_price = Decimal("29.90")
    total = unit_price * quantity
    event_id = str(uuid.uuid4())
    cloudevent = {
        "specversion": "1.0",
        "id": event_id,
        "source": SHOP,
        "type": "crm.purchase.completed",
        "subject": customer_id,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "purchase_id": purchase_id,
            "customer_id": customer_id,
            "items": [
                {
                    "sku": f"SKU-{number % 41}",
                    "name": "Stainless kettle",
                    "category": ("kitchen", "tea", "garden")[number % 3],
                    "quantity": quantity,
                    "unit_price": str(unit_price),
                }
            ],
            "total_amount": str(total),
            "currency": "EUR",
            "channel": "web",
        },
    }
    return Purchase(event_id, purchase_id, customer_id, total, json.dumps(cloudevent).encode())


class Purchases:
    """Numbers purchases across the run, so every measurement's are new."""

    def __init__(self, customers: Sequence[str]) -> None:
        self.customers = customers
        self.run = uuid.uuid4().hex[:8]
        self.made = 0

    def next(self) -> Purchase:
        number, self.made = self.made, self.made + 1
        customer = self.customers[number % len(self.customers)]
        return purchase(f"{self.run}-{number}", number, customer)

    def batch(self, count: int) -> list[Purchase]:
        return [self.next() for _ in range(count)]


class Shop(Protocol):
    """A foreign producer: it knows Kafka and CloudEvents, not Rapport."""

    name: str

    async def start(self) -> None: ...

    async def send(self, purchase: Purchase) -> None:
        """Hand one purchase to the client (stamps ``sent_at``); does not wait for acks."""

    async def flush(self) -> None:
        """Until every purchase sent is acknowledged (``partition``/``offset`` are set)."""

    async def stop(self) -> None: ...


HEADERS: list[tuple[str, str | bytes | None]] = [("content-type", CONTENT_TYPE.encode())]


class LibrdkafkaShop:
    name = "librdkafka (confluent-kafka)"

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer  # noqa: PLC0415 - optional, for this producer only

        self.topic = topic
        self.errors: list[str] = []
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": "bench-shop",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )

    async def start(self) -> None:
        return None

    async def send(self, purchase: Purchase) -> None:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                self.errors.append(str(error))
            else:
                purchase.partition, purchase.offset = message.partition(), message.offset()

        purchase.sent_at = time.perf_counter()
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=purchase.value,
                    key=purchase.customer_id.encode(),
                    headers=HEADERS,
                    on_delivery=delivered,
                )
                break
            except BufferError:  # the client's queue is full: let it drain
                self.producer.poll(0)
                await asyncio.sleep(0.01)
        self.producer.poll(0)

    async def flush(self) -> None:
        left = await asyncio.to_thread(self.producer.flush, 60)
        if left or self.errors:
            raise RuntimeError(f"the shop could not send: {left} left, errors {self.errors[:3]}")

    async def stop(self) -> None:
        await asyncio.to_thread(self.producer.flush, 10)


class AiokafkaShop:
    name = "aiokafka (a raw AIOKafkaProducer)"

    def __init__(self, bootstrap: list[str], topic: str) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id="bench-shop", acks="all", enable_idempotence=True
        )
        self.pending: list[tuple[Purchase, asyncio.Future[Any]]] = []

    async def start(self) -> None:
        await self.producer.start()

    async def send(self, purchase: Purchase) -> None:
        purchase.sent_at = time.perf_counter()
        future = await self.producer.send(
            self.topic, purchase.value, key=purchase.customer_id.encode(), headers=HEADERS
        )
        self.pending.append((purchase, future))

    async def flush(self) -> None:
        pending, self.pending = self.pending, []
        for sent, future in pending:
            metadata = await future
            sent.partition, sent.offset = metadata.partition, metadata.offset

    async def stop(self) -> None:
        await self.producer.stop()


def make_shop(choice: str, bootstrap: str, topic: str) -> Shop:
    if choice in ("auto", "librdkafka"):
        try:
            return LibrdkafkaShop(bootstrap, topic)
        except ImportError:
            if choice == "librdkafka":
                raise SystemExit("--producer librdkafka needs confluent-kafka installed") from None
    return AiokafkaShop(servers(bootstrap), topic)


async def send_all(shop: Shop, purchases: Sequence[Purchase]) -> float:
    """Send ``purchases`` as fast as the producer goes; returns the moment the first left."""
    started = time.perf_counter()
    for one in purchases:
        await shop.send(one)
    await shop.flush()
    return started


# What the services and the baseline store, and the mails the sink receives


class MailSink(SmtpSink):
    """Notes when each Rapport delivery arrived; keeps no messages (cheap at any rate)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.lock = threading.Lock()
        self.arrived: dict[str, float] = {}

    def _deliver(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        moment = time.perf_counter()
        found = DELIVERY.search(raw)
        if found:
            with self.lock:
                self.arrived.setdefault(found.group(1).decode(), moment)

    def among(self, keys: Sequence[str]) -> dict[str, float]:
        with self.lock:
            return {key: self.arrived[key] for key in keys if key in self.arrived}


class Probe(Protocol):
    service: str
    what: str
    count: int

    async def done(self) -> float | None:
        """The moment all ``count`` were applied, if they are."""

    async def applied(self) -> int: ...


class Stored:
    """Documents keyed by ``keys`` in ``collection``. Records of one partition are
    applied in order, so it first looks for the last purchase of each partition (a few
    keys, cheap to ask often) and then counts all of them."""

    def __init__(
        self,
        service: str,
        what: str,
        collection: Collection,
        keyed: Callable[[str], str],
        purchases: Sequence[Purchase],
    ) -> None:
        self.service, self.what, self.collection = service, what, collection
        self.count = len(purchases)
        self.keys = [keyed(one.purchase_id) for one in purchases]
        last: dict[int, Purchase] = {}
        for one in purchases:
            if one.partition not in last or one.offset > last[one.partition].offset:
                last[one.partition] = one
        self.last = [keyed(one.purchase_id) for one in last.values()]

    async def done(self) -> float | None:
        if await self.collection.count_documents({"_id": {"$in": self.last}}) < len(self.last):
            return None
        moment = time.perf_counter()
        return moment if await self.applied() >= self.count else None

    async def applied(self) -> int:
        # (a count per RAPPORT_MONGODB_IN_CHUNK keys: one $in of thousands costs the
        # Python store seconds, taken from the services being measured)
        return sum(
            [
                await self.collection.count_documents({"_id": {"$in": chunk}})
                for chunk in chunks(self.keys)
            ]
        )


class Mailed:
    def __init__(
        self,
        sink: MailSink,
        purchases: Sequence[Purchase],
        service: str = "notifications",
        what: str = "thank-you e-mails in the SMTP sink",
    ) -> None:
        self.service, self.what = service, what
        self.sink = sink
        self.count = len(purchases)
        self.keys = [one.mail_id for one in purchases]

    async def done(self) -> float | None:
        arrived = self.sink.among(self.keys)
        return max(arrived.values()) if len(arrived) >= self.count else None

    async def applied(self) -> int:
        return len(self.sink.among(self.keys))


@dataclass(frozen=True)
class Outcome:
    service: str
    what: str
    count: int
    seconds: float | None  # None: not all applied
    applied: int
    note: str = ""

    @property
    def rate(self) -> Rate | None:
        if self.seconds is None:
            return None
        return Rate(f"{self.service}: {self.what}", self.count, self.seconds)

    def line(self) -> str:
        if self.rate is not None:
            return f"  {self.rate.line(56)}"
        label = f"{self.service}: {self.what}"
        return f"  {label:<56} {self.applied:>7} of {self.count} applied: {self.note}"


async def wait_applied(
    probes: Sequence[Probe],
    started: float,
    args: argparse.Namespace,
    dead: Callable[[], dict[str, str]],
) -> list[Outcome]:
    """Until every probe's purchases are applied, or it stalls, times out or its process
    died; says how far each got."""
    pending = {probe.service: probe for probe in probes}
    outcomes: dict[str, Outcome] = {}
    progress = {service: (0, time.monotonic()) for service in pending}
    next_count = time.monotonic() + PROGRESS_EVERY
    next_say = time.monotonic() + SAY_EVERY
    deadline = time.monotonic() + args.timeout
    while pending:
        for service, probe in list(pending.items()):
            moment = await probe.done()
            if moment is not None:
                seconds = moment - started
                outcomes[service] = Outcome(service, probe.what, probe.count, seconds, probe.count)
                del pending[service]
        now = time.monotonic()
        counting = now >= next_count
        exited = dead()
        for service, probe in list(pending.items()):
            reason = exited.get(service)
            if reason is None and now > deadline:
                reason = f"timed out after {args.timeout:.0f} s"
            if reason is None and counting:
                applied = await probe.applied()
                if applied != progress[service][0]:
                    progress[service] = (applied, now)
                elif now - progress[service][1] > args.stall:
                    reason = f"no progress for {args.stall:.0f} s"
            if reason is not None:
                applied = await probe.applied()
                outcomes[service] = Outcome(service, probe.what, probe.count, None, applied, reason)
                del pending[service]
        if counting:
            next_count = now + PROGRESS_EVERY
            if pending and now >= next_say:
                next_say = now + SAY_EVERY
                shown = ", ".join(f"{s} {progress[s][0]}/{p.count}" for s, p in pending.items())
                print(f"    ... {now - deadline + args.timeout:.0f} s: {shown}", file=sys.stderr)
        if pending:
            await asyncio.sleep(POLL)
    return [outcomes[probe.service] for probe in probes]


class CpuMeter:
    """CPU seconds used by named processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, processes: dict[str, int | None]) -> None:
        self.processes = {
            name: psutil.Process(pid) for name, pid in processes.items() if pid is not None
        }
        self.began: dict[str, float] = {}
        self.started = 0.0
        self.used: dict[str, float] = {}
        self.seconds = 0.0

    def _times(self) -> dict[str, float]:
        found = {}
        for name, process in self.processes.items():
            try:
                times = process.cpu_times()
            except psutil.Error:  # it exited meanwhile: what it used is not known
                continue
            found[name] = times.user + times.system
        return found

    def start(self) -> None:
        self.began, self.started = self._times(), time.monotonic()

    def stop(self) -> None:
        ended = self._times()
        self.seconds = time.monotonic() - self.started
        self.used = {name: ended[name] - self.began[name] for name in ended if name in self.began}

    def line(self) -> str:
        shares = ", ".join(
            f"{name} {used:.1f} s ({used / self.seconds:.0%})" for name, used in self.used.items()
        )
        return f"    cpu over {self.seconds:.1f} s: {shares}"


def listening_pid(host: str, port: int) -> int | None:
    """The pid of the process on this machine listening on ``host``:``port``, if any."""
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:  # (not allowed to look at other users' sockets)
        return None
    for connection in connections:
        local = connection.laddr
        if connection.status == psutil.CONN_LISTEN and local and local.port == port:
            return connection.pid
    return None


# The services, as processes


def replica_names(service: str, replicas: int) -> list[str]:
    """``notifications``, then ``notifications#2``, ... for the further replicas."""
    return [service, *(f"{service}#{number}" for number in range(2, replicas + 1))]


def replica_envs(
    service: str, replicas: int, env: Mapping[str, str], ports: Mapping[str, int]
) -> list[tuple[str, dict[str, str]]]:
    """Each replica's name and environment: the same service (database, consumer group,
    topics) on an HTTP port of its own, the first on the service's port."""
    variable = f"RAPPORT_{service.upper()}_HTTP_PORT"
    return [
        (name, {**env, variable: str(ports[service] if number == 0 else free_port())})
        for number, name in enumerate(replica_names(service, replicas))
    ]


class Services:
    def __init__(
        self, env: dict[str, str], ports: dict[str, int], logs: Path, replicas: int = 1
    ) -> None:
        self.env = env
        self.ports = ports
        self.logs = logs
        self.replicas = replicas
        self.running: dict[str, Popen[bytes]] = {}  # by replica name (see replica_names)
        self.replica_ports: dict[str, int] = {}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, services: Sequence[str]) -> None:
        for service in services:
            for name, env in replica_envs(service, self.replicas, self.env, self.ports):
                self.replica_ports[name] = int(env[f"RAPPORT_{service.upper()}_HTTP_PORT"])
                self.running[name] = processes.spawn(
                    [sys.executable, "-m", f"services.{service}"],
                    log_file=self.logs / f"{name}.log",
                    cwd=REPO_ROOT,
                    env=env,
                )

    def pids(self, services: Sequence[str]) -> dict[str, int | None]:
        """The running processes of ``services``, every replica by its name."""
        return {
            name: process.pid
            for service in services
            for name in replica_names(service, self.replicas)
            if (process := self.running.get(name)) is not None
        }

    async def ready(self, services: Sequence[str], within: float = 180.0) -> None:
        deadline = time.monotonic() + within
        names = [name for service in services for name in replica_names(service, self.replicas)]
        async with httpx.AsyncClient() as client:
            for name in names:
                url = f"http://127.0.0.1:{self.replica_ports[name]}"
                service = name.partition("#")[0]
                while True:
                    if failure := self.dead().get(service):
                        raise RuntimeError(f"{service} {failure}")
                    try:
                        response = await client.get(f"{url}/readyz", timeout=2)
                        if response.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{service} not ready after {within:.0f} s")
                    await asyncio.sleep(0.3)

    def dead(self) -> dict[str, str]:
        """The services whose process exited, with the end of its log."""
        found = {}
        for name, process in self.running.items():
            code = process.poll()
            if code is not None:
                service, _, replica = name.partition("#")
                which = f"(replica {replica}) " if replica else ""
                found[service] = f"{which}exited with code {code}; its log ends:\n{self.tail(name)}"
        return found

    def tail(self, service: str, lines: int = 15) -> str:
        path = self.logs / f"{service}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(f"      | {line}" for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM every process, SIGKILL what is left after ``STOP_TIMEOUT``."""
        processes.stop_all(list(self.running.values()), STOP_TIMEOUT)
        self.running.clear()


# The run


class Pipeline:
    def __init__(self, args: argparse.Namespace, client: MongoClient, sink: MailSink) -> None:
        self.args = args
        self.client = client
        self.sink = sink
        self.bootstrap = servers(args.bootstrap)
        self.names = TopicNames(args.prefix)
        self.topic = self.names(PURCHASES)
        self.shop = make_shop(args.producer, args.bootstrap, self.topic)
        self.databases = {
            service: database_name(args.prefix, service)
            for service in (*SERVICES, "baseline", MAIL_BASELINE)
        }
        self.groups = {service: f"{args.prefix}rapport-{service}" for service in SERVICES}
        self.groups["baseline"] = f"{args.prefix}baseline"
        self.groups[MAIL_BASELINE] = f"{args.prefix}{MAIL_BASELINE}"
        partitions = self.names.all()
        self.topics = {
            service: {
                self.names(topic): partitions[self.names(topic)]
                for topic in import_module(f"services.{service}.worker").SUBSCRIPTIONS
            }
            for service in SERVICES
        }
        self.topics["baseline"] = {self.topic: partitions[self.topic]}
        self.topics[MAIL_BASELINE] = self.topics["baseline"]
        self.purchases = Purchases([])
        self.cpu = ""  # the last measurement's cpu line
        store_host, store_port = parse_uri(args.mongodb_uri)["nodelist"][0]
        broker_host, _, broker_port = self.bootstrap[0].rpartition(":")
        self.infrastructure = {
            "store": listening_pid(store_host, store_port),
            "broker": listening_pid(broker_host, int(broker_port)),
            "bench": os.getpid(),
        }

    async def timed(
        self,
        pids: Mapping[str, int | None],
        probes_for: Callable[[Sequence[Purchase]], list[Probe]],
        dead: Callable[[], dict[str, str]],
    ) -> list[Outcome]:
        """Send ``--count`` fresh purchases and wait until the probes made for them say
        they are applied, metering the CPU of ``pids`` and of the infrastructure."""
        batch = self.purchases.batch(self.args.count)
        meter = CpuMeter({**pids, **self.infrastructure})
        meter.start()
        started = await send_all(self.shop, batch)
        outcomes = await wait_applied(probes_for(batch), started, self.args, dead)
        meter.stop()
        self.cpu = meter.line()
        return outcomes

    def db(self, service: str) -> Database:
        return self.client[self.databases[service]]

    def service_env(self, ports: dict[str, int]) -> dict[str, str]:
        env = {
            **os.environ,
            "RAPPORT_ENVIRONMENT": "development",
            "RAPPORT_KAFKA_BOOTSTRAP": self.args.bootstrap,
            "RAPPORT_MONGODB_URI": self.args.mongodb_uri,
            "RAPPORT_TOPIC_PREFIX": self.args.prefix,
            "RAPPORT_ADMIN_TOKEN": ADMIN_TOKEN,
            "RAPPORT_LOG_LEVEL": "WARNING",
            "RAPPORT_NOTIFICATIONS_SMTP_HOST": self.sink.host,
            "RAPPORT_NOTIFICATIONS_SMTP_PORT": str(self.sink.port),
            # Measure the path, not the night: no quiet hours.
            "RAPPORT_NOTIFICATIONS_QUIET_HOURS_START": "",
            "RAPPORT_NOTIFICATIONS_QUIET_HOURS_END": "",
        }
        for service in SERVICES:
            env[f"RAPPORT_{service.upper()}_MONGODB_DATABASE"] = self.databases[service]
            env[f"RAPPORT_{service.upper()}_HTTP_PORT"] = str(ports[service])
        return env

    def probe(self, service: str, purchases: Sequence[Purchase]) -> Probe:
        if service == "notifications":
            return Mailed(self.sink, purchases)
        if service == "analytics":
            facts = self.db("analytics")["purchases"]
            return Stored(service, "purchase facts (revenue)", facts, str, purchases)
        ledger = self.db(service)["ledger"]
        return Stored(service, "ledger entries", ledger, purchase_entry_id, purchases)

    async def at_ends(self, services: Sequence[str]) -> None:
        """What these groups read next is what is produced from now on."""
        for service in services:
            await commit_ends(self.bootstrap, self.groups[service], self.topics[service])

    async def setup(self, services: Services) -> None:
        services.start(SERVICES)
        await services.ready(SERVICES)
        ids = await create_customers(
            services.url("profiles"), ADMIN_TOKEN, self.args.customers,
            name="Shopper", email="shopper{n}@example.com", locales=("en", "hr", "cs", "sl"),
            consent_source="bench checkout form",
        )  # fmt: skip
        self.purchases = Purchases(ids)
        deadline = time.monotonic() + self.args.stall
        for service in ("notifications", "analytics"):
            known = self.db(service)["customers"]
            while (found := len(await find_in(known, "_id", ids, projection=["_id"]))) < len(ids):
                if failure := services.dead().get(service):
                    raise RuntimeError(f"{service} {failure}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{service} knows {found} of {len(ids)} customers"
                        f" after {self.args.stall:.0f} s"
                    )
                await asyncio.sleep(0.2)
        for service in SERVICES:  # consents and the rest of what setup published
            group, topics = self.groups[service], self.topics[service]
            while lag := await group_lag(self.bootstrap, group, topics):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{service} still has {lag} records of {', '.join(topics)} to read"
                        f" after {self.args.stall:.0f} s"
                    )
                await asyncio.sleep(0.5)
        services.stop()

    async def measure(
        self, services: Services, running: Sequence[str], measured: Sequence[str]
    ) -> list[Outcome]:
        self.cpu = ""
        await self.at_ends(running)
        services.start(running)
        try:
            await services.ready(running)
            await wait_stable(self.bootstrap, [self.groups[s] for s in running])
        except RuntimeError as error:
            services.stop()
            return [
                Outcome(s, self.probe(s, []).what, self.args.count, None, 0, str(error))
                for s in measured
            ]
        pids = services.pids(running)
        return await self.timed(
            pids, lambda batch: [self.probe(s, batch) for s in measured], services.dead
        )

    async def baseline(self) -> Outcome:
        self.cpu = ""
        await self.at_ends(["baseline"])
        raw = RawConsumer(
            self.bootstrap, self.topic, self.groups["baseline"], self.client, self.db("baseline")
        )
        await raw.start()
        try:
            await wait_stable(self.bootstrap, [self.groups["baseline"]])
            ledger = self.db("baseline")["ledger"]
            what = "raw aiokafka, 1 txn per poll"
            [outcome] = await self.timed(
                {},
                lambda batch: [Stored("baseline", what, ledger, purchase_entry_id, batch)],
                raw.dead,
            )
        finally:
            await raw.stop()
        return outcome

    async def mail_baseline(self, logs: Path) -> Outcome:
        """The thank-you e-mails that ``python -m bench.raw_mail`` sends, in the sink."""
        self.cpu = ""
        await self.at_ends([MAIL_BASELINE])
        log = logs / f"{MAIL_BASELINE}.log"
        args = [
            "--bootstrap", self.args.bootstrap, "--mongodb-uri", self.args.mongodb_uri,
            "--topic", self.topic, "--group", self.groups[MAIL_BASELINE],
            "--database", self.databases[MAIL_BASELINE],
            "--directory", self.databases["notifications"],
            "--smtp-host", self.sink.host, "--smtp-port", str(self.sink.port),
        ]  # fmt: skip
        process = processes.spawn(
            [sys.executable, "-m", "bench.raw_mail", *args], log_file=log, cwd=REPO_ROOT
        )

        def dead() -> dict[str, str]:
            if process.poll() is None:
                return {}
            ending = log.read_text(errors="replace").strip()[-2000:] if log.exists() else ""
            return {MAIL_BASELINE: f"exited with code {process.returncode}: {ending}"}

        try:
            await wait_stable(self.bootstrap, [self.groups[MAIL_BASELINE]])
            what = "raw aiokafka + aiosmtplib, 1 txn per poll"
            [outcome] = await self.timed(
                {MAIL_BASELINE: process.pid},
                lambda batch: [Mailed(self.sink, batch, MAIL_BASELINE, what)],
                dead,
            )
        finally:
            processes.stop(process, STOP_TIMEOUT)
        return outcome

    async def latency(self, services: Services) -> tuple[list[Purchase], dict[str, float]]:
        """``--rate`` purchases/s for ``--seconds`` while the platform runs (started
        here when the platform measurement did not run before)."""
        everything = {n for s in SERVICES for n in replica_names(s, services.replicas)}
        if set(services.running) != everything:
            services.stop()
            await self.at_ends(SERVICES)
            services.start(SERVICES)
            await services.ready(SERVICES)
            await wait_stable(self.bootstrap, [self.groups[s] for s in SERVICES])
        total = self.args.rate * self.args.seconds
        interval = 1.0 / self.args.rate
        sent: list[Purchase] = []
        started = time.perf_counter()
        for number in range(total):
            delay = started + number * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            one = self.purchases.next()
            await self.shop.send(one)
            sent.append(one)
        await self.shop.flush()
        probe = Mailed(self.sink, sent)
        await wait_applied([probe], started, self.args, services.dead)
        return sent, self.sink.among(probe.keys)


class RawConsumer(RawLoop):
    """The baseline: what a plain aiokafka consumer does for the same purchases."""

    collections = ("processed_events", "ledger", "customer_figures")

    def __init__(
        self, bootstrap: list[str], topic: str, group: str, client: MongoClient, db: Database
    ) -> None:
        super().__init__(bootstrap, topic, group, client, db, client_id="bench-baseline")

    async def apply(self, records: Sequence[Any]) -> None:
        now = datetime.now(UTC)
        markers, entries = [], []
        figures: dict[str, tuple[int, Decimal]] = {}
        for record in records:
            event = decode(record.value, record.headers)
            bought = event.payload
            assert isinstance(bought, PurchaseCompleted)
            customer = bought.customer_key()
            markers.append({"_id": event.id, "processed_at": now})
            entries.append(
                {
                    "_id": purchase_entry_id(bought.purchase_id),
                    "customer_id": customer,
                    "occurred_at": event.time,
                    "total": Decimal128(bought.total_amount),
                    "currency": bought.currency,
                    "items": [item.model_dump(mode="json") for item in bought.items],
                }
            )
            count, spent = figures.get(customer, (0, Decimal(0)))
            figures[customer] = (count + 1, spent + bought.total_amount)
        changes = [
            UpdateOne(
                {"_id": customer},
                {"$inc": {"purchases": count, "spent": Decimal128(spent)}, "$set": {"at": now}},
                upsert=True,
            )
            for customer, (count, spent) in figures.items()
        ]

        async def work(session: Session) -> None:
            await self.db["processed_events"].insert_many(markers, session=session)
            await self.db["ledger"].insert_many(entries, session=session)
            await self.db["customer_figures"].bulk_write(changes, session=session)

        await in_transaction(self.client, work)

    def dead(self) -> dict[str, str]:
        return {} if self.failure is None else {"baseline": self.failure}


# Printing


def ratio_of(outcome: Outcome, reference: Rate | None) -> float | None:
    if outcome.rate is None or reference is None:
        return None
    return outcome.rate.per_second / reference.per_second


def judged(label: str, outcome: Outcome, reference: Rate | None, target: float) -> str:
    value = ratio_of(outcome, reference)
    rate = f"{outcome.rate.per_second:8,.0f}" if outcome.rate else "       -"
    shown = f"{value:6.3f}" if value is not None else "     -"
    met = value is not None and value >= target
    return f"  {label:<34} {rate} events/s   ratio {shown}   target >= {target}   {verdict(met)}"


def compared(label: str, outcome: Outcome, reference: Rate) -> str:
    """``outcome``'s ratio to ``reference``, for information (no target)."""
    value = ratio_of(outcome, reference)
    shown = f"{value:6.3f}" if value is not None else "     -"
    return f"  {label:<34} {'':8}            ratio {shown}   (no target)"


def best(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The fastest of ``outcomes`` that finished (None: none did)."""
    finished = [outcome for outcome in outcomes if outcome.rate is not None]
    return max(finished, key=lambda o: o.rate.per_second if o.rate else 0.0, default=None)


def fastest(outcomes: Sequence[Outcome]) -> Rate | None:
    found = best(outcomes)
    return found.rate if found else None


@dataclass
class Round:
    """One round of the throughput measurements: the baselines, then the services."""

    number: int
    baseline: Outcome | None = None
    mail_baseline: Outcome | None = None
    alone: list[Outcome] = field(default_factory=list)
    platform: list[Outcome] = field(default_factory=list)

    def slowest(self) -> float:
        """The rate of the platform's slowest service (0 when one did not finish)."""
        rates = [outcome.rate.per_second if outcome.rate else 0.0 for outcome in self.platform]
        return min(rates, default=0.0)


def by_round(rounds: Sequence[Round], service: str) -> str:
    """Each round's ratio of ``service`` alone to that round's baseline."""
    shown = []
    for one in rounds:
        outcome = _named(one.alone, service)
        reference = one.baseline.rate if one.baseline else None
        value = ratio_of(outcome, reference) if outcome else None
        shown.append("-" if value is None else f"{value:.3f}")
    return f"   (by round: {' / '.join(shown)})" if len(rounds) > 1 else ""


def _named(outcomes: Sequence[Outcome], service: str) -> Outcome | None:
    return next((outcome for outcome in outcomes if outcome.service == service), None)


def summary(rounds: Sequence[Round], latency: Sequence[str], replicas: int = 1) -> list[str]:
    """What the rounds add up to: every measurement, the baseline's as the services', at
    the fastest of its rounds, each service's against the fastest baseline."""
    reference = fastest([one.baseline for one in rounds if one.baseline])
    mail_reference = fastest([one.mail_baseline for one in rounds if one.mail_baseline])
    lines = ["== summary"]
    if replicas > 1:
        lines.append(f"  each service ran as {replicas} processes: the targets are for one")
    if reference is None:
        lines.append("  no baseline round finished: no ratios")
    else:
        lines.append(f"  baseline (fastest round)     {reference.per_second:8,.0f} events/s")
    if mail_reference is not None:
        share = f"{mail_reference.per_second / reference.per_second:.3f}" if reference else "-"
        lines.append(
            f"  e-mail baseline (fastest)    {mail_reference.per_second:8,.0f} e-mails/s"
            f" = {share} of the baseline: the ceiling of a thank-you e-mail here"
        )

    first = rounds[0] if rounds else Round(0)
    for service in [outcome.service for outcome in first.alone]:
        runs = [o for one in rounds if (o := _named(one.alone, service))]
        outcome = best(runs) or runs[-1]  # (none finished: the last says how far it got)
        lines.append(
            judged(f"alone: {service}", outcome, reference, ALONE_TARGET)
            + by_round(rounds, service)
        )
        if service == "notifications" and mail_reference is not None:
            lines.append(compared("  of the e-mail baseline", outcome, mail_reference))
    if first.platform:
        # The platform counts as its best round: the round whose slowest service did best.
        chosen = max(rounds, key=Round.slowest)
        for outcome in chosen.platform:
            lines.append(judged(f"platform: {outcome.service}", outcome, reference,
                                PLATFORM_TARGET))  # fmt: skip
            if outcome.service == "notifications" and mail_reference is not None:
                lines.append(compared("  of the e-mail baseline", outcome, mail_reference))
        slowest = min(chosen.platform, key=lambda o: ratio_of(o, reference) or 0.0)
        lines.append(
            judged(f"platform slowest: {slowest.service}", slowest, reference, PLATFORM_TARGET)
            + (f"   (round {chosen.number} of {len(rounds)})" if len(rounds) > 1 else "")
        )
    lines.extend(latency[-1:])
    return lines


async def baseline_round(pipeline: Pipeline, round_: Round, mailing: bool, logs: Path) -> None:
    """A round of the baseline (and of the e-mail baseline when ``mailing``)."""
    say(f"baseline, round {round_.number} (no service running)")
    round_.baseline = await pipeline.baseline()
    say(round_.baseline.line())
    say_cpu(pipeline)
    if mailing:
        round_.mail_baseline = await pipeline.mail_baseline(logs)
        say(round_.mail_baseline.line())
        say_cpu(pipeline)


def latency_lines(sent: list[Purchase], arrived: dict[str, float]) -> list[str]:
    # A mail that never came counts as infinitely late, so it cannot hide from the p99.
    latencies = sorted(
        (arrived[one.mail_id] - one.sent_at) * 1000 if one.mail_id in arrived else float("inf")
        for one in sent
    )
    sending = sent[-1].sent_at - sent[0].sent_at if len(sent) > 1 else 0.0
    rate = (len(sent) - 1) / sending if sending else float("inf")
    p99 = percentile(latencies, 0.99)
    return [
        f"  sent {len(sent)} in {sending:.1f} s ({rate:.1f}/s); mailed {len(arrived)}",
        f"  purchase -> e-mail   p50 {statistics.median(latencies):8.1f} ms"
        f"   p90 {percentile(latencies, 0.90):8.1f} ms   p99 {p99:8.1f} ms"
        f"   max {latencies[-1]:8.1f} ms",
        f"  {'latency: purchase -> e-mail p99':<34} {p99:8.0f} ms"
        f"         target < {LATENCY_TARGET_MS:.0f} ms   {verdict(p99 < LATENCY_TARGET_MS)}",
    ]


def say(text: str = "") -> None:
    print(text, flush=True)


def say_cpu(pipeline: Pipeline) -> None:
    if pipeline.cpu:
        say(pipeline.cpu)


async def run(args: argparse.Namespace) -> None:
    quiet_logging()
    bootstrap = servers(args.bootstrap)
    names = TopicNames(args.prefix)
    created = await ensure_topics(bootstrap, names)
    if names(PURCHASES) not in created:  # never put fake purchases into a deployment's topics
        await delete_topics(bootstrap, created)
        raise SystemExit(f"{names(PURCHASES)} exists already: give the bench a --prefix of its own")
    client = create_client(args.mongodb_uri, app_name="rapport-bench")
    sink = MailSink("127.0.0.1", free_port())
    pipeline = Pipeline(args, client, sink)
    ports = {service: free_port() for service in SERVICES}
    logs = Path(tempfile.mkdtemp(prefix="rapport-bench-pipeline-"))
    services = Services(pipeline.service_env(ports), ports, logs, args.replicas)
    begun = time.monotonic()
    try:
        sink.start()
        await pipeline.shop.start()
        say(f"broker {args.bootstrap}, store {redact(args.mongodb_uri)}, prefix {args.prefix}")
        say(f"foreign producer: {pipeline.shop.name}; service logs in {logs}")
        await pipeline.setup(services)
        say(
            f"{args.customers} customers created over HTTP, known to notifications and"
            f" analytics; {args.count} purchases per measurement"
            + (f"; each service as {args.replicas} processes" if args.replicas > 1 else "")
            + "\n"
        )

        # (the e-mail baseline only when an e-mail rate is measured against the baseline)
        mailing = "platform" in args.modes or (
            "alone" in args.modes and "notifications" in args.alone
        )
        rounds: list[Round] = []
        for number in range(1, args.rounds + 1):
            round_ = Round(number)
            rounds.append(round_)
            await baseline_round(pipeline, round_, mailing, logs)
            if "alone" in args.modes:
                say(f"\neach service alone (only its process running), round {number}")
                for service in args.alone:
                    [outcome] = await pipeline.measure(services, [service], [service])
                    services.stop()
                    round_.alone.append(outcome)
                    say(outcome.line())
                    say_cpu(pipeline)
            if "platform" in args.modes:
                say(f"\nthe whole platform (the four services at once), round {number}")
                round_.platform = await pipeline.measure(services, SERVICES, MEASURED)
                for outcome in round_.platform:
                    say(outcome.line())
                say_cpu(pipeline)
                if number < args.rounds or "latency" not in args.modes:
                    services.stop()
            say()
        latency: list[str] = []
        if "latency" in args.modes:
            say(f"purchase -> thank-you e-mail at {args.rate}/s for {args.seconds} s (platform)")
            sent, arrived = await pipeline.latency(services)
            latency = latency_lines(sent, arrived)
            say("\n".join(latency[:2]))
            say()
        services.stop()
        say("\n".join(summary(rounds, latency, args.replicas)))
        say(f"\ntook {time.monotonic() - begun:.0f} s")
    finally:
        services.stop()
        try:
            await pipeline.shop.stop()
        finally:
            sink.stop()
            if not args.keep_data:  # (dropping what a run wrote takes the dev store minutes)
                for database in pipeline.databases.values():
                    await client.drop_database(database)
            await client.close()
            if not args.keep_topics and not args.keep_data:
                await delete_topics(bootstrap, created, list(pipeline.groups.values()))


def main(argv: Sequence[str] | None = None) -> None:
    try:
        asyncio.run(run(parse_args(argv)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
