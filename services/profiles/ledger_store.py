"""MongoDB adapter of the purchase ledger and the per-customer figures.

``ledger`` holds one document per purchase (``purchase:<id>``) and per return or refund
(``return:<id>``): the ``_id`` is what makes a redelivered purchase or return a no-op.
``customer_figures`` holds one document per customer, rewritten in the same transaction
as each ledger entry and guarded by its version. Money is stored as Decimal128, never as
a float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bson import Decimal128
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
from shared.mongo import Database, Session


class LedgerContention(Exception):
    """Another transaction changed the same figures or purchase first; run it again."""


class LedgerStore:
    def __init__(self, db: Database) -> None:
        self.entries = db["ledger"]
        self.figures = db["customer_figures"]
        self.identities = db["identities"]

    async def ensure_indexes(self) -> None:
        await self.entries.create_index(
            [("customer_id", DESCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)]
        )

    async def purchase(
        self, purchase_id: str, session: Session | None = None
    ) -> PurchaseEntry | None:
        document = await self.entries.find_one(
            {"_id": purchase_entry_id(purchase_id)}, session=session
        )
        return None if document is None else _purchase(document)

    async def return_(self, return_id: str, session: Session | None = None) -> ReturnEntry | None:
        document = await self.entries.find_one({"_id": return_entry_id(return_id)}, session=session)
        return None if document is None else _return(document)

    async def add(self, entry: LedgerEntry, session: Session) -> None:
        await self.entries.insert_one(_entry_document(entry), session=session)

    async def replace_purchase(
        self, before: PurchaseEntry, after: PurchaseEntry, session: Session
    ) -> None:
        result = await self.entries.replace_one(
            {"_id": before.entry_id, "revision": before.revision},
            _entry_document(after),
            session=session,
        )
        if result.matched_count == 0:
            raise LedgerContention(f"purchase {before.purchase_id} changed meanwhile")

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

    async def save_figures(self, before: Figures, after: Figures, session: Session) -> None:
        """Store ``after`` if the stored figures are still ``before``."""
        document = _figures_document(after)
        if before.version == 0:
            # A concurrent first entry makes this a duplicate key: the caller runs again.
            await self.figures.insert_one(document, session=session)
            return
        result = await self.figures.replace_one(
            {"_id": after.customer_id, "version": before.version}, document, session=session
        )
        if result.matched_count == 0:
            raise LedgerContention(f"the figures of {after.customer_id} changed meanwhile")

    async def recompute(self, customer_id: str, session: Session) -> Figures:
        """Fold the customer's whole ledger again (after a merge moved entries)."""
        cursor = self.entries.find({"customer_id": customer_id}, session=session).sort(
            [("occurred_at", ASCENDING), ("_id", ASCENDING)]
        )
        entries = [_entry(document) async for document in cursor]
        stored = await self.figures_of(customer_id, session)
        figures = figures_of(customer_id, entries)
        # A new version, so a writer that read the old figures retries against these.
        version = max(stored.version, figures.version) + 1
        figures = figures.model_copy(update={"version": version})
        await self.figures.replace_one(
            {"_id": customer_id}, _figures_document(figures), upsert=True, session=session
        )
        return figures

    async def identity_owner(self, key: str, session: Session) -> str | None:
        """The live profile that owns an identity key (``email:...``, ``external:...``)."""
        document = await self.identities.find_one({"_id": key}, session=session)
        return None if document is None else str(document["customer_id"])


def _to_bson(value: Any) -> Any:
    if isinstance(value, Decimal):
        return Decimal128(value)
    if isinstance(value, dict):
        return {key: _to_bson(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_bson(item) for item in value]
    return value


def _from_bson(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, dict):
        return {key: _from_bson(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_bson(item) for item in value]
    return value


def _entry_document(entry: LedgerEntry) -> dict[str, Any]:
    document = entry.model_dump(mode="python")
    if isinstance(entry, PurchaseEntry):
        # SKUs are free text: as field names a dot or a dollar would break them.
        document["returned"] = [
            {"sku": sku, "quantity": quantity} for sku, quantity in entry.returned.items()
        ]
    document["kind"] = entry.kind.value
    document["_id"] = entry.entry_id
    return _to_bson(document)  # type: ignore[no-any-return]


def _entry(document: dict[str, Any]) -> LedgerEntry:
    return _purchase(document) if document["kind"] == EntryKind.PURCHASE else _return(document)


def _purchase(document: dict[str, Any]) -> PurchaseEntry:
    fields = _from_bson(document)
    fields["returned"] = {pair["sku"]: pair["quantity"] for pair in fields.get("returned", [])}
    return PurchaseEntry.model_validate(fields)


def _return(document: dict[str, Any]) -> ReturnEntry:
    return ReturnEntry.model_validate(_from_bson(document))


def _figures_document(figures: Figures) -> dict[str, Any]:
    return _to_bson(  # type: ignore[no-any-return]
        {
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
    )


def _figures(document: dict[str, Any]) -> Figures:
    fields = _from_bson(document)
    return Figures(
        customer_id=fields["_id"],
        purchase_count=fields["purchase_count"],
        return_count=fields["return_count"],
        currencies={
            code: CurrencyFigures(currency=code, **spent)
            for code, spent in fields["currencies"].items()
        },
        first_purchase_at=fields.get("first_purchase_at"),
        last_purchase_at=fields.get("last_purchase_at"),
        categories={pair["category"]: pair["quantity"] for pair in fields["categories"]},
        version=fields["version"],
    )
