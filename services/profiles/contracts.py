"""Contracts and subscriptions on a customer's profile, with their renewal and expiry dates.

Every change is announced as ``crm.customer.updated`` with ``changed_fields=["contracts"]``
and the customer's contracts in the snapshot (notifications schedule renewal reminders from
it). The profile's version goes up with it, so consumers that keep the newest snapshot by
version take this one. The contract, the profile's new version, the event and the timeline
entry are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from services.profiles.contracts_domain import (
    MAX_CONTRACTS,
    Contract,
    ContractTerms,
    describe_extension,
    describe_new,
    extension_of,
    new_contract,
)
from services.profiles.contracts_store import ContractStore
from services.profiles.domain import Customer
from services.profiles.handlers import live_customer, snapshot
from services.profiles.store import CustomerStore
from services.profiles.timeline_domain import EntryKind
from services.profiles.timeline_store import TimelineStore
from shared.clock import utc_now
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import new_event
from shared.events.customers import CustomerUpdated
from shared.mongo import MongoClient, Session, in_transaction_retrying
from shared.outbox import Outbox, OutboxRelay

SOURCE = "/rapport/profiles"

ATTEMPTS = 3
T = TypeVar("T")


class _Contention(Exception):
    """The profile or the contract changed since it was read; run the change again."""


@dataclass
class ContractBook:
    """What the contract use cases need."""

    client: MongoClient
    customers: CustomerStore
    store: ContractStore
    outbox: Outbox
    relay: OutboxRelay
    timeline: TimelineStore
    clock: Callable[[], datetime] = utc_now

    async def commit(self, work: Callable[[Session], Awaitable[T]]) -> T:
        try:
            result = await in_transaction_retrying(
                self.client, work, retry_on=(_Contention,), attempts=ATTEMPTS
            )
        except _Contention:
            raise Conflict("the customer changed concurrently; try again") from None
        self.relay.wake()
        return result


async def _announce(
    book: ContractBook, session: Session, customer: Customer, now: datetime, summary: str
) -> None:
    """A new version of the profile carrying all its contracts, and its timeline entry."""
    contracts = await book.store.of_customer(customer.id, session)
    bumped = customer.model_copy(update={"version": customer.version + 1, "updated_at": now})
    if not await book.customers.replace(customer, bumped, session):
        raise _Contention
    payload = CustomerUpdated.model_validate(
        {
            **snapshot(bumped),
            "changed_fields": ["contracts"],
            "contracts": [contract.summary() for contract in contracts],
        }
    )
    event = new_event(payload, source=SOURCE)
    await book.outbox.add(session, [event])
    await book.timeline.append(
        session,
        entry_id=event.id,
        customer_id=customer.id,
        kind=EntryKind.CONTRACT,
        occurred_at=now,
        summary=summary,
        details={"contracts": [c.contract_id for c in contracts]},
    )


async def add_contract(book: ContractBook, customer_id: str, terms: ContractTerms) -> Contract:
    async def work(session: Session) -> Contract:
        customer = await live_customer(book.customers, customer_id, session)
        if len(await book.store.of_customer(customer_id, session)) >= MAX_CONTRACTS:
            raise InvalidInput(f"a customer has at most {MAX_CONTRACTS} contracts")
        now = book.clock()
        contract = new_contract(customer.id, terms, now)
        await book.store.insert(contract, session)
        await _announce(book, session, customer, now, describe_new(contract))
        return contract

    return await book.commit(work)


async def list_contracts(book: ContractBook, customer_id: str) -> list[Contract]:
    await live_customer(book.customers, customer_id)
    return await book.store.of_customer(customer_id)


async def get_contract(book: ContractBook, customer_id: str, contract_id: str) -> Contract:
    await live_customer(book.customers, customer_id)
    contract = await book.store.get(contract_id)
    if contract is None or contract.customer_id != customer_id:
        raise NotFound(f"customer {customer_id} has no contract {contract_id}")
    return contract


async def change_contract(
    book: ContractBook, customer_id: str, contract_id: str, changes: dict[str, Any]
) -> Contract:
    async def work(session: Session) -> Contract:
        customer = await live_customer(book.customers, customer_id, session)
        before = await book.store.get(contract_id, session)
        if before is None or before.customer_id != customer_id:
            raise NotFound(f"customer {customer_id} has no contract {contract_id}")
        now = book.clock()
        after = before.with_changes(changes, now)
        if after.model_dump(include=set(ContractTerms.model_fields)) == before.model_dump(
            include=set(ContractTerms.model_fields)
        ):
            return before
        if not await book.store.replace(before, after, session):
            raise _Contention
        await _announce(book, session, customer, now, before.describe_change(after))
        return after

    return await book.commit(work)


async def extend_contract(
    book: ContractBook,
    customer_id: str,
    contract_id: str,
    *,
    months: int | None = None,
    until: date | None = None,
) -> Contract:
    """Move an active contract's renewal (and expiry) later, announced like any change of
    the contracts: notifications move the renewal reminders with it."""

    async def work(session: Session) -> Contract:
        customer = await live_customer(book.customers, customer_id, session)
        before = await book.store.get(contract_id, session)
        if before is None or before.customer_id != customer_id:
            raise NotFound(f"customer {customer_id} has no contract {contract_id}")
        now = book.clock()
        after = before.with_changes(extension_of(before, months=months, until=until), now)
        if not await book.store.replace(before, after, session):
            raise _Contention
        await _announce(book, session, customer, now, describe_extension(before, after))
        return after

    return await book.commit(work)
