"""Webhooks: other systems subscribe to notification events by URL and event type.

Subscriptions (``webhook_subscriptions``) are managed under ``/api/v1/webhooks`` (admin
writes, staff reads): ``POST`` creates, ``GET`` lists and reads, ``PATCH`` changes the
event types or description or switches a subscription back on, ``DELETE`` removes it, and
``POST /api/v1/webhooks/{id}/test`` sends a signed ``rapport.webhook.test`` CloudEvent at
once and says how the receiver answered.
An event-type filter is a list of patterns where ``*`` stands for any characters:
``crm.complaint.*``, ``crm.notification.sent``, ``*``. The signing secret is generated
at creation (``whsec_`` + base64 of 32 random bytes) and shown once; a subscriber may
bring its own in the same form.

The body is a CloudEvent
------------------------
Every delivery is a ``POST`` of one CloudEvent 1.0 in structured JSON mode
(``content-type: application/cloudevents+json``):

- for a message a Rapport event triggered, the body *is* that event, as Rapport publishes
  it on Kafka: the same ``id``, ``source``, ``type``, ``subject`` (the customer id),
  ``time`` and ``data`` (as its ``dataschema``, ``urn:rapport:schema:<type>:v<N>``, reads
  it: an optional field the producer left out is ``null``). Subscriptions match that type.
  A receiver that already has the event from Kafka can skip it by its ``id``. An event
  that carries a credential (``crm.customer.sign_in_requested``, whose link signs the
  customer in) is never delivered, whatever the filter (``*`` included);
- a scheduled message (a birthday, a renewal reminder, a daily complaint status, when a
  rule sends them to webhooks) has no triggering event, so Rapport sends a notification
  CloudEvent of the type the subscription matched, ``rapport.notifications.schedule.<rule>``:
  ``source`` ``/rapport/notifications``, ``subject`` the customer id, ``id`` a UUID
  derived from the occurrence (the same for every subscriber), ``time`` when it fired, and
  ``data`` the message's fields as ``GET /api/v1/triggers`` lists them for the rule;
- ``POST /api/v1/webhooks/{id}/test`` sends ``rapport.webhook.test`` with
  ``data: {"subscription_id": ...}``.

The body of a delivery is kept with it: every retry and redrive sends the same bytes.

Signing (the Standard Webhooks scheme, https://www.standardwebhooks.com)
-----------------------------------------------------------------------
Every delivery carries three headers:

- ``webhook-id``: the delivery id, the same on every retry of one delivery (use it to
  ignore a delivery you have already processed);
- ``webhook-timestamp``: seconds since the Unix epoch when this attempt was signed;
- ``webhook-signature``: ``v1,<signature>``, where ``<signature>`` is
  ``base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"))``, ``key`` is the
  base64-decoded part of the secret after ``whsec_``, and ``body`` is the raw request body
  exactly as received (do not parse and re-serialise it first). Several signatures may be
  sent separated by spaces; accept the request if any one matches.

To verify: recompute the signature and compare it in constant time, and refuse a
timestamp more than 5 minutes (300 s) away from your clock, which stops an attacker from
replaying a captured request later. In Python the ``standardwebhooks`` package does both
(``Webhook(secret).verify(body, headers)``; Rapport signs with it);
``webhooks_domain.verify_signature`` does the same with the standard library only and can
be copied into a receiver as it is; the Standard Webhooks libraries for other languages
verify the same signatures.

In production a webhook URL must be ``https`` on a public address (hosts listed in
``RAPPORT_NOTIFICATIONS_WEBHOOK_ALLOWED_HOSTS`` excepted). A name is resolved again at
each delivery, refused when any of its addresses is private, loopback or link-local,
and the request goes to the address that was checked (``Host`` and TLS keep the name),
so a name that changes its answer between the check and the connection reaches nothing
internal.

Answer ``2xx`` quickly. A timeout (``RAPPORT_NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS``,
default 5 s), a ``5xx``, ``408`` or ``429`` is retried with backoff; any other ``4xx`` fails
the delivery; ``410 Gone`` also switches the subscription off. Redirects are not followed.

This module is the webhook channel: it checks a subscription's URL and delivers signed
bodies to it. The subscriptions, the signature and the body are ``webhooks_domain.py``,
their store ``webhooks_store.py``, the routes ``webhooks_api.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from services.notifications import ports
from services.notifications.channels import ChannelSettings, classify_http
from services.notifications.domain import PermanentDeliveryError, TransientDeliveryError
from services.notifications.webhooks_domain import CONTENT_TYPE, Subscription, sign
from services.notifications.webhooks_store import WebhookStore
from shared.errors import InvalidInput, NotFound

USER_AGENT = "Rapport-Webhooks/1.0"
ANSWER_LIMIT = 200  # bytes of a receiver's answer kept for the delivery's error message


# --- URLs ------------------------------------------------------------------------------

_BLOCKED_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check_url(url: str, settings: ChannelSettings) -> str:
    """A URL a webhook may be sent to, or a 422 saying why not."""
    if len(url) > 2000:
        raise InvalidInput("the webhook URL is longer than 2000 characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise InvalidInput(f"the webhook URL is not valid: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("the webhook URL must start with https:// (or http:// in development)")
    if not host:
        raise InvalidInput("the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("the webhook URL must not carry credentials")
    if any(char.isspace() for char in url):
        raise InvalidInput("the webhook URL contains white space")
    if host in settings.webhook_allowed_hosts or settings.private_webhooks_allowed:
        return url
    if parts.scheme != "https":
        raise InvalidInput("the webhook URL must use https")
    if host.lower().endswith(_BLOCKED_NAMES) or host.lower() == "localhost":
        raise InvalidInput(f"the webhook host {host} is a local name")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url  # a name; its addresses are checked again at each delivery
    if _is_private(address):
        raise InvalidInput(f"the webhook host {host} is a private or loopback address")
    return url


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the system resolver)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def public_address(host: str, port: int, resolver: Resolver = resolve) -> str | None:
    """The address to connect to for ``host``, refused when any address it has is private
    (the name may have changed since the subscription was made). ``None`` for an address
    literal, which is used as it is."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if _is_private(literal):
            raise PermanentDeliveryError(f"{host} is a private address")
        return None
    try:
        addresses = await resolver(host, port)
    except OSError as error:
        raise TransientDeliveryError(f"cannot resolve {host}: {error}") from None
    if not addresses:
        raise TransientDeliveryError(f"cannot resolve {host}: no address")
    for address in addresses:
        if _is_private(ipaddress.ip_address(address)):
            raise PermanentDeliveryError(f"{host} resolves to a private address {address}")
    return addresses[0]


