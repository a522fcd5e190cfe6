"""Notification events (``crm.notifications``): sent, failed and suppressed, as facts."""

from __future__ import annotations

from collections.abc import Sequence

from services.analytics.handlers.context import Analytics
from services.analytics.store import stored_time
from shared.events import Event
from shared.events.notifications import (
    NotificationEvent,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
)
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

routes: Routes[Analytics] = Routes()


async def load_notifications(
    ctx: Analytics, events: Sequence[Event[NotificationEvent]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want_names(event.payload.customer_id for event in events)


@routes.on(NotificationSent, NotificationFailed, NotificationSuppressed, load=load_notifications)
async def on_notification(ctx: Analytics, event: Event[NotificationEvent], uow: UnitOfWork) -> None:
    batch = await ctx.ready(uow)
    payload = event.payload
    at = getattr(payload, "sent_at", None) or getattr(payload, "failed_at", None)
    at = at or getattr(payload, "suppressed_at", None) or event.time
    named, customer_id = await batch.attribution(uow, payload.customer_id)
    batch.facts["notifications"].add(
        {
            "_id": event.id,
            "event_type": event.type,
            "notification_id": payload.notification_id,
            "named": named,
            "customer_id": customer_id,
            "channel": payload.channel.value,
            "rule": payload.rule,
            "reason": getattr(payload, "reason", None),
            "at": stored_time(at),
        }
    )
