"""Profiles use cases: each takes what it needs and does one thing a user asked for.

Every change is stored together with the event announcing it (transactional outbox), so
other services never miss a change and never hear of one that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from pymongo.errors import DuplicateKeyError

from services.profiles.domain import (
    Customer,
    CustomerStatus,
    ProfileFields,
    changed_fields,
    register,
)
from services.profiles.store import CustomerStore
from services.profiles.timeline import EntryKind, TimelineStore
from shared.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from shared.events import Event, new_event
from shared.events.customers import CustomerRegistered, CustomerUpdated
from shared.mongo import MongoClient, Session, in_transaction
from shared.outbox import Outbox, OutboxRelay

SOURCE = "/rapport/profiles"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Profiles:
    """What the profiles use cases need: the store, the outbox and the clock."""

    client: MongoClient
    store: CustomerStore
    outbox: Outbox
    relay: OutboxRelay
    timeline: TimelineStore
    attribute_schema: Draft202012Validator
    clock: Clock = utc_now

    async def commit(self, work: Callable[[Session], Any]) -> None:
        """Run ``work`` in one transaction, then let the relay publish its events at once."""
        await in_transaction(self.client, work)
        self.relay.wake()


class CustomerMoved(Exception):
    """The profile was merged into another; lookups go to the survivor."""

    def __init__(self, customer_id: str, target_id: str) -> None:
        super().__init__(f"customer {customer_id} was merged into {target_id}")
        self.customer_id = customer_id
        self.target_id = target_id


def snapshot(customer: Customer) -> dict[str, Any]:
    """The public profile carried by customer events."""
    data = customer.model_dump(
        mode="json", exclude={"id", "status", "merged_into"}, exclude_none=True
    )
    return {**data, "customer_id": customer.id}


def registered_event(customer: Customer) -> Event[CustomerRegistered]:
    return new_event(CustomerRegistered.model_validate(snapshot(customer)), source=SOURCE)


def updated_event(customer: Customer, changed: list[str]) -> Event[CustomerUpdated]:
    payload = CustomerUpdated.model_validate({**snapshot(customer), "changed_fields": changed})
    return new_event(payload, source=SOURCE)


def check_attributes(profiles: Profiles, attributes: dict[str, Any]) -> None:
    errors = sorted(profiles.attribute_schema.iter_errors(attributes), key=lambda e: e.path)
    if errors:
        problems = [
            {
                "attribute": ".".join(str(part) for part in error.path) or "attributes",
                "message": error.message,
            }
            for error in errors
        ]
        raise InvalidInput("custom attributes do not match the attribute schema", errors=problems)


async def register_customer(profiles: Profiles, fields: ProfileFields) -> Customer:
    check_attributes(profiles, fields.attributes)
    customer = register(fields, profiles.clock())

    event = registered_event(customer)

    async def store(session: Session) -> None:
        await profiles.store.insert(customer, session)
        await profiles.outbox.add(session, [event])
        await profiles.timeline.append(
            session,
            entry_id=event.id,
            customer_id=customer.id,
            kind=EntryKind.PROFILE,
            occurred_at=customer.created_at,
            summary="profile created",
        )

    await _guard_identities(profiles, customer, profiles.commit(store))
    return customer


async def get_customer(profiles: Profiles, customer_id: str) -> Customer:
    customer = await profiles.store.get(customer_id)
    if customer is None or customer.status is CustomerStatus.ERASED:
        raise NotFound(f"no customer {customer_id}")
    if customer.status is CustomerStatus.MERGED and customer.merged_into:
        raise CustomerMoved(customer_id, customer.merged_into)
    return customer


async def update_customer(
    profiles: Profiles,
    customer_id: str,
    changes: dict[str, Any],
    expected_version: int | None = None,
) -> Customer:
    """Apply a partial update; with ``expected_version`` (If-Match), refuse a stale one."""
    before = await get_customer(profiles, customer_id)
    if expected_version is not None and expected_version != before.version:
        raise PreconditionFailed(
            f"customer {customer_id} is at version {before.version}, not {expected_version}",
            current_version=before.version,
        )
    after = before.with_changes(changes, profiles.clock())
    changed = changed_fields(before, after)
    if not changed:
        return before
    if "attributes" in changed:
        check_attributes(profiles, after.attributes)

    event = updated_event(after, changed)

    async def store(session: Session) -> None:
        if not await profiles.store.replace(before, after, session):
            raise PreconditionFailed(
                f"customer {customer_id} changed meanwhile; fetch it and try again"
            )
        await profiles.outbox.add(session, [event])
        await profiles.timeline.append(
            session,
            entry_id=event.id,
            customer_id=customer_id,
            kind=EntryKind.PROFILE,
            occurred_at=after.updated_at,
            summary=f"profile changed: {', '.join(changed)}",
            details={"changed_fields": changed, "version": after.version},
        )

    await _guard_identities(profiles, after, profiles.commit(store))
    return after


async def _guard_identities(profiles: Profiles, customer: Customer, write: Any) -> None:
    """Turn a clash on a unique e-mail, phone or external id into a 409 naming the owner."""
    try:
        await write
    except DuplicateKeyError:
        owner = await profiles.store.owner_of(customer.identity_keys())
        if owner is None or owner[1] == customer.id:
            raise Conflict("the profile changed meanwhile; try again") from None
        key, existing_id = owner
        kind, _, value = key.partition(":")
        raise Conflict(
            f"{kind} {value} already belongs to customer {existing_id}",
            existing_id=existing_id,
            field=kind,
        ) from None
