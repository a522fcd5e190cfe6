# ruff: noqa: RUF001 - Persian text is the point of these tests
"""Channels: a real SMTP exchange with the sink, the SMS provider sink over HTTP, the
in-app inbox; and which failures are worth a retry (transient) and which never are."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.policy
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from email.errors import HeaderParseError
from email.generator import BytesGenerator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.ports import free_port
from devstack.sms import SmsSink
from devstack.smtp import SmtpSink
from services.notifications import catalog
from services.notifications.channels import (
    WIRE,
    ChannelSettings,
    SmsSender,
    SmtpSender,
)
from services.notifications.domain import (
    Channel,
    OutgoingMessage,
    PermanentDeliveryError,
    Recipient,
    RenderedMessage,
    TextDirection,
    TransientDeliveryError,
)
from services.notifications.inbox_store import InboxStore
from services.notifications.settings import NotificationsSettings
from services.notifications.template_store import TemplateStore
from services.notifications.templating import JinjaTemplateRenderer
from shared.mongo import Database
from shared.settings import Environment


def outgoing(
    channel: Channel,
    address: str,
    *,
    name: str = "Ivana Šimić",
    subject: str = "Hvala na narudžbi P-1",
    text: str = "Dobar dan, Ivana Šimić,\n\nhvala!",
    html: str | None = '<!DOCTYPE html><html lang="hr"><body><p>hvala!</p></body></html>',
    locale: str = "hr",
    direction: TextDirection = TextDirection.LTR,
    delivery_id: str | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=delivery_id or f"dlv-{uuid.uuid4().hex}",
        channel=channel,
        rule="purchase_thank_you",
        address=address,
        recipient=Recipient(customer_id=f"c-{uuid.uuid4().hex[:8]}", name=name, locale=locale),
        rendered=RenderedMessage(
            locale=locale, subject=subject, text=text, html=html, direction=direction
        ),
    )


def smtp_settings(port: int, **extra: Any) -> ChannelSettings:
    return ChannelSettings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="Trgovina Šimić <obavijesti@trgovina.example>",
        send_timeout_seconds=30,  # generous: a loaded machine must not turn into a failure
        **extra,
    )


async def received(sink: SmtpSink, message_id: str) -> Any:
    return await asyncio.to_thread(sink.wait_for, lambda m: m["Message-ID"] == message_id, 60)


async def test_an_email_has_a_text_and_an_html_part_and_utf8_names(smtp_sink: SmtpSink) -> None:
    address = f"ivana.{uuid.uuid4().hex[:6]}@example.com"
    message = outgoing(Channel.EMAIL, address, delivery_id=f"dlv-{uuid.uuid4().hex}")
    await SmtpSender(smtp_settings(smtp_sink.port)).send(message)

    mail = await received(smtp_sink, f"<{message.delivery_id}@trgovina.example>")
    assert mail.envelope_to == (address,)
    assert mail.envelope_from == "obavijesti@trgovina.example"
    assert mail["To"].addresses[0].display_name == "Ivana Šimić"
    assert mail["To"].addresses[0].addr_spec == address
    assert mail["From"].addresses[0].display_name == "Trgovina Šimić"
    assert mail["Subject"] == "Hvala na narudžbi P-1"
    assert mail["Content-Language"] == "hr"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().replace("\r\n", "\n").strip() == "Dobar dan, Ivana Šimić,\n\nhvala!"
    assert '<html lang="hr">' in html.get_content()


@pytest.mark.parametrize("html", ["<p>hvala!</p>", None])
def test_extra_headers_never_replace_the_messages_own(html: str | None) -> None:
    message = dataclasses.replace(
        outgoing(Channel.EMAIL, "ivana@example.com", html=html),
        headers={
            "List-Unsubscribe": "<https://shop.example/unsubscribe>",
            "Content-Type": "text/evil",
            "Message-ID": "<forged@example.com>",
            "X-Bad": "a\r\nBcc: someone@example.com",
        },
    )
    mail = SmtpSender(smtp_settings(1025)).build(message)
    assert mail["Content-Language"] == "hr"  # on the message itself, with or without HTML
    assert mail["List-Unsubscribe"] == "<https://shop.example/unsubscribe>"
    expected = "multipart/alternative" if html else "text/plain"
    assert mail.get_content_type() == expected
    assert mail["Message-ID"] == f"<{message.delivery_id}@trgovina.example>"
    assert mail.get_all("Message-ID") == [mail["Message-ID"]]
    assert mail["X-Bad"] is None
    assert mail["Bcc"] is None


@settings(max_examples=3000, deadline=None)
@given(
    name=st.sampled_from(["Subject", "To", "X-Rapport-Rule", "List-Unsubscribe", "Date"]),
    value=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=120),
)
def test_the_wire_policy_folds_a_header_as_compat32_does(name: str, value: str) -> None:
    """The short cut for ASCII headers that fit on their line writes what compat32 writes;
    anything else is compat32's own folding."""
    compat32 = email.policy.compat32.clone(linesep="\r\n")
    try:
        expected = compat32.fold_binary(name, value)
    except HeaderParseError:  # a line break that would start a header of its own
        with pytest.raises(HeaderParseError):
            WIRE.fold_binary(name, value)
        return
    assert WIRE.fold_binary(name, value) == expected


