"""Ports the core of the notifications service needs from its delivery parts.

The renderer and the senders are the domain's ``TemplateRenderer`` and ``Sender``; these
are the other seams: webhook subscriptions (matching an event type, delivering a signed
CloudEvent), the in-app inbox (storing what the dispatcher sends there with the outcome,
following a merge, forgetting an erased customer) and the
hand-off of deliveries due now from the event path to the dispatcher of the same process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.notifications.domain import OutgoingMessage
from shared.mongo import Session


class WebhookSubscription(Protocol):
    @property
    def id(self) -> str: ...

    def matches(self, event_type: str) -> bool: ...


class WebhookPort(Protocol):
    async def active(self) -> Sequence[WebhookSubscription]:
        """Every active subscription (a batch reads them once and matches in memory)."""
        ...

    async def matching(self, event_type: str) -> Sequence[Any]:
        """The active subscriptions whose filter matches ``event_type`` (each has ``id``)."""
        ...

    async def deliver(self, subscription: Any, body: bytes, delivery_id: str) -> None:
        """POST the body (a structured-mode CloudEvent) signed, with ``webhook-id:
        <delivery_id>``; raises ``DeliveryError`` when the receiver fails."""
        ...


class InboxPort(Protocol):
    async def store(
        self, messages: Sequence[OutgoingMessage], session: Session | None = None
    ) -> None:
        """Put these in-app messages in their customers' inboxes, once per delivery id (a
        repeat changes nothing, nor brings an erased message's text back)."""
        ...

    async def erase_customer(self, customer_id: str, session: Session | None = None) -> None: ...

    async def move_customer(
        self, source_id: str, target_id: str, *, undo: bool, session: Session | None = None
    ) -> None: ...


@dataclass(frozen=True)
class Lease:
    """A claim the event path writes into the deliveries it records as due now, so the
    dispatcher of its process sends them without looking for them (``claim`` held until
    ``until``; past it, any dispatcher may take them over)."""

    claim: str
    until: datetime


class HandOff(Protocol):
    def reserve(self, now: datetime) -> Lease | None:
        """A claim for deliveries about to be recorded as due now, or None when the
        dispatcher has enough in hand (they are then found by its next look)."""
        ...

    def take(self, lease: Lease, deliveries: Sequence[Any], changed: Sequence[str]) -> None:
        """Send these deliveries, recorded under ``lease`` by a transaction that has
        committed (called after the commit, never for an attempt that was aborted), and
        those with the ids in ``changed``, as they were committed."""
        ...


def subscription_id(subscription: Any) -> str:
    """A subscription's id, whether it is a model, a dataclass or a mapping."""
    if isinstance(subscription, Mapping):
        return str(subscription.get("id") or subscription.get("_id"))
    return str(subscription.id)
