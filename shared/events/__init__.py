"""Rapport's events: CloudEvents envelope, typed payloads, registry and JSON Schemas."""

from shared.events.base import EventPayload
from shared.events.envelope import (
    CONTENT_TYPE,
    Event,
    InvalidEvent,
    KafkaRecord,
    decode,
    encode,
    new_event,
)
from shared.events.registry import CONTRACT_EVENTS, DEFAULT_REGISTRY, EventRegistry

__all__ = [
    "CONTENT_TYPE",
    "CONTRACT_EVENTS",
    "DEFAULT_REGISTRY",
    "Event",
    "EventPayload",
    "EventRegistry",
    "InvalidEvent",
    "KafkaRecord",
    "decode",
    "encode",
    "new_event",
]
