"""Consents, their rules: a decision per channel and purpose, its history, and how a
change is told on the timeline (pure: no I/O)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.profiles.timeline_domain import CHANNEL_NAMES
from shared.events.customers import Channel, Purpose

SELF_SERVICE = "self-service"


class ConsentState(BaseModel):
    """The current decision for one channel and purpose; ``granted`` null if none yet."""

    channel: Channel
    purpose: Purpose
    granted: bool | None = None
    source: str | None = None
    changed_at: datetime | None = None


class ConsentChange(BaseModel):
    """One decision as recorded in the history."""

    id: str
    channel: Channel
    purpose: Purpose
    granted: bool
    source: str | None
    changed_at: datetime
    changed_by: str | None = None


class ConsentOverview(BaseModel):
    customer_id: str
    consents: list[ConsentState]
    history: list[ConsentChange]


class ConsentDecision(BaseModel):
    """The result of a change: the state now, and whether it changed."""

    consent: ConsentState
    changed: bool


def timeline_summary(change: ConsentChange) -> str:
    channel = CHANNEL_NAMES.get(change.channel.value, change.channel.value)
    verb = "granted" if change.granted else "withdrawn"
    return f"{change.purpose.value} {channel} consent {verb} ({change.source})"