@pytest.mark.parametrize("html", ['<p lang="hr">hvala, Šime!</p>' * 30, None])
@pytest.mark.parametrize("subject", ["Hvala na narudžbi P-1", "Thanks " * 20, "Thanks"])
def test_an_email_is_flattened_byte_for_byte_as_compat32_flattens_it(
    html: str | None, subject: str
) -> None:
    mail = SmtpSender(smtp_settings(1025)).build(
        outgoing(Channel.EMAIL, "ivana@example.com", subject=subject, html=html)
    )
    expected = io.BytesIO()
    BytesGenerator(expected, policy=email.policy.compat32.clone(linesep="\r\n")).flatten(mail)
    ours = io.BytesIO()
    BytesGenerator(ours, policy=WIRE).flatten(mail)
    assert ours.getvalue() == expected.getvalue()


async def test_a_long_subject_folds_and_a_line_break_in_a_header_is_refused(
    smtp_sink: SmtpSink,
) -> None:
    """What a template or a profile puts in a header reaches the reader whole (a long
    non-ASCII subject is encoded and folded, and read back the same), and never adds a
    header of its own: a line break in the subject or the name fails the delivery for
    good, with the reason, before anything is sent."""
    sender = SmtpSender(smtp_settings(smtp_sink.port))
    subject = ", ".join(["Hvala na narudžbi P-1 — Šime"] * 6)
    message = outgoing(Channel.EMAIL, f"sime.{uuid.uuid4().hex[:6]}@example.com", subject=subject)
    await sender.send(message)
    mail = await received(smtp_sink, f"<{message.delivery_id}@trgovina.example>")
    assert mail["Subject"] == subject
    assert mail["Bcc"] is None

    for bad in (
        outgoing(Channel.EMAIL, "ivana@example.com", subject="Hvala\r\nBcc: x@example.com"),
        outgoing(Channel.EMAIL, "ivana@example.com", name="Ivana\nBcc: x@example.com"),
    ):
        with pytest.raises(PermanentDeliveryError, match=r"cannot be built: .*line break"):
            await sender.send(bad)
    # Other characters that end a line in Python (a form feed, a vertical tab) are refused
    # when the message is written: for good as well, not retried.
    for breaking in ("\x0c", "\x0b"):
        bad = outgoing(
            Channel.EMAIL, "ivana@example.com", subject=f"Hvala{breaking}Bcc: x@example.com"
        )
        with pytest.raises(PermanentDeliveryError, match=r"cannot be built: .*embedded header"):
            await sender.send(bad)


