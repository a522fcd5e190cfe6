"""Interactions (operational CRM): the calls, visits, e-mails, chats, video calls and letters
between the customer and the company, each logged by whoever took part.

Logging one stores it, appends its timeline entry and publishes ``crm.interaction.logged``
through the outbox, all in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.profiles.handlers import SOURCE, Profiles, get_customer
from services.profiles.timeline import ERASED, NEWEST_FIRST, EntryKind, newer_than_cursor
from shared.errors import InvalidInput, NotFound
from shared.events import Event, new_event
from shared.events.customers import Direction, InteractionKind, InteractionLogged
from shared.mongo import Database, Session

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


def logged_event(interaction: Interaction) -> Event[InteractionLogged]:
    payload = InteractionLogged(
        interaction_id=interaction.id,
        customer_id=interaction.customer_id,
        kind=interaction.kind,
        direction=interaction.direction,
        channel=interaction.channel,
        summary=interaction.summary,
        agent_id=interaction.agent_id,
        occurred_at=interaction.occurred_at,
    )
    return new_event(payload, source=SOURCE)


def timeline_summary(interaction: Interaction) -> str:
    first_line = interaction.summary.splitlines()[0] if interaction.summary else ""
    if len(first_line) > TIMELINE_SUMMARY_LENGTH:
        first_line = first_line[: TIMELINE_SUMMARY_LENGTH - 1].rstrip() + "…"
    return f"{interaction.kind.value} ({interaction.direction.value}): {first_line}"


class InteractionStore:
    section = "interactions"

    def __init__(self, db: Database) -> None:
        self.interactions = db["interactions"]

    async def ensure_indexes(self) -> None:
        await self.interactions.create_index([("customer_id", 1), ("occurred_at", -1), ("_id", -1)])

    async def insert(self, interaction: Interaction, session: Session) -> None:
        document = interaction.model_dump(exclude={"id"})
        document["kind"] = interaction.kind.value
        document["direction"] = interaction.direction.value
        await self.interactions.insert_one({"_id": interaction.id, **document}, session=session)

    async def get(self, customer_id: str, interaction_id: str) -> Interaction | None:
        document = await self.interactions.find_one(
            {"_id": interaction_id, "customer_id": customer_id}
        )
        return None if document is None else _interaction(document)

    async def page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Interaction]:
        """Newest first, keyset-paginated on (occurred_at, _id)."""
        query = {"customer_id": customer_id, **newer_than_cursor(after)}
        cursor = self.interactions.find(query).sort(NEWEST_FIRST).limit(limit)
        return [_interaction(document) async for document in cursor]

    async def export(self, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
        query = {"customer_id": {"$in": list(customer_ids)}}
        cursor = self.interactions.find(query).sort(NEWEST_FIRST)
        return [_interaction(document).model_dump(mode="json") async for document in cursor]

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        """Keep that a contact happened (kind, direction, when, who for the company)."""
        await self.interactions.update_many(
            {"customer_id": {"$in": list(customer_ids)}},
            {"$set": {"summary": ERASED, "channel": None}},
            session=session,
        )


def _interaction(document: dict[str, Any]) -> Interaction:
    return Interaction.model_validate({**document, "id": document["_id"]})


@dataclass
class Interactions:
    """What the interaction use cases need: the profiles' ports and the interaction store."""

    profiles: Profiles
    store: InteractionStore


async def log_interaction(
    interactions: Interactions,
    customer_id: str,
    command: LogInteraction,
    recorded_by: str | None = None,
) -> Interaction:
    profiles = interactions.profiles
    customer = await get_customer(profiles, customer_id)
    interaction = new_interaction(command, customer.id, profiles.clock(), recorded_by)
    event = logged_event(interaction)

    async def store(session: Session) -> None:
        await interactions.store.insert(interaction, session)
        await profiles.outbox.add(session, [event])
        await profiles.timeline.append(
            session,
            entry_id=event.id,
            customer_id=customer.id,
            kind=EntryKind.INTERACTION,
            occurred_at=interaction.occurred_at,
            summary=timeline_summary(interaction),
            details={
                "interaction_id": interaction.id,
                "kind": interaction.kind.value,
                "direction": interaction.direction.value,
                "channel": interaction.channel,
                "agent_id": interaction.agent_id,
            },
        )

    await profiles.commit(store)
    return interaction


async def list_interactions(
    interactions: Interactions,
    customer_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Interaction]:
    customer = await get_customer(interactions.profiles, customer_id)
    return await interactions.store.page(customer.id, after, limit)


async def get_interaction(
    interactions: Interactions, customer_id: str, interaction_id: str
) -> Interaction:
    customer = await get_customer(interactions.profiles, customer_id)
    interaction = await interactions.store.get(customer.id, interaction_id)
    if interaction is None:
        raise NotFound(f"customer {customer_id} has no interaction {interaction_id}")
    return interaction
