"""From a CloudEvents ``type`` (and schema version) to the payload model that reads it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.events import community, complaints, customers, insights, notifications, purchases
from shared.events.base import EventPayload

# Rewrites the data of version N into the shape of version N + 1.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

CONTRACT_EVENTS: tuple[type[EventPayload], ...] = (
    customers.CustomerRegistered,
    customers.CustomerUpdated,
    customers.CustomerMerged,
    customers.CustomerErased,
    customers.ConsentChanged,
    customers.InteractionLogged,
    customers.SignInRequested,
    customers.CustomerSignedOut,
    purchases.PurchaseCompleted,
    purchases.PurchaseReturned,
    complaints.ComplaintOpened,
    complaints.ComplaintAcknowledged,
    complaints.ComplaintStatusChanged,
    complaints.ComplaintReplied,
    complaints.ComplaintResolved,
    complaints.ComplaintReopened,
    complaints.ComplaintClosed,
    complaints.ComplaintSlaBreached,
    complaints.ComplaintFeedbackReceived,
    community.QuestionAsked,
    community.AnswerPosted,
    community.AnswerAccepted,
    notifications.NotificationSent,
    notifications.NotificationFailed,
    notifications.NotificationSuppressed,
    insights.SegmentChanged,
    insights.ChurnRiskChanged,
)

# Event types that carry a credential: never forwarded outside the platform (webhooks).
SECRET_EVENT_TYPES: frozenset[str] = frozenset(
    payload.event_type for payload in CONTRACT_EVENTS if payload.carries_secret
)


class UnknownEventType(LookupError):
    pass


class UnsupportedVersion(LookupError):
    pass


@dataclass
class EventRegistry:
    """Current payload model per type, plus upcasters that lift older versions to it."""

    models: dict[str, type[EventPayload]] = field(default_factory=dict)
    upcasters: dict[tuple[str, int], Upcaster] = field(default_factory=dict)

    @classmethod
    def of(cls, payloads: Iterable[type[EventPayload]]) -> EventRegistry:
        registry = cls()
        for payload in payloads:
            registry.register(payload)
        return registry

    def register(self, payload: type[EventPayload]) -> None:
        if payload.event_type in self.models:
            raise ValueError(f"{payload.event_type} is registered twice")
        self.models[payload.event_type] = payload

    def register_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        self.upcasters[(event_type, from_version)] = upcaster

    def model_for(self, event_type: str) -> type[EventPayload]:
        try:
            return self.models[event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r}") from None

    def parse(self, event_type: str, version: int, data: Mapping[str, Any]) -> EventPayload:
        """Validate ``data`` of ``version``, upcasting older versions first."""
        model = self.model_for(event_type)
        if version > model.schema_version:
            raise UnsupportedVersion(
                f"{event_type} v{version} is newer than the"
                f" v{model.schema_version} this consumer reads"
            )
        current = dict(data)
        for step in range(version, model.schema_version):
            upcaster = self.upcasters.get((event_type, step))
            if upcaster is None:
                raise UnsupportedVersion(f"no upcaster from {event_type} v{step}")
            current = upcaster(current)
        return model.model_validate(current)

    def types(self) -> list[str]:
        return sorted(self.models)


DEFAULT_REGISTRY = EventRegistry.of(CONTRACT_EVENTS)
