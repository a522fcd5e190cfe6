"""Interactions, their rules: what logging one takes, what is kept, and how it is told on
the timeline (pure: no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from shared.errors import InvalidInput
from shared.events.customers import Direction, InteractionKind

# Clocks of phones and laptops drift; an interaction a little in the future is fine.
CLOCK_SKEW = timedelta(minutes=5)
TIMELINE_SUMMARY_LENGTH = 140

Summary = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
AgentId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class LogInteraction(BaseModel):
    """A contact with the customer to put on record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: InteractionKind
    direction: Direction
    channel: Label | None = Field(
        default=None, description="where it happened, e.g. `store:zagreb-1`, `hotline`"
    )
    summary: Summary
    agent_id: AgentId | None = Field(
        default=None,
        validation_alias=AliasChoices("agent_id", "agent"),
        description="who took part for the company; an agent's own id when left out",
    )
    occurred_at: AwareDatetime | None = Field(default=None, description="when; now if left out")


class Interaction(BaseModel):
    id: str
    customer_id: str
    kind: InteractionKind
    direction: Direction
    channel: str | None
    summary: str
    agent_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    recorded_by: str | None = None


def new_interaction(
    command: LogInteraction, customer_id: str, now: datetime, recorded_by: str | None
) -> Interaction:
    """An interaction as it will be kept; refuses one that has not happened yet."""
    occurred_at = _millis((command.occurred_at or now).astimezone(UTC))
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidInput(
            "occurred_at is in the future", occurred_at=occurred_at.isoformat(), now=now.isoformat()
        )
    return Interaction(
        id=f"int_{uuid.uuid4().hex}",
        customer_id=customer_id,
        kind=command.kind,
        direction=command.direction,
        channel=command.channel,
        summary=command.summary,
        agent_id=command.agent_id,
        occurred_at=occurred_at,
        recorded_at=_millis(now),
        recorded_by=recorded_by,
    )


def _millis(moment: datetime) -> datetime:
    """MongoDB keeps milliseconds; so does the interaction, so every copy agrees."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def timeline_summary(interaction: Interaction) -> str:
    first_line = interaction.summary.splitlines()[0] if interaction.summary else ""
    if len(first_line) > TIMELINE_SUMMARY_LENGTH:
        first_line = first_line[: TIMELINE_SUMMARY_LENGTH - 1].rstrip() + "…"
    return f"{interaction.kind.value} ({interaction.direction.value}): {first_line}"
