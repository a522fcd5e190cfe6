"""Customer events (``crm.customers``): registered and updated profiles claim the
facts that named them, merges move facts to the survivor, erasures anonymise them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.analytics.domain.summaries import FACT_KINDS
from services.analytics.handlers.context import Analytics
from services.analytics.store import ANONYMOUS_PREFIX, FACTS, stored_time
from shared.consumer import RejectEvent
from shared.events import Event
from shared.events.customers import (
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerSnapshot,
    CustomerUpdated,
)
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

routes: Routes[Analytics] = Routes()


def _identity_keys(snapshot: CustomerSnapshot) -> list[str]:
    keys = [f"email:{email.lower()}" for email in snapshot.emails]
    return keys + [f"external:{system}:{value}" for system, value in snapshot.external_ids.items()]


async def load_snapshots(
    ctx: Analytics, events: Sequence[Event[CustomerSnapshot]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    ids = [event.payload.customer_id for event in events]
    keys = [key for event in events for key in _identity_keys(event.payload)]
    batch.want_names(ids)
    for kind in FACTS:
        batch.want_facts(kind, "named", keys)  # facts that named them are theirs now
    for kind in FACT_KINDS:
        batch.want_facts(kind, "customer_id", ids)  # their summaries are rebuilt whole


@routes.on(CustomerRegistered, CustomerUpdated, load=load_snapshots)
async def on_customer_snapshot(
    ctx: Analytics, event: Event[CustomerSnapshot], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    snapshot = event.payload
    before = await batch.customer(uow, snapshot.customer_id)
    if before is not None and before.get("erased"):
        return
    name = snapshot.preferred_name or " ".join(
        part for part in (snapshot.given_name, snapshot.family_name) if part
    )
    batch.put_customer(
        uow,
        {
            **(before or {"_id": snapshot.customer_id, "merged_into": None}),
            "name": name or None,
            "registered_at": stored_time(snapshot.created_at),
        },
    )
    keys = _identity_keys(snapshot)
    for key in keys:
        batch.own(uow, key, snapshot.customer_id)
    touched = await batch.reattribute(uow, keys)  # purchases that named these
    for customer_id in sorted(touched | {snapshot.customer_id}):
        batch.touch(customer_id)


async def load_merges(
    ctx: Analytics, events: Sequence[Event[CustomerMerged]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    ids = [
        id_
        for event in events
        for id_ in (event.payload.customer_id, event.payload.source_customer_id)
    ]
    batch.want_names(ids)
    batch.want_names_of(ids)


@routes.on(CustomerMerged, load=load_merges)
async def on_customer_merged(ctx: Analytics, event: Event[CustomerMerged], uow: UnitOfWork) -> None:
    merged = event.payload
    survivor, source = merged.customer_id, merged.source_customer_id
    if survivor == source:
        raise RejectEvent("a customer cannot be merged into itself")
    batch = await ctx.ready(uow)
    names = await batch.named_for(uow, source) | await batch.named_for(uow, survivor)
    before = await batch.customer(uow, source)
    batch.put_customer(
        uow,
        {
            **(before or {"_id": source, "name": None, "registered_at": None}),
            "merged_into": None if merged.undone else survivor,
        },
    )
    touched = await batch.reattribute(uow, names)
    for customer_id in sorted(touched | {survivor, source}):
        batch.touch(customer_id)


async def load_erasures(
    ctx: Analytics, events: Sequence[Event[CustomerErased]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    ids = [event.payload.customer_id for event in events]
    batch.want_names(ids)
    batch.want_names_of(ids)
    batch.want_identities_of(ids)


@routes.on(CustomerErased, load=load_erasures)
async def on_customer_erased(ctx: Analytics, event: Event[CustomerErased], uow: UnitOfWork) -> None:
    batch = await ctx.ready(uow)
    erased = event.payload
    customer_id = erased.customer_id
    before = await batch.customer(uow, customer_id)
    if before is not None and before.get("erased"):
        return
    token = f"{ANONYMOUS_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, event.id).hex[:16]}"
    names = await batch.named_for(uow, customer_id)
    # Aggregates keep counting (registered_at stays for "new customers"); who it was goes.
    batch.put_customer(
        uow,
        {
            "_id": customer_id,
            "erased": True,
            "anonymous_id": token,
            "erased_at": stored_time(erased.erased_at),
            "registered_at": (before or {}).get("registered_at"),
            "merged_into": None,
            "name": None,
            "summary": None,
            "insight": None,
        },
    )
    await batch.anonymise(uow, names, token)
    await batch.disown_all(uow, customer_id)
    batch.untouch(customer_id)  # nothing to judge, nothing to announce
    await ctx.outbox.erase(uow.session, [customer_id])
