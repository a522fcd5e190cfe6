"""Notifications domain: what a message is, where it goes, and how a delivery can fail.

Pure models and rules; no I/O. The seams between the parts of the service:

- ``TemplateRenderer`` turns (trigger, channel, locale, context) into a ``RenderedMessage``;
- a ``Sender`` puts one ``OutgoingMessage`` on its channel (SMTP, SMS provider, in-app inbox);
- the rules decide *whether* and *when* to send; the delivery ledger makes it happen once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from shared.events.customers import Channel, Purpose

__all__ = [
    "Channel",
    "DeliveryError",
    "OutgoingMessage",
    "PermanentDeliveryError",
    "Purpose",
    "Recipient",
    "RenderedMessage",
    "Sender",
    "TemplateRenderer",
    "TextDirection",
    "TransientDeliveryError",
]


class TextDirection(StrEnum):
    LTR = "ltr"
    RTL = "rtl"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a message is for, as the notifications service knows them from customer events."""

    customer_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str = "en"
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A template's output in the locale actually used after the fallback chain."""

    locale: str
    subject: str
    text: str
    html: str | None = None
    direction: TextDirection = TextDirection.LTR


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One delivery on one channel. ``delivery_id`` is stable across retries, so a provider
    that deduplicates (SMTP Message-ID, an SMS provider's idempotency key) sees one message."""

    delivery_id: str
    channel: Channel
    rule: str
    address: str
    recipient: Recipient
    rendered: RenderedMessage
    headers: Mapping[str, str] = field(default_factory=dict)


class DeliveryError(Exception):
    """A channel could not deliver; ``transient`` failures are retried with backoff."""

    transient: bool = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientDeliveryError(DeliveryError):
    transient = True


class PermanentDeliveryError(DeliveryError):
    transient = False


class Sender(Protocol):
    """Delivers one message on one channel, raising ``DeliveryError`` when it cannot."""

    channel: Channel

    async def send(self, message: OutgoingMessage) -> None: ...


class TemplateRenderer(Protocol):
    """Renders a trigger's template for a channel, walking the locale fallback chain
    (``fa-IR`` → ``fa`` → ``en``); raises ``shared.errors.NotFound`` when no template
    exists for the trigger and channel in any locale of the chain."""

    async def render(
        self, trigger: str, channel: Channel, locale: str, context: Mapping[str, Any]
    ) -> RenderedMessage: ...
