"""Contracts and subscriptions on a customer's profile, with their renewal and expiry dates.

Every change is announced as ``crm.customer.updated`` with ``changed_fields=["contracts"]``
and the customer's contracts in the snapshot (notifications schedule renewal reminders from
it). The profile's version goes up with it, so consumers that keep the newest snapshot by
version take this one. The contract, the profile's new version, the event and the timeline
entry are written in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator
from pymongo import ASCENDING

from services.profiles.domain import Customer
from services.profiles.handlers import live_customer, snapshot
from services.profiles.store import CustomerStore
from services.profiles.timeline import EntryKind, TimelineStore
from shared.clock import utc_now
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import new_event
from shared.events.customers import ContractStatus, ContractSummary, CustomerUpdated
from shared.mongo import Database, MongoClient, Session, in_transaction_retrying
from shared.outbox import Outbox, OutboxRelay

SOURCE = "/rapport/profiles"
MAX_CONTRACTS = 100
ATTEMPTS = 3
T = TypeVar("T")

Product = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# Domain


class ContractTerms(BaseModel):
    """What a contract says; the dates are calendar days."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    product: Product
    start_date: date
    renews_at: date | None = None
    expires_at: date | None = None
    status: ContractStatus = ContractStatus.ACTIVE
    auto_renew: bool = False
    external_reference: Reference | None = None

    @model_validator(mode="after")
    def _dates_make_sense(self) -> Self:
        for name in ("renews_at", "expires_at"):
            day = getattr(self, name)
            if day is not None and day <= self.start_date:
                raise ValueError(f"{name} must be after start_date")
        if self.status is ContractStatus.ACTIVE and not (self.renews_at or self.expires_at):
            raise ValueError("an active contract needs renews_at or expires_at")
        return self


class Contract(ContractTerms):
    model_config = ConfigDict(extra="ignore")

    contract_id: str
    customer_id: str
    created_at: datetime
    updated_at: datetime
    version: int = 1

    def summary(self) -> ContractSummary:
        return ContractSummary(
            contract_id=self.contract_id,
            product=self.product,
            status=self.status,
            renews_at=self.renews_at,
            expires_at=self.expires_at,
            auto_renew=self.auto_renew,
        )

    def with_changes(self, changes: dict[str, Any], now: datetime) -> Contract:
        terms = _validated({**self.model_dump(include=set(ContractTerms.model_fields)), **changes})
        return self.model_copy(
            update={**terms.model_dump(), "updated_at": now, "version": self.version + 1}
        )

    def describe_change(self, after: Contract) -> str:
        changes = [
            f"{name} {_show(getattr(self, name))} → {_show(getattr(after, name))}"
            for name in ContractTerms.model_fields
            if getattr(self, name) != getattr(after, name)
        ]
        return f"contract {self.product} changed: {', '.join(changes)}"


def _show(value: object) -> str:
    return "none" if value is None else str(value)


def _validated(fields: dict[str, Any]) -> ContractTerms:
    try:
        return ContractTerms.model_validate(fields)
    except ValidationError as error:
        problems = [
            {
                "field": ".".join(str(part) for part in item["loc"]) or "contract",
                "message": item["msg"],
            }
            for item in error.errors(include_url=False)
        ]
        raise InvalidInput("the contract's terms are not valid", errors=problems) from None


def new_contract(customer_id: str, terms: ContractTerms, now: datetime) -> Contract:
    return Contract(
        contract_id=f"con_{uuid.uuid4().hex}",
        customer_id=customer_id,
        created_at=now,
        updated_at=now,
        **terms.model_dump(),
    )


def describe_new(contract: Contract) -> str:
    dates = [
        f"{label} {day}"
        for label, day in (("renews", contract.renews_at), ("expires", contract.expires_at))
        if day is not None
    ]
    suffix = f" ({', '.join(dates)})" if dates else ""
    return f"contract added: {contract.product}{suffix}"


# Store

_DATES = ("start_date", "renews_at", "expires_at")


class ContractStore:
    def __init__(self, db: Database) -> None:
        self.contracts = db["contracts"]

    async def ensure_indexes(self) -> None:
        await self.contracts.create_index([("customer_id", ASCENDING), ("created_at", ASCENDING)])

    async def get(self, contract_id: str, session: Session | None = None) -> Contract | None:
        document = await self.contracts.find_one({"_id": contract_id}, session=session)
        return None if document is None else _contract(document)

    async def of_customer(self, customer_id: str, session: Session | None = None) -> list[Contract]:
        cursor = self.contracts.find({"customer_id": customer_id}, session=session).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [_contract(document) async for document in cursor]

    async def insert(self, contract: Contract, session: Session) -> None:
        await self.contracts.insert_one(_document(contract), session=session)

    async def replace(self, before: Contract, after: Contract, session: Session) -> bool:
        result = await self.contracts.replace_one(
            {"_id": before.contract_id, "version": before.version},
            _document(after),
            session=session,
        )
        return result.matched_count == 1


def _document(contract: Contract) -> dict[str, Any]:
    document = contract.model_dump(mode="python", exclude={"contract_id"})
    for name in _DATES:  # BSON has no date-only type
        if document[name] is not None:
            document[name] = document[name].isoformat()
    document["_id"] = contract.contract_id
    return document


def _contract(document: dict[str, Any]) -> Contract:
    return Contract.model_validate({**document, "contract_id": document["_id"]})


# Use cases


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
