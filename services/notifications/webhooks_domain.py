"""Webhooks, their model and signatures: a subscription (which event types it takes), the
API's views of it, the secret, the Standard Webhooks signature and the CloudEvent body
(pure: no I/O). The protocol as a receiver sees it is described in ``webhooks.py``;
subscriptions are kept by ``webhooks_store.py``."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import to_jsonable_python
from standardwebhooks import Webhook

from shared.events.registry import SECRET_EVENT_TYPES

SECRET_PREFIX = "whsec_"
CONTENT_TYPE = "application/cloudevents+json"
REPLAY_TOLERANCE_SECONDS = 300


EventPattern = Annotated[
    str, StringConstraints(pattern=r"^(\*|[a-z0-9_*]+(\.[a-z0-9_*]+)*)$", max_length=200)
]


# --- signatures ------------------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery attempt."""
    return Webhook(secret_key(secret)).sign(
        webhook_id, datetime.fromtimestamp(timestamp, UTC), body
    )


def cloudevent(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> bytes:
    """A CloudEvent 1.0 with JSON ``data``, in structured JSON mode (:data:`CONTENT_TYPE`)."""
    event = CloudEvent(
        attributes={"datacontenttype": "application/json", **attributes},
        data=to_jsonable_python(dict(data)),
    )
    return JSONFormat().write(event)


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance: int = 300,
) -> None:
    """Check a webhook request as a receiver: raises ``ValueError`` saying why when it is
    not authentic or is too old; returns when it is good. ``body`` is the raw body.

    Self-contained (``base64``, ``hashlib``, ``hmac``, ``time``) so a receiver can copy it.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not webhook_id or not timestamp or not signatures:
        raise ValueError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise ValueError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise ValueError("webhook-timestamp is outside the replay window")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{sent_at}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise ValueError("no signature matches")


# --- subscriptions ---------------------------------------------------------------------


class Subscription(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None = None
    active: bool = True
    disabled_reason: str | None = None
    created_at: datetime
    secret: str = Field(exclude=True, repr=False)

    def matches(self, event_type: str) -> bool:
        """Whether the filter takes ``event_type``; never a type that carries a credential
        (a sign-in link), whatever the filter says: it does not leave the platform."""
        if event_type in SECRET_EVENT_TYPES:
            return False
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    event_types: list[EventPattern] = Field(
        min_length=1, max_length=50, examples=[["crm.complaint.*", "crm.notification.sent"]]
    )
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    secret: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="whsec_ + base64 of 24 to 64 bytes; generated when omitted"
    )


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=50)
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    active: bool | None = Field(default=None, description="true switches it back on")


class SubscriptionPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    disabled_reason: str | None
    created_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(description="shown only now: keep it to verify signatures")


def public_view(subscription: Subscription) -> SubscriptionPublic:
    return SubscriptionPublic(**subscription.model_dump())