def pinned(url: str, address: str) -> str:
    """``url`` with its host replaced by the ``address`` that was checked, so the
    connection goes where the check looked (no second lookup that a rebinding name could
    answer differently); the ``Host`` header and TLS name stay the original host's."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return urlunsplit(parts._replace(netloc=netloc))


# --- delivery --------------------------------------------------------------------------


class WebhookDelivery:
    """Finds the subscriptions of an event type and delivers signed bodies to them."""

    def __init__(
        self,
        store: WebhookStore,
        settings: ChannelSettings,
        *,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._client = client
        self.resolver = resolver

    async def ensure_indexes(self) -> None:
        await self.store.ensure_indexes()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                follow_redirects=False,
                # identity: an answer is read raw, only its start (see ``_start_of``)
                headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def active(self) -> list[Subscription]:
        return await self.store.active()

    async def matching(self, event_type: str) -> list[Subscription]:
        return [s for s in await self.store.active() if s.matches(event_type)]

    async def deliver(
        self, subscription: Subscription | Mapping[str, Any], body: bytes, delivery_id: str
    ) -> None:
        """POST ``body`` (a structured-mode CloudEvent, sent and signed as it is) with
        ``webhook-id: <delivery_id>``; raises ``TransientDeliveryError`` or
        ``PermanentDeliveryError`` when the receiver does not take it. A subscription given
        as a mapping is looked up by its id."""
        if not isinstance(subscription, Subscription):
            try:
                subscription = await self.store.get(ports.subscription_id(subscription))
            except NotFound:
                raise PermanentDeliveryError("the webhook subscription was deleted") from None
        url = subscription.url
        parts = urlsplit(url)
        host = parts.hostname or ""
        timestamp = int(self.clock())
        headers = {
            "content-type": CONTENT_TYPE,
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(subscription.secret, delivery_id, timestamp, body),
        }
        extensions: dict[str, Any] = {}
        if not self.settings.private_webhooks_allowed and host not in (
            self.settings.webhook_allowed_hosts
        ):
            default_port = 443 if parts.scheme == "https" else 80
            address = await public_address(host, parts.port or default_port, self.resolver)
            if address is not None:
                url = pinned(url, address)
                headers["host"] = parts.netloc.rpartition("@")[2]
                if parts.scheme == "https":
                    extensions["sni_hostname"] = host
        timeout = self.settings.webhook_timeout_seconds
        try:
            # httpx's timeout bounds each read; the outer one bounds a receiver that
            # trickles its answer byte by byte.
            async with (
                asyncio.timeout(timeout * 2),
                self._http().stream(
                    "POST", url, content=body, headers=headers, extensions=extensions
                ) as response,
            ):
                status_code, answer = response.status_code, await _start_of(response)
        except (httpx.TimeoutException, TimeoutError):
            raise TransientDeliveryError(
                f"webhook {subscription.id} did not answer within {timeout} s"
            ) from None
        except httpx.HTTPError as error:
            raise TransientDeliveryError(
                f"webhook {subscription.id} unreachable: {type(error).__name__}: {error}"
            ) from None
        if status_code == 410:
            await self.store.disable(subscription.id, "the receiver answered 410 Gone")
            raise PermanentDeliveryError(
                f"webhook {subscription.id} answered 410 Gone; the subscription is switched off"
            )
        classify_http(status_code, f"webhook {subscription.id}", answer)


async def _start_of(response: httpx.Response, limit: int = ANSWER_LIMIT) -> str:
    """The first ``limit`` bytes of an answer, as text: what a receiver says is read only
    as far as an error message needs, however much it sends."""
    kept = b""
    if response.is_stream_consumed:  # a transport that read it already (tests)
        kept = response.content
    else:
        async for chunk in response.aiter_raw():
            kept += chunk
            if len(kept) >= limit:
                break
    return kept[:limit].decode("utf-8", errors="replace")
