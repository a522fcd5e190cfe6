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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.profiles.domain import CustomerStatus
from services.profiles.gdpr_domain import tombstone
from services.profiles.gdpr_store import merged_sources, plain
from services.profiles.handlers import SOURCE, Profiles, get_customer
from shared.errors import Conflict, Gone
from shared.events import Event, new_event
from shared.events.customers import CustomerErased
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
        await profiles.store.release_identities(ids, session)
        for eraser in gdpr.erasers:
            await eraser.erase(session, ids)
        await profiles.outbox.add(session, [erased_event(erased_id, now) for erased_id in ids])
        erased.extend(ids)

    await profiles.commit(erase)
    return erased
