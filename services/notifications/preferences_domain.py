"""Preferences, their model: what a customer chose about the messages they get (opt-outs
per channel and purpose, quiet hours), as the API takes and shows it and as the policy
judges it (pure: no I/O; kept by ``preferences_store.py``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.notifications.domain import Channel, Purpose
from services.notifications.policy import Preferences, QuietHours


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["21:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel
    purpose: Purpose


class CustomerPreferences(BaseModel):
    """What a customer chose: opt-outs per channel x purpose and their quiet hours
    (null: the service's default; ``quiet_hours_off``: none at all)."""

    model_config = ConfigDict(extra="forbid")

    opt_outs: list[OptOut] = Field(default_factory=list, max_length=8)
    quiet_hours: QuietHoursBody | None = None
    quiet_hours_off: bool = False

    def to_domain(self) -> Preferences:
        hours = self.quiet_hours
        return Preferences(
            opt_outs=frozenset((o.channel, o.purpose) for o in self.opt_outs),
            quiet_hours=QuietHours.parse(hours.start, hours.end) if hours else None,
            quiet_hours_off=self.quiet_hours_off,
        )
