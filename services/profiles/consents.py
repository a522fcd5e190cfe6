"""Consents: may the company contact the customer on a channel, for a purpose?

One decision per channel (e-mail, SMS, webhook, in-app) and purpose (transactional,
marketing), each with its source (a web form, a call, ``self-service``) and time, plus the
history of every change. A channel and purpose nobody decided on reads ``granted: null``:
the profiles service keeps what the customer said and leaves the default policy to the
services that send messages. Each change publishes ``crm.customer.consent_changed``
through the outbox and appends a timeline entry in the same transaction; setting what is
already recorded changes nothing and publishes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.profiles.consents_domain import (
    ConsentChange,
    ConsentDecision,
    ConsentOverview,
    timeline_summary,
)
from services.profiles.consents_store import ConsentStore
from services.profiles.handlers import SOURCE, Profiles, get_customer
from services.profiles.timeline_domain import EntryKind
from shared.events import Event, new_event
from shared.events.customers import Channel, ConsentChanged, Purpose
from shared.mongo import Session


def changed_event(customer_id: str, change: ConsentChange) -> Event[ConsentChanged]:
    payload = ConsentChanged(
        customer_id=customer_id,
        channel=change.channel,
        purpose=change.purpose,
        granted=change.granted,
        source=change.source or "",
        changed_at=change.changed_at,
    )
    return new_event(payload, source=SOURCE, event_id=change.id)


@dataclass
class Consents:
    """What the consent use cases need: the profiles' ports and the consent store."""

    profiles: Profiles
    store: ConsentStore


async def read_consents(consents: Consents, customer_id: str) -> ConsentOverview:
    customer = await get_customer(consents.profiles, customer_id)
    return await consents.store.overview(customer.id)


async def set_consent(
    consents: Consents,
    customer_id: str,
    channel: Channel,
    purpose: Purpose,
    *,
    granted: bool,
    source: str,
    changed_by: str | None = None,
) -> ConsentDecision:
    profiles = consents.profiles
    customer = await get_customer(profiles, customer_id)
    now = profiles.clock()
    change = ConsentChange(
        id=str(uuid.uuid4()),
        channel=channel,
        purpose=purpose,
        granted=granted,
        source=source,
        changed_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
        changed_by=changed_by,
    )
    event = changed_event(customer.id, change)
    changed = False

    async def store(session: Session) -> None:
        nonlocal changed
        changed = await consents.store.record(session, customer.id, change)
        if not changed:
            return
        await profiles.outbox.add(session, [event])
        await profiles.timeline.append(
            session,
            entry_id=event.id,
            customer_id=customer.id,
            kind=EntryKind.CONSENT,
            occurred_at=change.changed_at,
            summary=timeline_summary(change),
            details={
                "channel": channel.value,
                "purpose": purpose.value,
                "granted": granted,
                "source": source,
            },
        )

    await profiles.commit(store)
    state = await consents.store.state(customer.id, channel, purpose)
    return ConsentDecision(consent=state, changed=changed)
