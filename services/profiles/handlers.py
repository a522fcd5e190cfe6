"""Profiles use cases: each takes what it needs and does one thing a user asked for.

Every change is stored together with the event announcing it (transactional outbox), so
other services never miss a change and never hear of one that did not happen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from services.profiles.domain import (
    Customer,
    CustomerQuery,
    CustomerSort,
    CustomerStatus,
    ProfileFields,
    changed_fields,
    register,
)
from services.profiles.identity import Duplicate, assess
from services.profiles.import_export import Row, RowError
from services.profiles.store import CustomerStore
from services.profiles.timeline_domain import EntryKind
from services.profiles.timeline_store import TimelineStore
from shared.clock import Clock, utc_now
from shared.errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    RapportError,
)
from shared.events import Event, new_event
from shared.events.customers import CustomerRegistered, CustomerUpdated
from shared.mongo import MongoClient, Session, in_transaction
from shared.outbox import Outbox, OutboxRelay
from shared.unit_of_work import UnitsOfWork

SOURCE = "/rapport/profiles"


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

    def units(self) -> UnitsOfWork:
        """Units of work on the profiles' store and outbox (the relay woken after each)."""
        return UnitsOfWork(self.client, self.outbox, self.relay)


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


async def live_customer(
    store: CustomerStore, customer_id: str, session: Session | None = None
) -> Customer:
    """The live profile ``customer_id``: 404 unknown, 410 erased, 308 merged elsewhere."""
    customer = await store.get(customer_id, session)
    if customer is None:
        raise NotFound(f"no customer {customer_id}")
    if customer.status is CustomerStatus.ERASED:
        raise Gone(f"customer {customer_id} was erased")
    if customer.status is CustomerStatus.MERGED and customer.merged_into:
        raise CustomerMoved(customer_id, customer.merged_into)
    return customer


async def get_customer(profiles: Profiles, customer_id: str) -> Customer:
    return await live_customer(profiles.store, customer_id)


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


async def list_customers(
    profiles: Profiles,
    query: CustomerQuery,
    sort: CustomerSort,
    after: tuple[Any, str] | None,
    limit: int,
) -> tuple[list[Customer], bool]:
    """A page of live profiles, and whether there are more."""
    found = await profiles.store.search(query, after, limit + 1, sort.field, sort.descending)
    return found[:limit], len(found) > limit


async def find_duplicates(profiles: Profiles, customer_id: str) -> list[Duplicate]:
    """Live profiles likely to be the same person, most likely first."""
    customer = await get_customer(profiles, customer_id)
    candidates = await profiles.store.sharing_match_keys(customer)
    found = [match for c in candidates if (match := assess(customer, c)) is not None]
    return sorted(found, key=lambda match: (-match.score, match.customer.id))


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class _Planned:
    row: int
    before: Customer | None
    after: Customer
    changed: list[str]


IMPORT_CHUNK = 100


async def import_customers(
    profiles: Profiles, rows: Iterable[Row | RowError], dry_run: bool = False
) -> ImportReport:
    """Create or update a profile per row; a bad row is reported and written not at all.

    A row names its profile by ``id``, or else by an e-mail, phone or external id that a
    live profile already has; otherwise it creates one. Rows are checked against the store
    and against each other (two rows may not claim one e-mail) before anything is written,
    and each row is written whole with its events, or not at all.
    """
    report = ImportReport()
    planned: list[_Planned] = []
    claimed: dict[str, int] = {}
    targeted: dict[str, int] = {}
    now = profiles.clock()
    for row in rows:
        if isinstance(row, RowError):
            report.errors.append(row)
            continue
        try:
            plan = await _plan_row(profiles, row, now)
        except (ValidationError, RapportError, ValueError) as error:
            report.errors.append(RowError(row.number, _reason(error)))
            continue
        if plan is None:
            report.unchanged += 1
            continue
        if plan.before is not None and plan.before.id in targeted:
            number = targeted[plan.before.id]
            report.errors.append(
                RowError(row.number, f"customer {plan.before.id} is also updated by row {number}")
            )
            continue
        reason = await _identity_clash(profiles, plan, claimed)
        if reason:
            report.errors.append(RowError(row.number, reason))
            continue
        targeted[plan.after.id] = row.number
        planned.append(plan)
    if not dry_run:
        for start in range(0, len(planned), IMPORT_CHUNK):
            await _write_planned(profiles, planned[start : start + IMPORT_CHUNK], report)
    else:
        for plan in planned:
            (report.updated if plan.before else report.created).append(plan.after.id)
    report.errors.sort(key=lambda error: error.number)
    return report


