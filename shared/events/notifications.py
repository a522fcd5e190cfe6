"""Events on ``crm.notifications``: what was sent, what failed, what was held back."""

from __future__ import annotations

from shared.events.base import EventPayload, Identifier, LongText, ShortText, Timestamp
from shared.events.customers import Channel
from shared.topics import NOTIFICATIONS


class NotificationEvent(EventPayload):
    topic = NOTIFICATIONS

    notification_id: Identifier
    customer_id: Identifier
    channel: Channel
    rule: ShortText
    source_event_id: Identifier | None = None
    locale: ShortText | None = None


class NotificationSent(NotificationEvent):
    event_type = "crm.notification.sent"

    sent_at: Timestamp


class NotificationFailed(NotificationEvent):
    event_type = "crm.notification.failed"

    reason: LongText
    attempts: int
    failed_at: Timestamp


class NotificationSuppressed(NotificationEvent):
    event_type = "crm.notification.suppressed"

    reason: LongText
    suppressed_at: Timestamp
