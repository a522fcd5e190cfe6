"""Senders: one message out on one channel (SMTP e-mail, an SMS provider). In-app messages
are not sent but stored, with their outcome (``inbox_store.py``, the dispatcher).

Each raises ``TransientDeliveryError`` for what may work on a later attempt (the server
is down, slow or says "try later": 4xx in SMTP, 5xx/408/429 in HTTP) and
``PermanentDeliveryError`` for what never will (the recipient is refused: 5xx in SMTP,
other 4xx in HTTP, or there is no usable address). The message's ``delivery_id`` is stable
across attempts and reaches the other side (the e-mail's ``Message-ID``, the SMS
provider's idempotency key), so a retry after a lost answer can be
recognised as the same message.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import re
import time
import uuid
from email.charset import QP, Charset
from email.errors import MessageError
from email.generator import BytesGenerator
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, cast

import aiosmtplib
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.notifications.domain import (
    Channel,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from shared.settings import Environment

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
# Printable ASCII, spaces and tabs: no character compat32 would break a line at or encode.
_PLAIN_HEADER = re.compile(r"[\t\x20-\x7e]*\Z")
# Bodies in quoted-printable UTF-8: readable where they are mostly ASCII, safe on any relay.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


class ChannelSettings(BaseModel):
    """What the senders and webhooks need. Field names match ``NotificationsSettings`` so
    ``ChannelSettings.model_validate(settings, from_attributes=True)`` builds it from
    the service's settings (fields it does not have keep these defaults)."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    environment: Environment = Environment.DEVELOPMENT
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = Field(default=False, description="implicit TLS (port 465)")
    smtp_from: str = "Rapport <notifications@rapport.local>"
    sms_url: str = "http://127.0.0.1:1026/messages"
    sms_api_key: SecretStr | None = None
    sms_sender_id: str = "Rapport"
    send_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_allow_private: bool | None = Field(
        default=None,
        description=(
            "allow webhook URLs on loopback/private addresses and plain http; default: only"
            " outside production"
        ),
    )
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="hosts allowed even when private addresses are not (e.g. an internal relay)",
    )

    @property
    def sender_address(self) -> str:
        return parseaddr(self.smtp_from)[1] or "notifications@rapport.local"

    @property
    def sender_name(self) -> str:
        return parseaddr(self.smtp_from)[0]

    @property
    def company(self) -> str:
        """The name customers know the sender by: the display name of ``smtp_from``."""
        return self.sender_name or "Rapport"

    @property
    def private_webhooks_allowed(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.environment is not Environment.PRODUCTION


def message_id(delivery_id: str, domain: str) -> str:
    """A ``Message-ID`` that is the same for every attempt of one delivery."""
    local = delivery_id if _SAFE_ID.match(delivery_id) else _digest(delivery_id)
    return f"<{local}@{domain}>"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:40]


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(body, _UTF8)
    return part


def _one_line(value: str) -> str:
    """``value``, refused when a line break in it would start a header of its own."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"a header value may not contain a line break: {value!r}")
    return value


def _text_header(value: str) -> str | Header:
    """A header value as it goes on the wire: as is when ASCII, else RFC 2047 encoded."""
    return value if _one_line(value).isascii() else Header(value, "utf-8")


class _WirePolicy(Compat32):
    """compat32 with CRLF line ends, as SMTP carries a message. A header of printable ASCII
    that fits on its line is written as it is, which is exactly what
    compat32 writes for it, without wrapping it in a ``Header`` to fold it again (that
    folding was a third of building an e-mail); any other goes through compat32."""

    def fold_binary(self, name: str, value: str) -> bytes:
        limit = self.max_line_length
        if (
            isinstance(value, str)
            and _PLAIN_HEADER.match(value)
            and (limit is None or len(name) + 2 + len(value) <= limit)
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


WIRE = _WirePolicy(linesep="\r\n")


def _flatten(mail: Message) -> bytes:
    """The message as SMTP's DATA carries it."""
    with io.BytesIO() as buffer:
        BytesGenerator(buffer, policy=WIRE).flatten(mail)
        return buffer.getvalue()


