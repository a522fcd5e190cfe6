"""MongoDB adapter of the purchase ledger and the per-customer figures.

``ledger`` holds one document per purchase (``purchase:<id>``) and per return or refund
(``return:<id>``): the ``_id`` is what makes a redelivered purchase or return a no-op.
``customer_figures`` holds one document per customer, rewritten in the same transaction
as each ledger entry; its ``version`` counts the changes. Money is stored as decimal128,
never as a float: ``Decimal`` in memory, converted by the collections' codec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.profiles.ledger import (
    CurrencyFigures,
    EntryKind,
    Figures,
    LedgerEntry,
    PurchaseEntry,
    ReturnEntry,
    figures_of,
    purchase_entry_id,
    return_entry_id,
)
from shared.mongo import Database, Session, with_decimals
from shared.unit_of_work import UnitOfWork


class LedgerStore:
    def __init__(self, db: Database) -> None:
        # (money is Decimal in memory, decimal128 in the store: see shared.mongo)
        self.entries = with_decimals(db["ledger"])
        self.figures = with_decimals(db["customer_figures"])

    async def ensure_indexes(self) -> None:
        await self.entries.create_index(
            [("customer_id", DESCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)]
        )

    # In a unit of work: what a batch touches is read once, changes are queued

    async def load(self, uow: UnitOfWork, entry_ids: Iterable[str]) -> list[LedgerEntry]:
        """Read these ledger entries into ``uow`` in one query; returns those found."""
        entry_ids = list(dict.fromkeys(entry_ids))
        await uow.load(self.entries, entry_ids)
        documents = [await uow.get(self.entries, entry_id) for entry_id in entry_ids]
        return [_entry(document) for document in documents if document is not None]

    async def purchase(self, uow: UnitOfWork, purchase_id: str) -> PurchaseEntry | None:
        document = await uow.get(self.entries, purchase_entry_id(purchase_id))
        return None if document is None else _purchase(document)

    async def return_(self, uow: UnitOfWork, return_id: str) -> ReturnEntry | None:
        document = await uow.get(self.entries, return_entry_id(return_id))
        return None if document is None else _return(document)

    def add(self, uow: UnitOfWork, entry: LedgerEntry) -> None:
        """Insert a new entry at commit; its id makes a second one a duplicate key."""
        uow.insert(self.entries, _entry_document(entry))

    def update_purchase(self, uow: UnitOfWork, purchase: PurchaseEntry) -> None:
        """Store what has been returned of a purchase so far."""
        uow.put(self.entries, _entry_document(purchase))

    async def load_figures(self, uow: UnitOfWork, customer_ids: Iterable[str]) -> None:
        await uow.load(self.figures, customer_ids)

    async def figures_in(self, uow: UnitOfWork, customer_id: str) -> Figures:
        """The customer's figures as ``uow`` sees them (with this batch's entries): read
        and decoded once per batch, then the figures the batch's last entry made."""

        def decode(document: Mapping[str, Any] | None) -> Figures:
            return Figures(customer_id=customer_id) if document is None else _figures(document)

        return await uow.decoded(self.figures, customer_id, decode)

    def put_figures(self, uow: UnitOfWork, figures: Figures) -> None:
        """Store the figures whole at commit, encoded then (once per customer and batch).
        No version guard is needed: a concurrent writer of the same figures makes one of
        the two transactions conflict and run again; ``version`` still counts the changes."""
        uow.keep(self.figures, figures.customer_id, figures, _figures_document)

    # Reads outside a unit of work, and the merge's recomputation

    async def page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[LedgerEntry]:
        """Newest first, keyset-paginated on (occurred_at, _id) so pages never shift."""
        query: dict[str, Any] = {"customer_id": customer_id}
        if after is not None:
            occurred_at, entry_id = after
            query["$or"] = [
                {"occurred_at": {"$lt": occurred_at}},
                {"occurred_at": occurred_at, "_id": {"$lt": entry_id}},
            ]
        cursor = (
            self.entries.find(query)
            .sort([("occurred_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [_entry(document) async for document in cursor]

    async def figures_of(self, customer_id: str, session: Session | None = None) -> Figures:
        document = await self.figures.find_one({"_id": customer_id}, session=session)
        return Figures(customer_id=customer_id) if document is None else _figures(document)

    async def recompute(self, customer_id: str, session: Session) -> Figures:
        """Fold the customer's whole ledger again (after a merge moved entries)."""
        cursor = self.entries.find({"customer_id": customer_id}, session=session).sort(
            [("occurred_at", ASCENDING), ("_id", ASCENDING)]
        )
        entries = [_entry(document) async for document in cursor]
        stored = await self.figures_of(customer_id, session)
        figures = figures_of(customer_id, entries)
        # Versions only grow: this is a change like any other.
        version = max(stored.version, figures.version) + 1
        figures = figures.model_copy(update={"version": version})
        await self.figures.replace_one(
            {"_id": customer_id}, _figures_document(figures), upsert=True, session=session
        )
        return figures


def _entry_document(entry: LedgerEntry) -> dict[str, Any]:
    document = entry.model_dump(mode="python")
    if isinstance(entry, PurchaseEntry):
        # SKUs are free text: as field names a dot or a dollar would break them.
        document["returned"] = [
            {"sku": sku, "quantity": quantity} for sku, quantity in entry.returned.items()
        ]
    document["kind"] = entry.kind.value
    document["_id"] = entry.entry_id
    return document


def _entry(document: dict[str, Any]) -> LedgerEntry:
    return _purchase(document) if document["kind"] == EntryKind.PURCHASE else _return(document)


def _purchase(document: dict[str, Any]) -> PurchaseEntry:
    fields = dict(document)
    fields["returned"] = {pair["sku"]: pair["quantity"] for pair in fields.get("returned", [])}
    return PurchaseEntry.model_validate(fields)


def _return(document: dict[str, Any]) -> ReturnEntry:
    return ReturnEntry.model_validate(document)


def _figures_document(figures: Figures) -> dict[str, Any]:
    return {
        "_id": figures.customer_id,
        "purchase_count": figures.purchase_count,
        "return_count": figures.return_count,
        "currencies": {
            code: spent.model_dump(exclude={"currency"})
            for code, spent in figures.currencies.items()
        },
        "first_purchase_at": figures.first_purchase_at,
        "last_purchase_at": figures.last_purchase_at,
        "categories": [
            {"category": name, "quantity": count} for name, count in figures.categories.items()
        ],
        "version": figures.version,
    }


def _figures(document: Mapping[str, Any]) -> Figures:
    return Figures(
        customer_id=document["_id"],
        purchase_count=document["purchase_count"],
        return_count=document["return_count"],
        currencies={
            code: CurrencyFigures(currency=code, **spent)
            for code, spent in document["currencies"].items()
        },
        first_purchase_at=document.get("first_purchase_at"),
        last_purchase_at=document.get("last_purchase_at"),
        categories={pair["category"]: pair["quantity"] for pair in document["categories"]},
        version=document["version"],
    )