async def test_a_persian_email_arrives_intact(smtp_sink: SmtpSink) -> None:
    address = f"sara.{uuid.uuid4().hex[:6]}@example.com"
    message = outgoing(
        Channel.EMAIL,
        address,
        name="سارا احمدی",
        subject="سپاس از سفارش شما",
        text="سارا احمدی گرامی،\n\nاز خرید شما سپاسگزاریم!",
        html='<!DOCTYPE html><html lang="fa" dir="rtl"><body><p>سپاس</p></body></html>',
        locale="fa",
        direction=TextDirection.RTL,
    )
    await SmtpSender(smtp_settings(smtp_sink.port)).send(message)

    mail = await received(smtp_sink, f"<{message.delivery_id}@trgovina.example>")
    assert mail["Subject"] == "سپاس از سفارش شما"
    assert mail["To"].addresses[0].display_name == "سارا احمدی"
    assert "از خرید شما سپاسگزاریم" in mail.text()
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert 'dir="rtl"' in html.get_content()


async def test_each_attempt_of_one_delivery_carries_the_same_message_id(
    smtp_sink: SmtpSink,
) -> None:
    sender = SmtpSender(smtp_settings(smtp_sink.port))
    message = outgoing(Channel.EMAIL, "retry@example.com", delivery_id="evt-1:rule/email weird")
    first = sender.build(message)["Message-ID"]
    assert sender.build(message)["Message-ID"] == first
    assert first.endswith("@trgovina.example>")
    assert " " not in first
    assert "/" not in first


async def test_an_smtp_server_that_is_down_is_a_transient_failure() -> None:
    sender = SmtpSender(smtp_settings(free_port()))
    with pytest.raises(TransientDeliveryError, match="unavailable"):
        await sender.send(outgoing(Channel.EMAIL, "someone@example.com"))


async def test_an_address_that_is_not_one_is_a_permanent_failure(smtp_sink: SmtpSink) -> None:
    sender = SmtpSender(smtp_settings(smtp_sink.port))
    for address in ("no-at-sign", "no-at-sign", "two@@example.com", "two@@example.com"):
        # (the second time the verdict is remembered, and the same)
        with pytest.raises(PermanentDeliveryError, match=f"not an e-mail address: '{address}'"):
            await sender.send(outgoing(Channel.EMAIL, address))
    assert sender.connections_opened == 0  # refused before any SMTP exchange


class _Refusing:
    """An SMTP server that answers RCPT TO with a chosen code."""

    def __init__(self) -> None:
        self.code = "550 5.1.1 no such mailbox"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return self.code