async def _plan_row(profiles: Profiles, row: Row, now: datetime) -> _Planned | None:
    before = await _import_target(profiles, row)
    if before is None:
        after = register(ProfileFields.model_validate(row.changes), now)
        changed: list[str] = []
    else:
        after = before.with_changes(row.changes, now)
        changed = changed_fields(before, after)
        if not changed:
            return None
    check_attributes(profiles, after.attributes)
    return _Planned(row.number, before, after, changed)


async def _import_target(profiles: Profiles, row: Row) -> Customer | None:
    if row.customer_id:
        return await get_customer(profiles, row.customer_id)
    probe = ProfileFields.model_validate(row.changes)
    keys = register(probe, profiles.clock(), customer_id="probe").identity_keys()
    owner = await profiles.store.owner_of(keys) if keys else None
    return None if owner is None else await get_customer(profiles, owner[1])


async def _identity_clash(profiles: Profiles, plan: _Planned, claimed: dict[str, int]) -> str:
    keys = plan.after.identity_keys() - (plan.before.identity_keys() if plan.before else set())
    for key in sorted(keys):
        kind, _, value = key.partition(":")
        if key in claimed:
            return f"{kind} {value} is also in row {claimed[key]}"
        owner = await profiles.store.owner_of([key])
        if owner is not None and owner[1] != plan.after.id:
            return f"{kind} {value} already belongs to customer {owner[1]}"
    for key in keys:
        claimed[key] = plan.row
    return ""


async def _write_planned(profiles: Profiles, chunk: list[_Planned], report: ImportReport) -> None:
    try:
        await profiles.commit(lambda session: _store_planned(profiles, chunk, session))
    except (DuplicateKeyError, PreconditionFailed):
        if len(chunk) > 1:  # someone changed a profile meanwhile: find the row, keep the rest
            for plan in chunk:
                await _write_planned(profiles, [plan], report)
            return
        report.errors.append(RowError(chunk[0].row, "the profile changed meanwhile; retry"))
        return
    for plan in chunk:
        (report.updated if plan.before else report.created).append(plan.after.id)


async def _store_planned(profiles: Profiles, chunk: list[_Planned], session: Session) -> None:
    for plan in chunk:
        if plan.before is None:
            event: Event[Any] = registered_event(plan.after)
            await profiles.store.insert(plan.after, session)
            summary = "profile created by import"
        else:
            event = updated_event(plan.after, plan.changed)
            if not await profiles.store.replace(plan.before, plan.after, session):
                raise PreconditionFailed(f"customer {plan.after.id} changed meanwhile")
            summary = f"profile changed by import: {', '.join(plan.changed)}"
        await profiles.outbox.add(session, [event])
        await profiles.timeline.append(
            session,
            entry_id=event.id,
            customer_id=plan.after.id,
            kind=EntryKind.PROFILE,
            occurred_at=plan.after.updated_at,
            summary=summary,
        )


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in item['loc']) or 'row'}: {item['msg']}"
            for item in error.errors(include_url=False)
        ]
        return "; ".join(parts)
    if isinstance(error, RapportError):
        return error.detail
    return str(error)


async def all_customers(profiles: Profiles, page_size: int = 500) -> AsyncIterator[Customer]:
    """Every live profile, newest first, read page by page."""
    after: tuple[Any, str] | None = None
    while True:
        page = await profiles.store.search(CustomerQuery(), after, page_size)
        for customer in page:
            yield customer
        if len(page) < page_size:
            return
        after = (page[-1].created_at, page[-1].id)
