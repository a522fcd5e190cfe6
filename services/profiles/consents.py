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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.profiles.handlers import SOURCE, Profiles, get_customer
from services.profiles.timeline import CHANNEL_NAMES, EntryKind
from shared.events import Event, new_event
from shared.events.customers import Channel, ConsentChanged, Purpose
from shared.mongo import Database, Session

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


def timeline_summary(change: ConsentChange) -> str:
    channel = CHANNEL_NAMES.get(change.channel.value, change.channel.value)
    verb = "granted" if change.granted else "withdrawn"
    return f"{change.purpose.value} {channel} consent {verb} ({change.source})"


class ConsentStore:
    """One document per customer (``_id`` is the customer id): ``current`` decisions by
    channel and purpose, and the ``history`` of changes, oldest first."""

    section = "consents"

    def __init__(self, db: Database) -> None:
        self.consents = db["consents"]

    async def overview(self, customer_id: str) -> ConsentOverview:
        document = await self.consents.find_one({"_id": customer_id}) or {}
        return _overview(customer_id, document)

    async def record(self, session: Session, customer_id: str, change: ConsentChange) -> bool:
        """Record ``change`` unless it is already the current decision; True if recorded."""
        path = f"current.{change.channel.value}.{change.purpose.value}"
        entry = change.model_dump(mode="python")
        entry |= {"channel": change.channel.value, "purpose": change.purpose.value}
        await self.consents.update_one(
            {"_id": customer_id},
            {"$setOnInsert": {"history": []}},
            upsert=True,
            session=session,
        )
        result = await self.consents.update_one(
            {"_id": customer_id, f"{path}.granted": {"$ne": change.granted}},
            {
                "$set": {
                    path: {
                        "granted": change.granted,
                        "source": change.source,
                        "changed_at": change.changed_at,
                    }
                },
                "$push": {"history": entry},
            },
            session=session,
        )
        return result.modified_count == 1

    async def state(self, customer_id: str, channel: Channel, purpose: Purpose) -> ConsentState:
        overview = await self.overview(customer_id)
        return next(
            state
            for state in overview.consents
            if state.channel is channel and state.purpose is purpose
        )

    async def export(self, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
        cursor = self.consents.find({"_id": {"$in": list(customer_ids)}})
        return [
            _overview(document["_id"], document).model_dump(mode="json")
            async for document in cursor
        ]

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        """Keep the decisions and their times; drop who made them and where."""
        cursor = self.consents.find({"_id": {"$in": list(customer_ids)}}, session=session)
        async for document in cursor:
            for entry in document.get("history", []):
                entry["source"] = None
                entry["changed_by"] = None
            for purposes in document.get("current", {}).values():
                for state in purposes.values():
                    state["source"] = None
            await self.consents.replace_one({"_id": document["_id"]}, document, session=session)


def _overview(customer_id: str, document: dict[str, Any]) -> ConsentOverview:
    current = document.get("current", {})
    states = [
        ConsentState(channel=channel, purpose=purpose, **current.get(channel, {}).get(purpose, {}))
        for channel in Channel
        for purpose in Purpose
    ]
    history = [ConsentChange.model_validate(entry) for entry in document.get("history", [])]
    return ConsentOverview(customer_id=customer_id, consents=states, history=history[::-1])


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