@contextlib.contextmanager
def smtp_server(handler: object) -> Iterator[int]:
    """An aiosmtpd server with ``handler`` on a free port, for the test's duration."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def refusing_server() -> Iterator[tuple[_Refusing, int]]:
    handler = _Refusing()
    with smtp_server(handler) as port:
        yield handler, port


async def test_a_refused_recipient_is_permanent_and_a_deferred_one_transient(
    refusing_server: tuple[_Refusing, int],
) -> None:
    handler, port = refusing_server
    sender = SmtpSender(smtp_settings(port))
    handler.code = "550 5.1.1 no such mailbox"
    with pytest.raises(PermanentDeliveryError, match="550"):
        await sender.send(outgoing(Channel.EMAIL, "gone@example.com"))
    handler.code = "451 4.3.0 try again later"
    with pytest.raises(TransientDeliveryError, match="451"):
        await sender.send(outgoing(Channel.EMAIL, "busy@example.com"))


class _Counting:
    """An SMTP server that notes the client connection each message came over, and can
    hang up on a client after its message (as a server does with idle clients)."""

    def __init__(self) -> None:
        self.peers: list[Any] = []
        self.quits = 0
        self.hang_up = False

    async def handle_QUIT(  # noqa: N802 - aiosmtpd hook
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.quits += 1
        return "221 Bye"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.peers.append(session.peer)
        if self.hang_up:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 OK"


@pytest.fixture
def counting_server() -> Iterator[tuple[_Counting, int]]:
    handler = _Counting()
    with smtp_server(handler) as port:
        yield handler, port


async def test_messages_share_kept_connections_and_at_most_max_idle_wait(
    counting_server: tuple[_Counting, int],
) -> None:
    handler, port = counting_server
    sender = SmtpSender(smtp_settings(port), max_idle=2)
    try:
        for n in range(3):
            await sender.send(outgoing(Channel.EMAIL, f"kept-{n}@example.com"))
        assert len(handler.peers) == 3
        assert len(set(handler.peers)) == 1  # one connection for the three
        assert sender.connections_opened == 1
        # Sends at once use a connection each; afterwards at most ``max_idle`` wait.
        await asyncio.gather(
            *(sender.send(outgoing(Channel.EMAIL, f"busy-{n}@example.com")) for n in range(4))
        )
        assert sender.connections_opened == 4
        assert sender.kept == 2
        assert handler.quits == 2  # the two beyond ``max_idle`` said goodbye
    finally:
        await sender.close()
    assert sender.kept == 0
    assert handler.quits == 4


async def test_a_connection_the_server_closed_is_replaced(
    counting_server: tuple[_Counting, int],
) -> None:
    handler, port = counting_server
    sender = SmtpSender(smtp_settings(port))
    try:
        handler.hang_up = True  # as a server does with a client it finds idle
        await sender.send(outgoing(Channel.EMAIL, "then-closed@example.com"))
        await asyncio.sleep(0.3)
        await sender.send(outgoing(Channel.EMAIL, "after@example.com"))
        assert sender.connections_opened == 2
        assert len(set(handler.peers)) == 2
    finally:
        await sender.close()


async def test_a_kept_connection_idle_too_long_is_not_used_again(
    counting_server: tuple[_Counting, int],
) -> None:
    handler, port = counting_server
    sender = SmtpSender(smtp_settings(port), idle_seconds=0.2)
    try:
        await sender.send(outgoing(Channel.EMAIL, "first@example.com"))
        await asyncio.sleep(0.3)
        await sender.send(outgoing(Channel.EMAIL, "second@example.com"))
        assert sender.connections_opened == 2
        assert len(set(handler.peers)) == 2
    finally:
        await sender.close()


# --- SMS -------------------------------------------------------------------------------


@pytest.fixture
async def sms(sms_sink: SmsSink) -> AsyncIterator[SmsSender]:
    sender = SmsSender(
        ChannelSettings(sms_url=sms_sink.url, sms_api_key="sms-key", send_timeout_seconds=30)
    )
    try:
        yield sender
    finally:
        await sender.close()


def _phone() -> str:
    return "+3859" + str(uuid.uuid4().int)[:8]


async def test_an_sms_reaches_the_provider_once_per_delivery(
    sms: SmsSender, sms_sink: SmsSink
) -> None:
    phone = _phone()
    message = outgoing(Channel.SMS, phone, text="Rapport: hvala na narudžbi P-1, Ivana Šimić!")
    await sms.send(message)
    await sms.send(message)  # a retry after a lost answer

    got = await asyncio.to_thread(sms_sink.wait_for, lambda m: m.to == phone, 60)
    assert got.text == "Rapport: hvala na narudžbi P-1, Ivana Šimić!"
    assert got.idempotency_key == message.delivery_id
    assert got.headers["authorization"] == "Bearer sms-key"
    assert [m for m in sms_sink.messages if m.to == phone] == [got]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, TransientDeliveryError),
        (500, TransientDeliveryError),
        (429, TransientDeliveryError),
        (400, PermanentDeliveryError),
        (401, PermanentDeliveryError),
    ],
)
async def test_provider_answers_are_classified(
    sms: SmsSender, sms_sink: SmsSink, status: int, error: type[Exception]
) -> None:
    sms_sink.fail_next(status)
    with pytest.raises(error, match=str(status)):
        await sms.send(outgoing(Channel.SMS, _phone()))


async def test_a_phone_number_that_is_not_one_is_a_permanent_failure(sms: SmsSender) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        await sms.send(outgoing(Channel.SMS, "call me maybe"))


async def test_a_provider_that_does_not_answer_is_a_transient_failure() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = SmsSender(
        ChannelSettings(sms_url=f"http://127.0.0.1:{port}/messages", send_timeout_seconds=0.3)
    )
    try:
        with pytest.raises(TransientDeliveryError, match="did not answer"):
            await sender.send(outgoing(Channel.SMS, _phone()))
    finally:
        release.set()
        await sender.close()
        server.close()
        await server.wait_closed()


async def test_a_provider_that_is_down_is_a_transient_failure() -> None:
    sender = SmsSender(ChannelSettings(sms_url=f"http://127.0.0.1:{free_port()}/messages"))
    try:
        with pytest.raises(TransientDeliveryError, match="unreachable"):
            await sender.send(outgoing(Channel.SMS, _phone()))
    finally:
        await sender.close()


async def test_outside_development_no_sms_goes_without_an_api_key(sms_sink: SmsSink) -> None:
    for environment in (Environment.TEST, Environment.PRODUCTION):
        sender = SmsSender(ChannelSettings(sms_url=sms_sink.url, environment=environment))
        try:
            with pytest.raises(PermanentDeliveryError, match="SMS_API_KEY"):
                await sender.send(outgoing(Channel.SMS, _phone()))
        finally:
            await sender.close()


# --- in-app ----------------------------------------------------------------------------


async def test_an_in_app_message_is_stored_once_per_delivery(db: Database) -> None:
    inbox = InboxStore(db)
    await inbox.ensure_indexes()
    message = outgoing(Channel.IN_APP, "", html=None)
    await inbox.store([message])
    changed = dataclasses.replace(
        message, rendered=dataclasses.replace(message.rendered, subject="changed")
    )
    await inbox.store([changed])  # a repeat of the delivery changes nothing
    page = await inbox.page(message.recipient.customer_id, unread_only=False, after=None, limit=10)
    assert [(m.id, m.subject, m.text) for m in page] == [
        (message.delivery_id, "Hvala na narudžbi P-1", "Dobar dan, Ivana Šimić,\n\nhvala!")
    ]


async def test_a_rendered_persian_template_arrives_right_to_left(
    smtp_sink: SmtpSink, db: Database
) -> None:
    renderer = JinjaTemplateRenderer(TemplateStore(db), company="Rapport")
    spec = catalog.TRIGGERS["purchase_thank_you"]
    rendered = await renderer.render(
        "purchase_thank_you", Channel.EMAIL, "fa-IR", {**spec.sample, "customer_name": "سارا"}
    )
    address = f"sara.{uuid.uuid4().hex[:6]}@example.com"
    message = OutgoingMessage(
        delivery_id=f"dlv-{uuid.uuid4().hex}",
        channel=Channel.EMAIL,
        rule="purchase_thank_you",
        address=address,
        recipient=Recipient(customer_id="c-fa", name="سارا", locale="fa-IR"),
        rendered=rendered,
    )
    await SmtpSender(smtp_settings(smtp_sink.port)).send(message)

    mail = await received(smtp_sink, f"<{message.delivery_id}@trgovina.example>")
    assert mail["Content-Language"] == "fa"
    assert mail["Subject"] == "سپاس از سفارش شما (P-2026-00042)"
    assert mail.text().startswith("سارا گرامی،")
    assert "۲۳۸٫۹۰ یورو" in mail.text()
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert '<html lang="fa" dir="rtl">' in html.get_content()


def test_channel_settings_come_from_the_service_settings() -> None:
    settings = NotificationsSettings(
        smtp_host="mail.example.com",
        smtp_port=2525,
        smtp_from="Trgovina <hello@trgovina.example>",
        sms_url="https://sms.example.com/v1/messages",
        webhook_timeout_seconds=2.5,
    )
    channels = ChannelSettings.model_validate(settings, from_attributes=True)
    assert (channels.smtp_host, channels.smtp_port) == ("mail.example.com", 2525)
    assert channels.sender_address == "hello@trgovina.example"
    assert channels.company == "Trgovina"
    assert channels.sms_url == "https://sms.example.com/v1/messages"
    assert channels.webhook_timeout_seconds == 2.5
    assert channels.private_webhooks_allowed  # development
