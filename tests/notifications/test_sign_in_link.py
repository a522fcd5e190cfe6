"""The portal's sign-in link: mailed at once, to the address it was asked for, in the
language it was asked in, on the real broker, store and SMTP sink."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devstack.smtp import ReceivedMessage, SmtpSink
from services.notifications.settings import NotificationsSettings
from shared.events import new_event
from shared.events.customers import CustomerRegistered, SignInRequested
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.topics import TopicNames
from tests.notifications.harness import publish, running, service_settings
from tests.notifications.test_e2e import received, to
from tests.service_harness import DrivenClock, eventually

# 23:30 in Zagreb: quiet hours, which in this deployment hold back e-mail receipts too.
NIGHT = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)


@pytest.fixture
def settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database, smtp_sink: SmtpSink
) -> NotificationsSettings:
    return service_settings(
        kafka_bootstrap, mongodb_uri, topics, db,
        smtp_host=smtp_sink.host, smtp_port=smtp_sink.port,
        smtp_from="Rapport Shop <shop@rapport.test>",
        quiet_hours_apply_to=["email:transactional", "email:marketing", "sms:transactional"],
    )  # fmt: skip


def sign_in_link(customer_id: str, email: str, locale: str | None) -> SignInRequested:
    token = uuid.uuid4().hex + uuid.uuid4().hex[:11]
    return SignInRequested(
        customer_id=customer_id,
        email=email,
        sign_in_url=f"https://portal.example.com/sign-in#token={token}",
        expires_at=NIGHT + timedelta(minutes=15),
        locale=locale,
        requested_at=NIGHT,
    )


def html_of(mail: ReceivedMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    content: str = part.get_content()
    return content


async def test_the_link_is_mailed_at_once_to_the_address_asked_for_in_the_language_asked_in(
    settings: NotificationsSettings,
    topics: TopicNames,
    publisher: AiokafkaPublisher,
    smtp_sink: SmtpSink,
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    home, work = f"{customer_id}@example.hr", f"{customer_id}.work@example.hr"
    registered = CustomerRegistered(
        customer_id=customer_id, given_name="Ivana", family_name="Horvat", emails=[home, work],
        locale="hr", time_zone="Europe/Zagreb", created_at=NIGHT, updated_at=NIGHT, version=1,
    )  # fmt: skip
    in_croatian = sign_in_link(customer_id, work, "hr")
    in_persian = sign_in_link(customer_id, home, "fa")
    async with running(settings, DrivenClock(NIGHT)) as service:
        await publish(publisher, topics, new_event(registered, source="/t"))
        await publish(publisher, topics, new_event(in_croatian, source="/rapport/profiles"))
        await publish(publisher, topics, new_event(in_persian, source="/rapport/profiles"))

        # Not held back to the morning: the customer is waiting for it.
        croatian = await received(smtp_sink, to(work))
        assert croatian["Subject"] == "Vaša poveznica za prijavu u Rapport"
        assert croatian["Content-Language"] == "hr"
        assert "Dobar dan, Ivana" in croatian.text()
        assert in_croatian.sign_in_url in croatian.text()
        assert "23. studenoga 2026. u 23:45" in croatian.text()  # expiry, in their zone
        assert f'href="{in_croatian.sign_in_url}"' in html_of(croatian)

        persian = await received(smtp_sink, to(home))
        assert persian["Content-Language"] == "fa"
        assert persian["Subject"] == "پیوند ورود شما به Rapport"
        assert in_persian.sign_in_url in persian.text()
        assert 'dir="rtl"' in html_of(persian)

        async def both_recorded() -> bool:
            return len(await service.deliveries(customer_id, status="sent")) == 2

        await eventually(both_recorded, message="the two mails were not recorded as sent")
        sent = await service.deliveries(customer_id)
        assert {(d["rule"], d["channel"], d["address"]) for d in sent} == {
            ("sign_in_link", "email", home),
            ("sign_in_link", "email", work),
        }
