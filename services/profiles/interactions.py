"""Interactions (operational CRM): the calls, visits, e-mails, chats, video calls and letters
between the customer and the company, each logged by whoever took part.

Logging one stores it, appends its timeline entry and publishes ``crm.interaction.logged``
through the outbox, all in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.profiles.handlers import SOURCE, Profiles, get_customer
from services.profiles.interactions_domain import (
    Interaction,
    LogInteraction,
    new_interaction,
    timeline_summary,
)
from services.profiles.interactions_store import InteractionStore
from services.profiles.timeline_domain import EntryKind
from shared.errors import NotFound
from shared.events import Event, new_event
from shared.events.customers import InteractionLogged
from shared.mongo import Session


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
