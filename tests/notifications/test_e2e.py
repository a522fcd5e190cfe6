"""End to end on the real broker, store and SMTP sink: events in, messages out, once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from devstack.smtp import ReceivedMessage, SmtpSink
from services.notifications.settings import NotificationsSettings
from services.notifications.webhooks_domain import verify_signature
from shared.events import Event, new_event
from shared.events.customers import ConsentChanged, CustomerRegistered
from shared.events.insights import ChurnRiskChanged
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.topics import NOTIFICATIONS, PURCHASES, TopicNames
from tests.kafka_reading import Records, read_topic
from tests.notifications.harness import (
    Receiver,
    RunningClock,
    notification_events,
    produce_foreign,
    publish,
    purchase_cloudevent,
    running,
    service_settings,
)
from tests.service_harness import DrivenClock, eventually

ZAGREB = ZoneInfo("Europe/Zagreb")
# Monday 2026-11-23, 11:00 in Zagreb: not quiet.
DAYTIME = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database, smtp_sink: SmtpSink
) -> NotificationsSettings:
    return service_settings(
        kafka_bootstrap, mongodb_uri, topics, db,
        smtp_host=smtp_sink.host, smtp_port=smtp_sink.port,
        smtp_from="Rapport Shop <shop@rapport.test>",
        owner_fallback_address="owners@rapport.test",
    )  # fmt: skip


def registration(customer_id: str, email: str, **fields: Any) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=customer_id,
        given_name="Ivana",
        family_name="Horvat",
        emails=[email],
        locale="hr",
        time_zone="Europe/Zagreb",
        created_at=DAYTIME,
        updated_at=DAYTIME,
        version=1,
        **fields,
    )


async def received(sink: SmtpSink, predicate: Any) -> ReceivedMessage:
    """Wait for a mail without blocking the service, which runs on this event loop."""
    return await asyncio.to_thread(sink.wait_for, predicate, 60)


def to(address: str, purchase_id: str | None = None) -> Any:
    def matches(message: ReceivedMessage) -> bool:
        if address not in message.envelope_to:
            return False
        return purchase_id is None or purchase_id in str(message["Subject"])

    return matches


async def published(
    kafka_bootstrap: str,
    topics: TopicNames,
    wanted: Callable[[Event[Any]], bool],
    at_least: int = 1,
) -> list[Event[Any]]:
    """The service's events on ``crm.notifications`` that are ``wanted``, once there are
    ``at_least`` of them (or what there is when a generous time-out passes)."""

    def chosen(records: Records) -> list[Event[Any]]:
        return [e for e in notification_events(records) if wanted(e)]

    records = await read_topic(
        kafka_bootstrap,
        topics(NOTIFICATIONS),
        until=lambda found: len(chosen(found)) >= at_least,
        timeout=60,
    )
    return chosen(records)


async def test_a_purchase_from_a_foreign_client_is_thanked_once_by_name_in_croatian(
    settings: NotificationsSettings,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
    smtp_sink: SmtpSink,
    kafka_bootstrap: str,
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    email = f"{customer_id}@example.hr"
    async with running(settings, DrivenClock(DAYTIME)) as service:
        await publish(publisher, topics, new_event(registration(customer_id, email), source="/t"))
        purchase_event_id = str(uuid.uuid4())
        value = purchase_cloudevent(purchase_event_id, customer_id, "o-100")
        produce_foreign(kafka_bootstrap, topics(PURCHASES), customer_id, value)

        mail = await received(smtp_sink, to(email, "o-100"))
        assert mail["Subject"] == "Hvala na narudžbi o-100"
        assert mail["Content-Language"] == "hr"
        assert "Ivana" in mail.text()
        assert "Zeleni čaj" in mail.text()

        # The same event again, then a second purchase behind it on the same partition:
        # once the second is thanked, the first has been seen twice and mailed once.
        produce_foreign(kafka_bootstrap, topics(PURCHASES), customer_id, value)
        second = purchase_cloudevent(str(uuid.uuid4()), customer_id, "o-101")
        produce_foreign(kafka_bootstrap, topics(PURCHASES), customer_id, second)
        await received(smtp_sink, to(email, "o-101"))
        first_mails = [m for m in smtp_sink.messages if to(email, "o-100")(m)]
        assert len(first_mails) == 1

        emailed = await published(
            kafka_bootstrap, topics,
            lambda e: e.type == "crm.notification.sent" and e.payload.channel == "email",
            at_least=2,
        )  # fmt: skip
        assert {e.payload.source_event_id for e in emailed} >= {purchase_event_id}
        assert all(e.payload.customer_id == customer_id for e in emailed)
        assert all(e.payload.rule == "purchase_thank_you" for e in emailed)

        # The in-app inbox got its copy too, and the ledger says so.
        ledger = await service.deliveries(customer_id, status="sent")
        assert {d["channel"] for d in ledger} == {"email", "in_app"}


async def test_a_purchase_before_the_registration_waits_for_the_customer(
    settings: NotificationsSettings,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
    smtp_sink: SmtpSink,
    kafka_bootstrap: str,
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    email = f"{customer_id}@example.hr"
    async with running(settings, DrivenClock(DAYTIME)) as service:
        value = purchase_cloudevent(str(uuid.uuid4()), customer_id, "o-200")
        produce_foreign(kafka_bootstrap, topics(PURCHASES), customer_id, value)

        async def waiting() -> bool:
            pending = await service.deliveries(customer_id, status="pending")
            return any(d["channel"] == "email" for d in pending)

        await eventually(waiting, message="the purchase was not recorded as pending")
        await publish(publisher, topics, new_event(registration(customer_id, email), source="/t"))
        mail = await received(smtp_sink, to(email, "o-200"))
        assert "Ivana" in mail.text()


async def test_quiet_hours_defer_the_mail_to_the_morning_then_it_goes(
    settings: NotificationsSettings,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
    smtp_sink: SmtpSink,
    kafka_bootstrap: str,
) -> None:
    """A deployment that holds back transactional e-mail at night too
    (``RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO``; by default a receipt goes at once)."""
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    email = f"{customer_id}@example.hr"
    late = datetime(2026, 11, 23, 23, 30, tzinfo=ZAGREB)
    clock = DrivenClock(late.astimezone(UTC))
    receipts_too = settings.model_copy(
        update={"quiet_hours_apply_to": [*settings.quiet_hours_apply_to, "email:transactional"]}
    )
    async with running(receipts_too, clock) as service:
        await publish(publisher, topics, new_event(registration(customer_id, email), source="/t"))
        value = purchase_cloudevent(str(uuid.uuid4()), customer_id, "o-300")
        produce_foreign(kafka_bootstrap, topics(PURCHASES), customer_id, value)

        async def deferred() -> list[dict[str, Any]]:
            pending = await service.deliveries(customer_id, status="pending")
            return [d for d in pending if d["channel"] == "email"]

        async def is_deferred() -> bool:
            # A purchase that overtook the registration waits for the profile first
            # (pending, not yet deferred); the dispatcher then defers it to the morning.
            # (The registration releases it at once, unless it commits just while the
            # dispatcher records finding the customer unknown: then the look a few seconds
            # later does, so the clock moves on as time does.)
            if any(d["deferred_because"] for d in await deferred()):
                return True
            clock.advance(seconds=0.5)
            return False

        await eventually(is_deferred, message="the purchase was not deferred")
        [delivery] = await deferred()
        assert delivery["deferred_because"] == "quiet hours"
        morning = datetime(2026, 11, 24, 8, 0, tzinfo=ZAGREB)
        assert datetime.fromisoformat(delivery["due_at"]) == morning
        assert not [m for m in smtp_sink.messages if to(email)(m)]

        clock.set(datetime(2026, 11, 24, 8, 1, tzinfo=ZAGREB))
        await received(smtp_sink, to(email, "o-300"))

        async def recorded_as_sent() -> bool:
            sent = await service.deliveries(customer_id, status="sent")
            return [d["address"] for d in sent if d["channel"] == "email"] == [email]

        await eventually(recorded_as_sent, message="the ledger does not say the mail went")


async def test_no_marketing_consent_suppresses_the_offer_but_the_owner_is_alerted(
    settings: NotificationsSettings,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
    smtp_sink: SmtpSink,
    kafka_bootstrap: str,
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    email = f"{customer_id}@example.hr"
    owner = f"owner-{customer_id}@rapport.test"
    async with running(settings, DrivenClock(DAYTIME)) as service:
        customer = registration(customer_id, email, attributes={"account_owner": owner})
        await publish(publisher, topics, new_event(customer, source="/t"))
        # In-app marketing is allowed, e-mail marketing is not.
        consent = ConsentChanged(
            customer_id=customer_id, channel="in_app", purpose="marketing", granted=True,
            source="portal", changed_at=DAYTIME,
        )  # fmt: skip
        await publish(publisher, topics, new_event(consent, source="/t"))

        async def consent_known() -> bool:
            known = await service.notifications.directory.get(customer_id)
            return known is not None and bool(known.consents)

        # Insights travel on another topic than consents: let the consent land first.
        await eventually(consent_known, message="the consent was not recorded")
        churn = ChurnRiskChanged(
            customer_id=customer_id, previous_level="medium", level="high", score=0.9,
            reasons=["no purchase in 120 days"], changed_at=DAYTIME,
        )  # fmt: skip
        churn_event = new_event(churn, source="/analytics")
        await publish(publisher, topics, churn_event)

        await received(smtp_sink, to(owner))  # the internal alert, to the account owner

        [suppressed] = await published(
            kafka_bootstrap, topics, lambda e: e.type == "crm.notification.suppressed"
        )
        assert suppressed.payload.rule == "retention_offer"
        assert suppressed.payload.channel == "email"
        assert suppressed.payload.reason == "no marketing consent for email"
        assert suppressed.payload.source_event_id == churn_event.id

        ledger = await service.deliveries(customer_id)
        offers = {d["channel"]: d for d in ledger if d["rule"] == "retention_offer"}
        assert offers["email"]["status"] == "suppressed"
        assert offers["email"]["reason"] == "no marketing consent for email"

        async def in_app_offer_sent() -> bool:
            sent = await service.deliveries(customer_id, status="sent")
            return any(d["rule"] == "retention_offer" and d["channel"] == "in_app" for d in sent)

        await eventually(in_app_offer_sent, message="the consented in-app offer was not sent")
        assert not [m for m in smtp_sink.messages if to(email)(m)]


async def test_a_failing_webhook_is_retried_dead_lettered_and_redriven(
    settings: NotificationsSettings,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
    kafka_bootstrap: str,
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    async with running(settings, RunningClock(DAYTIME)) as service:
        with Receiver() as receiver:
            subscription = await service.call(
                "POST", "/webhooks",
                json={"url": receiver.url, "event_types": ["crm.purchase.*"]},
            )  # fmt: skip
            await publish(
                publisher, topics,
                new_event(registration(customer_id, f"{customer_id}@example.hr"), source="/t"),
            )  # fmt: skip
            value = purchase_cloudevent(str(uuid.uuid4()), customer_id, "o-400")
            produce_foreign(kafka_bootstrap, topics(PURCHASES), customer_id, value)

            async def failed() -> list[dict[str, Any]]:
                return await service.deliveries(customer_id, status="failed")

            async def has_failed() -> bool:
                return bool(await failed())

            await eventually(has_failed, message="the webhook delivery did not fail")
            [delivery] = await failed()
            assert delivery["channel"] == "webhook"
            assert delivery["attempts"] == 3  # max_attempts in these settings
            assert "answered 500" in delivery["reason"]
            assert len(receiver.requests) == 3
            assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery["id"]}

            [failure] = await published(
                kafka_bootstrap, topics, lambda e: e.type == "crm.notification.failed"
            )
            assert failure.payload.notification_id == delivery["id"]
            assert failure.payload.attempts == 3
            dead = await read_topic(
                kafka_bootstrap, topics.dlq(topics(NOTIFICATIONS)), until=bool, timeout=60
            )
            assert b"answered 500" in dict(dead[0].headers)["dlq-reason"]

            receiver.status = 204
            redriven = await service.call("POST", f"/deliveries/{delivery['id']}/redrive")
            assert redriven["status"] == "pending"

            async def sent() -> bool:
                done = await service.deliveries(customer_id, status="sent")
                return any(d["id"] == delivery["id"] for d in done)

            await eventually(sent, message="the redriven delivery was not sent")
            last = receiver.requests[-1]
            Webhook(subscription["secret"]).verify(last.body, last.headers)
            verify_signature(subscription["secret"], last.headers, last.body)
            # The body is the purchase as the shop published it, the same on every attempt.
            assert {r.body for r in receiver.requests} == {last.body}
            assert last.headers["content-type"] == "application/cloudevents+json"
            event = from_http(HTTPMessage(last.headers, last.body), JSONFormat())
            shop = json.loads(value)
            for attribute in ("id", "source", "type", "subject", "specversion"):
                assert event.get_attributes()[attribute] == shop[attribute]
            assert event.get_time() == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
            data = event.get_data()
            assert isinstance(data, dict)
            # As its schema reads it: fields the shop left out are null, the rest is theirs.
            assert {k: v for k, v in data.items() if v is not None} == shop["data"]

            again = await service.http.post(
                f"/api/v1/deliveries/{delivery['id']}/redrive", headers=service.admin
            )
            assert again.status_code == 409
