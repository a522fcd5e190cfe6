"""Webhook subscriptions over HTTP: staff create, list, change, test and delete them (the
store is ``webhooks_store.py``, the signed delivery ``webhooks.py``)."""

from __future__ import annotations

import binascii
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, Field

from services.notifications.domain import PermanentDeliveryError, TransientDeliveryError
from services.notifications.webhooks import WebhookDelivery, check_url
from services.notifications.webhooks_domain import (
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    SubscriptionUpdate,
    cloudevent,
    new_secret,
    public_view,
    secret_key,
)
from shared.auth import Principal, Role, require_roles
from shared.clock import utc_now
from shared.errors import InvalidInput


def get_webhooks(request: Request) -> WebhookDelivery:
    webhooks: WebhookDelivery = request.app.state.webhooks
    return webhooks


WebhooksDep = Annotated[WebhookDelivery, Depends(get_webhooks)]
AdminPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
StaffPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT))]
SubscriptionId = Annotated[str, Path(min_length=1, max_length=100)]

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


def _secret(given: str | None) -> str:
    if given is None:
        return new_secret()
    try:
        key = secret_key(given)
    except (ValueError, binascii.Error):
        raise InvalidInput("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise InvalidInput("a webhook secret's key is 24 to 64 bytes")
    return given


@router.post("/webhooks", status_code=status.HTTP_201_CREATED)
async def create_subscription(
    body: SubscriptionCreate, webhooks: WebhooksDep, response: Response, _: AdminPrincipal
) -> SubscriptionCreated:
    """Subscribe a URL to event types; the answer shows the signing secret, once.

    Each delivery is a ``POST`` of a CloudEvent (``application/cloudevents+json``: the
    triggering event itself, or ``rapport.notifications.schedule.<rule>`` for a scheduled
    message) with ``webhook-id`` (the same on every retry),
    ``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64
    HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}")>``, where ``key`` is
    the base64-decoded part of the secret after ``whsec_`` (the Standard Webhooks scheme).
    Verify in constant time and refuse a timestamp more than 300 s from your clock: that
    replay window stops a captured request from being sent again later."""
    url = check_url(body.url, webhooks.settings)
    subscription = Subscription(
        id=f"wh_{uuid.uuid4().hex}",
        url=url,
        event_types=list(dict.fromkeys(body.event_types)),
        description=body.description,
        created_at=utc_now(),
        secret=_secret(body.secret),
    )
    await webhooks.store.insert(subscription)
    response.headers["Location"] = f"/api/v1/webhooks/{subscription.id}"
    return SubscriptionCreated(**public_view(subscription).model_dump(), secret=subscription.secret)


@router.get("/webhooks")
async def list_subscriptions(webhooks: WebhooksDep, _: StaffPrincipal) -> list[SubscriptionPublic]:
    return [public_view(subscription) for subscription in await webhooks.store.all()]


@router.get("/webhooks/{subscription_id}")
async def read_subscription(
    subscription_id: SubscriptionId, webhooks: WebhooksDep, _: StaffPrincipal
) -> SubscriptionPublic:
    return public_view(await webhooks.store.get(subscription_id))


@router.patch("/webhooks/{subscription_id}")
async def update_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionUpdate,
    webhooks: WebhooksDep,
    _: AdminPrincipal,
) -> SubscriptionPublic:
    """Change the event types or description, or switch a disabled subscription back on."""
    await webhooks.store.get(subscription_id)
    changes: dict[str, Any] = {}
    if body.event_types is not None:
        changes["event_types"] = list(dict.fromkeys(body.event_types))
    if body.description is not None:
        changes["description"] = body.description
    if body.active is not None:
        changes["active"] = body.active
        changes["disabled_reason"] = None if body.active else "switched off by an admin"
    return public_view(await webhooks.store.update(subscription_id, changes))


class PingResult(BaseModel):
    delivered: bool
    delivery_id: str
    error: str | None = Field(description="why the receiver did not take it")
    retryable: bool | None = Field(description="whether a real delivery would be retried")


@router.post("/webhooks/{subscription_id}/test")
async def ping_subscription(
    subscription_id: SubscriptionId, webhooks: WebhooksDep, _: AdminPrincipal
) -> PingResult:
    """Send a signed ``rapport.webhook.test`` CloudEvent now and say how the receiver
    answered, so an integrator can check their signature verification."""
    subscription = await webhooks.store.get(subscription_id)
    delivery_id = f"test_{uuid.uuid4().hex}"
    body = cloudevent(
        {"id": str(uuid.uuid4()), "source": "/rapport/notifications",
         "type": "rapport.webhook.test", "time": utc_now()},
        {"subscription_id": subscription.id},
    )  # fmt: skip
    try:
        await webhooks.deliver(subscription, body, delivery_id)
    except (TransientDeliveryError, PermanentDeliveryError) as error:
        return PingResult(
            delivered=False, delivery_id=delivery_id, error=error.reason, retryable=error.transient
        )
    return PingResult(delivered=True, delivery_id=delivery_id, error=None, retryable=None)


@router.delete("/webhooks/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_subscription(
    subscription_id: SubscriptionId, webhooks: WebhooksDep, _: AdminPrincipal
) -> None:
    await webhooks.store.delete(subscription_id)
