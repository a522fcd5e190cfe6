"""Ports the core of the notifications service needs from its delivery parts.

The renderer and the senders are the domain's ``TemplateRenderer`` and ``Sender``; these
are the two other seams: webhook subscriptions (matching an event type, delivering a
signed CloudEvent) and the in-app inbox (following a merge, forgetting an erased customer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

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
    async def erase_customer(self, customer_id: str, session: Session | None = None) -> None: ...

    async def move_customer(
        self, source_id: str, target_id: str, *, undo: bool, session: Session | None = None
    ) -> None: ...


def subscription_id(subscription: Any) -> str:
    """A subscription's id, whether it is a model, a dataclass or a mapping."""
    if isinstance(subscription, Mapping):
        return str(subscription.get("id") or subscription.get("_id"))
    return str(subscription.id)
