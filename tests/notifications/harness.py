"""Building the notifications core on this test's database, with a clock the test drives."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from confluent_kafka import Producer

from services.notifications.bootstrap import create_app
from services.notifications.deliveries_store import DeliveryLedger
from services.notifications.directory_store import Directory
from services.notifications.handlers import routes
from services.notifications.inbox_store import InboxStore
from services.notifications.planning import Notifications
from services.notifications.policy import QuietHours
from services.notifications.preferences_store import PreferenceStore
from services.notifications.rules_store import RuleStore
from services.notifications.scheduling_store import ScheduleStore
from services.notifications.settings import NotificationsSettings
from shared.auth import Role, TokenService
from shared.events import Event, KafkaRecord, decode, encode, new_event
from shared.events.base import EventPayload
from shared.kafka import EventPublisher
from shared.mongo import Database, MongoClient
from shared.outbox import Outbox, OutboxRelay
from shared.topics import TopicNames
from shared.unit_of_work import UnitOfWork, UnitsOfWork
from tests.kafka_reading import Records
from tests.service_harness import DrivenClock
from tests.support.api import ApiClient, serving


class NoPublisher:
    """The relay is never started in these tests; nothing is published."""

    async def publish(self, records: Sequence[tuple[str, KafkaRecord]]) -> None:
        raise AssertionError("nothing is published in this test")


def core(client: MongoClient, db: Database, clock: DrivenClock) -> Notifications:
    """A fresh notifications core on ``db``: what a (re)started process would build."""
    return Notifications(
        client=client,
        ledger=DeliveryLedger(db),
        directory=Directory(db),
        preferences=PreferenceStore(db),
        rule_store=RuleStore(db),
        schedules=ScheduleStore(db),
        outbox=Outbox(db, TopicNames("test.")),
        relay=OutboxRelay(db, NoPublisher(), "tests"),
        default_time_zone="UTC",
        default_quiet_hours=QuietHours.parse("21:00", "08:00"),
        clock=clock,
        inbox=InboxStore(db, clock=clock),
    )


async def prepare(ctx: Notifications) -> None:
    await ctx.ledger.ensure_indexes()
    await ctx.directory.ensure_indexes()
    await ctx.schedules.ensure_indexes()


async def apply(ctx: Notifications, payload: EventPayload, **event: Any) -> Event[Any]:
    """Hand one event to the service's handler, in a transaction as the consumer does."""
    built = new_event(payload, source="/tests", time=ctx.clock(), **event)
    bound = routes.bind(ctx)

    async def work(uow: UnitOfWork) -> None:
        await bound.load([built], uow)
        await bound.apply(built, uow)
        await bound.finish([built], uow)

    await UnitsOfWork(ctx.client, ctx.outbox).run(work)
    return built


# -- the whole service, in process, on the test's topics and database ----------------------

ADMIN = "admin"


@dataclass
class Service(ApiClient):
    """A running notifications service: its HTTP API, its core and its clock."""

    notifications: Notifications
    clock: DrivenClock
    default_role: ClassVar[Role] = Role.ADMIN

    async def deliveries(self, customer_id: str, **query: str) -> list[dict[str, Any]]:
        page = await self.call("GET", "/deliveries", params={"customer_id": customer_id, **query})
        items: list[dict[str, Any]] = page["items"]
        return items


def service_settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database, **extra: Any
) -> NotificationsSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "mongodb_uri": mongodb_uri,
        "topic_prefix": topics.prefix,
        "mongodb_database": db.name,
        "outbox_poll_interval_seconds": 0.05,
        "dispatcher_poll_interval_seconds": 0.05,
        "scheduler_poll_interval_seconds": 3600.0,
        "backoff_base_seconds": 0.05,
        "backoff_cap_seconds": 0.2,
        "max_attempts": 3,
        # Generous: on a loaded machine a slow answer must not read as a failed delivery.
        "send_timeout_seconds": 30.0,
        "webhook_timeout_seconds": 30.0,
        "default_time_zone": "Europe/Zagreb",
        **extra,
    }
    return NotificationsSettings(**values)


@asynccontextmanager
async def running(settings: NotificationsSettings, clock: DrivenClock) -> AsyncIterator[Service]:
    app = create_app(settings)
    notifications: Notifications = app.state.notifications
    notifications.clock = clock
    async with serving(app, "notifications") as http:
        yield Service(http, TokenService(settings.secret), notifications, clock)


def produce_foreign(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    """Publish as another system would: librdkafka (confluent-kafka), structured mode."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(
        topic, key=key.encode(), value=value,
        headers=[("content-type", b"application/cloudevents+json")],
    )  # fmt: skip
    assert producer.flush(10) == 0


def purchase_cloudevent(event_id: str, subject: str, purchase_id: str, **data: Any) -> bytes:
    """A purchase as a shop writes it: plain JSON, no Rapport code involved."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "urn:shop:web",
            "type": "crm.purchase.completed",
            "subject": subject,
            "time": "2026-11-23T10:00:00Z",
            "datacontenttype": "application/json",
            "data": {
                "purchase_id": purchase_id,
                "customer_id": subject,
                "items": [
                    {"sku": "TEA-1", "name": "Zeleni čaj", "category": "tea", "quantity": 2,
                     "unit_price": "4.90"},
                ],
                "total_amount": "9.80",
                "currency": "EUR",
                "channel": "web",
                **data,
            },
        }
    ).encode()  # fmt: skip


async def publish(publisher: EventPublisher, topics: TopicNames, event: Event[Any]) -> None:
    await publisher.publish([(topics(event.topic), encode(event))])


def notification_events(records: Records) -> list[Event[Any]]:
    return [decode(record.value, list(record.headers or ())) for record in records]


class RunningClock(DrivenClock):
    """A clock that starts at a chosen moment and then runs at real speed (for retries
    with backoff, which need time to pass)."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._started = time.monotonic()

    def __call__(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self._started)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A webhook receiver on a free port: answers ``status`` and keeps every request."""

    def __init__(self) -> None:
        self.status = 500
        self.requests: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(Received(dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
