"""The customer's rights over their data: see all of it (export) and have it erased.

**Export** gathers everything the service holds about a customer, and about the profiles
merged into it: the profile, then one section per store that keeps personal data
(consents, interactions, timeline, and the ledger's collections read generically).

**Erasure** happens in one transaction:

- the profile becomes a tombstone with status ``erased``: every personal field is
  cleared (the model needs a name or a contact, so the tombstone is named ``[erased]``);
  its id stays resolvable, and every personal-data endpoint answers 410 Gone for it;
- its e-mail, phone and external-id keys are released, so a new profile may use them;
- each store's :class:`Eraser` removes or anonymises its part (interaction and timeline
  texts become ``[erased]``, consent sources are dropped); aggregates without identity
  (ledger amounts and items, figures) stay, keyed by the opaque customer id;
- the outbox: published events about the customer (kept 7 days for inspection) are
  deleted. Pending ones are *not* dropped: the outbox promises that every committed
  change is announced, in order, and consumers may depend on one (a purchase, a consent
  withdrawal). They are rewritten instead, same id and order, with the personal fields
  blanked, so what leaves after the erasure carries no personal data either; the
  ``crm.customer.erased`` event added behind them tells every consumer to forget what
  they knew. (Events already on Kafka stay there until the topic's retention ends; the
  erased event is how consumers learn to erase their copies.)
- one ``crm.customer.erased`` per erased id (the customer and any profile merged into
  it) goes through the outbox.

Erasing an erased customer again is refused with 410 and publishes nothing.
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from bson import Decimal128, ObjectId

from services.profiles.domain import Customer, CustomerStatus, ProfileFields
from services.profiles.handlers import SOURCE, Profiles, get_customer
from services.profiles.store import CustomerStore
from services.profiles.timeline import ERASED
from shared.errors import Conflict, Gone
from shared.events import Event, new_event
from shared.events.customers import CustomerErased
from shared.identity import MAX_MERGE_HOPS
from shared.identity import merged_sources as sources_of
from shared.mongo import Session


class Exporter(Protocol):
    """A store that keeps something about customers and can hand it over."""

    @property
    def section(self) -> str: ...

    async def export(self, customer_ids: Sequence[str]) -> Any: ...


class Eraser(Protocol):
    """A store that can remove or anonymise what it keeps about customers."""

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None: ...


@dataclass
class Gdpr:
    """What export and erasure need: the profiles and every store of personal data."""

    profiles: Profiles
    exporters: Sequence[Exporter]
    erasers: Sequence[Eraser]


async def merged_sources(
    store: CustomerStore, customer_id: str, session: Session | None = None
) -> list[str]:
    """Ids of the profiles merged into ``customer_id``, directly or through others.

    All of them (export and erasure must reach every one: no limit on how many), down to
    ``MAX_MERGE_HOPS`` levels (one query a level).
    """
    levels = 0

    async def merged_into(ids: list[str]) -> list[str]:
        nonlocal levels
        if levels == MAX_MERGE_HOPS:
            return []  # as deep as a merge chain may go: read no further
        levels += 1
        cursor = store.customers.find(
            {"merged_into": {"$in": ids}, "status": CustomerStatus.MERGED.value},
            {"_id": 1},
            session=session,
        )
        return [document["_id"] async for document in cursor]

    return await sources_of(customer_id, merged_into, limit=sys.maxsize)


async def export_customer(gdpr: Gdpr, customer_id: str) -> dict[str, Any]:
    """Everything the service holds about the customer, as plain JSON values."""
    customer = await get_customer(gdpr.profiles, customer_id)
    sources = await merged_sources(gdpr.profiles.store, customer_id)
    merged = [await gdpr.profiles.store.get(source) for source in sources]
    export: dict[str, Any] = {
        "customer_id": customer.id,
        "exported_at": gdpr.profiles.clock(),
        "profile": customer.model_dump(mode="json"),
        "merged_profiles": [c.model_dump(mode="json") for c in merged if c is not None],
    }
    ids = [customer.id, *sources]
    for exporter in gdpr.exporters:
        export[exporter.section] = await exporter.export(ids)
    result: dict[str, Any] = plain(export)
    return result


def tombstone(customer: Customer, now: datetime) -> Customer:
    """What is left of an erased profile: its id, dates and version, and no person."""
    cleared = {
        name: field.get_default(call_default_factory=True)
        for name, field in ProfileFields.model_fields.items()
    }
    return customer.model_copy(
        update={
            **cleared,
            "given_name": ERASED,
            "status": CustomerStatus.ERASED,
            "updated_at": now,
            "version": customer.version + 1,
        }
    )


def erased_event(customer_id: str, now: datetime) -> Event[CustomerErased]:
    return new_event(CustomerErased(customer_id=customer_id, erased_at=now), source=SOURCE)


async def erase_customer(gdpr: Gdpr, customer_id: str) -> list[str]:
    """Erase the customer and the profiles merged into it; returns the erased ids."""
    await get_customer(gdpr.profiles, customer_id)
    profiles = gdpr.profiles
    now = profiles.clock()
    erased: list[str] = []

    async def erase(session: Session) -> None:
        erased.clear()
        current = await profiles.store.get(customer_id, session)
        if current is None or current.status is CustomerStatus.ERASED:
            raise Gone(f"customer {customer_id} was erased")
        people = [current]
        for source in await merged_sources(profiles.store, customer_id, session):
            merged = await profiles.store.get(source, session)
            if merged is not None:
                people.append(merged)
        for before in people:
            if not await profiles.store.replace(before, tombstone(before, now), session):
                raise Conflict(f"customer {before.id} changed meanwhile; try again")
        ids = [person.id for person in people]
        # The replace above releases a live profile's keys; merged ones may still hold some.
        await profiles.store.identities.delete_many({"customer_id": {"$in": ids}}, session=session)
        for eraser in gdpr.erasers:
            await eraser.erase(session, ids)
        await profiles.outbox.add(session, [erased_event(erased_id, now) for erased_id in ids])
        erased.extend(ids)

    await profiles.commit(erase)
    return erased


class CollectionSection:
    """Another part of the service's data read generically: a collection's documents
    about the customer (``key`` holds the customer id), whether or not it exists yet."""

    def __init__(self, section: str, collection: Any, key: str = "customer_id") -> None:
        self.section = section
        self.collection = collection
        self.key = key

    async def export(self, customer_ids: Sequence[str]) -> list[Any]:
        cursor = self.collection.find({self.key: {"$in": list(customer_ids)}}).sort("_id", 1)
        return [plain(document) async for document in cursor]


class FieldEraser:
    """Erasure in another part of the service's data: unset the fields that name the
    person (e.g. how a purchase named its buyer) and keep the rest (amounts, items)."""

    def __init__(self, collection: Any, fields: Sequence[str], key: str = "customer_id") -> None:
        self.collection = collection
        self.fields = list(fields)
        self.key = key

    async def erase(self, session: Session, customer_ids: Sequence[str]) -> None:
        await self.collection.update_many(
            {self.key: {"$in": list(customer_ids)}},
            {"$unset": dict.fromkeys(self.fields, "")},
            session=session,
        )


def plain(value: Any) -> Any:
    """A stored value as JSON: decimals as strings, times in ISO 8601, bytes in base64."""
    if isinstance(value, dict):
        return {str(name): plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Decimal128):
        return format(value.to_decimal(), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ObjectId | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