@functools.lru_cache(maxsize=4096)
def _not_an_address(address: str) -> str | None:
    """Why ``address`` is not an e-mail address (None: it is one). Remembered for the
    addresses seen last: parsing one costs more than the rest of its checks together."""
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError, TypeError, MessageError) as error:
        return f"not an e-mail address: {address!r} ({error})"
    if "@" not in address:
        return f"not an e-mail address: {address!r}"
    return None


def _address_header(name: str, address: str) -> str:
    """``Name <address>``, the name RFC 2047 encoded when it is not ASCII."""
    return formataddr((_one_line(name), _one_line(address)), charset="utf-8")


class SmtpSender:
    """E-mail over SMTP: a multipart/alternative message (plain text, then HTML).

    Connections are kept and reused, as mail providers ask of bulk senders: a message
    costs its MAIL, RCPT and DATA exchange, not a TCP connection, greeting, EHLO, TLS and
    login each. One message uses one connection at a time; at most ``max_idle``
    connections wait for the next message, none longer than ``idle_seconds`` (servers
    close idle clients), and a kept connection the server closed meanwhile is replaced
    once, at once. Call :meth:`close` at shutdown."""

    channel = Channel.EMAIL

    def __init__(
        self, settings: ChannelSettings, *, max_idle: int = 16, idle_seconds: float = 30.0
    ) -> None:
        self.settings = settings
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # newest last
        self.connections_opened = 0
        # Who sends, parsed once (``smtp_from`` is parsed again at every property read).
        self._sender = settings.sender_address
        self._from = _address_header(settings.sender_name, self._sender)
        self._domain = self._sender.rpartition("@")[2] or "rapport.local"

    def build(self, message: OutgoingMessage) -> Message:
        """The MIME message: built with the ``email`` package's MIME classes (its compat32
        API), which cost a sixth of ``EmailMessage``'s (that one parses every header it is
        given into a structured object, 1.5 ms a message, over half the service's CPU
        under load); non-ASCII names and subjects are RFC 2047 encoded, and a line break
        in a header value is refused, as ``EmailMessage`` refuses it."""
        rendered = message.rendered
        text = _text_part(rendered.text, "plain")
        mail: Message = text
        if rendered.html:
            # (a boundary of its own: "=_" never occurs in quoted-printable parts, so the
            # generator need not search the parts for a free one)
            mail = MIMEMultipart("alternative", boundary=f"=_{uuid.uuid4().hex}")
            mail.attach(text)
            mail.attach(_text_part(rendered.html, "html"))
        # (the compat32 classes take str or Header values; their stubs say str)
        headers = cast("Message[str, str | Header]", mail)
        headers["From"] = self._from
        headers["To"] = _address_header(message.recipient.name or "", message.address)
        headers["Subject"] = _text_header(rendered.subject)
        headers["Date"] = formatdate(usegmt=True)
        headers["Message-ID"] = message_id(message.delivery_id, self._domain)
        headers["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        headers["X-Rapport-Delivery-Id"] = _text_header(message.delivery_id)
        headers["X-Rapport-Rule"] = message.rule
        headers["Content-Language"] = _text_header(rendered.locale)
        for name, value in message.headers.items():
            if (
                _HEADER_NAME.match(name)
                and not name.lower().startswith("content-")  # the body's own
                and name.lower() not in headers
                and "\n" not in value
                and "\r" not in value
            ):
                headers[name] = _text_header(value)
        return mail

    async def send(self, message: OutgoingMessage) -> None:
        address = message.address.strip()
        if (problem := _not_an_address(address)) is not None:
            raise PermanentDeliveryError(problem)
        try:
            data = _flatten(self.build(message))
        except (ValueError, TypeError, MessageError) as error:
            raise PermanentDeliveryError(f"the e-mail cannot be built: {error}") from None
        settings = self.settings
        try:
            await self._transfer(data, address)
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            reasons = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
            if codes and all(400 <= code < 500 for code in codes):
                raise TransientDeliveryError(f"recipient deferred: {reasons}") from None
            raise PermanentDeliveryError(f"recipient refused: {reasons}") from None
        except aiosmtplib.SMTPAuthenticationError as error:
            # The server is misconfigured for us, not the message: retry, then redrive.
            raise TransientDeliveryError(
                f"SMTP login refused: {error.code} {error.message}"
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            text = f"SMTP {error.code} {error.message}"
            if 500 <= error.code < 600:
                raise PermanentDeliveryError(text) from None
            raise TransientDeliveryError(text) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise TransientDeliveryError(
                f"SMTP server {settings.smtp_host}:{settings.smtp_port} unavailable:"
                f" {type(error).__name__}: {error}"
            ) from None

    async def _transfer(self, mail: bytes, address: str) -> None:
        """Send on a kept connection (or a new one) and keep it while it can serve on."""
        sender = self._sender
        client, kept = await self._connection()
        try:
            try:
                await client.sendmail(sender, [address], mail)
            except aiosmtplib.SMTPServerDisconnected:
                if not kept:
                    raise
                # A kept connection the server had closed: once more, on a new one.
                client.close()
                client, _ = await self._connection(fresh=True)
                await client.sendmail(sender, [address], mail)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException):
            await self._release(client)  # the server refused the message, reset the envelope
            raise
        except BaseException:
            client.close()  # (in an unknown state: a timeout, a reset, a cancellation)
            raise
        await self._release(client)

    @property
    def kept(self) -> int:
        """How many connections wait for the next message."""
        return len(self._idle)

    async def close(self) -> None:
        """Say goodbye on the kept connections."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            await _quit(client)

    async def _connection(self, *, fresh: bool = False) -> tuple[aiosmtplib.SMTP, bool]:
        """A connection for one message, and whether it was kept from an earlier one."""
        now = time.monotonic()
        while self._idle and not fresh:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.idle_seconds:
                return client, True
            client.close()  # (idle too long: the server may be gone; no QUIT to wait on)
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            timeout=settings.send_timeout_seconds,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self.connections_opened += 1
        return client, False

    async def _release(self, client: aiosmtplib.SMTP) -> None:
        """Keep the connection for the next message, or say goodbye when enough wait."""
        if client.is_connected and len(self._idle) < self.max_idle:
            self._idle.append((client, time.monotonic()))
            return
        await _quit(client)


async def _quit(client: aiosmtplib.SMTP) -> None:
    """QUIT, as a polite client does; a connection already gone is simply closed."""
    if client.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await client.quit()
    client.close()


def classify_http(status: int, what: str, body: str = "") -> None:
    """Raise for an HTTP answer that is not a success: 5xx, 408 and 429 are worth another
    try; any other 4xx (and a redirect, which is not followed) never will be."""
    if 200 <= status < 300:
        return
    detail = f"{what} answered {status}" + (f": {body[:200]}" if body else "")
    if status >= 500 or status in (408, 425, 429):
        raise TransientDeliveryError(detail)
    raise PermanentDeliveryError(detail)


class SmsSender:
    """SMS through a provider's HTTP API: ``POST {to, text, idempotency_key, sender}`` as
    JSON with ``Authorization: Bearer <api key>``. Call :meth:`close` at shutdown."""

    channel = Channel.SMS

    def __init__(self, settings: ChannelSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.send_timeout_seconds), follow_redirects=False
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: OutgoingMessage) -> None:
        phone = re.sub(r"[\s().-]", "", message.address)
        if not _PHONE.match(phone):
            raise PermanentDeliveryError(f"not a phone number in E.164 form: {message.address!r}")
        headers = {"Idempotency-Key": message.delivery_id}
        key = self.settings.sms_api_key.get_secret_value() if self.settings.sms_api_key else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif self.settings.environment is not Environment.DEVELOPMENT:
            # Only the local sink takes messages without a key; a redrive sends once it is set.
            raise PermanentDeliveryError(
                "the SMS provider is not configured: set RAPPORT_NOTIFICATIONS_SMS_API_KEY"
            )
        payload: dict[str, Any] = {
            "to": phone,
            "text": message.rendered.text,
            "idempotency_key": message.delivery_id,
            "sender": self.settings.sms_sender_id,
        }
        try:
            response = await self._http().post(self.settings.sms_url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise TransientDeliveryError(
                f"the SMS provider did not answer within {self.settings.send_timeout_seconds} s"
            ) from None
        except httpx.HTTPError as error:
            raise TransientDeliveryError(
                f"the SMS provider is unreachable: {type(error).__name__}: {error}"
            ) from None
        classify_http(response.status_code, "the SMS provider", response.text)
