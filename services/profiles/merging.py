"""Merging two profiles of one person, and undoing it.

A merge folds a *source* profile into a *target*: the target gains what it lacked
(e-mails, phones, external ids, tags, attributes, empty names and dates), the ledger,
contracts, interactions, consents and timeline of the source move to the target, the
figures are recomputed, and the source becomes a tombstone pointing at the target (its
URLs redirect). Everything is recorded in a ``merges`` document, so the merge can be
undone: what moved moves back, what the target gained is taken away again, and the source
comes back as it was. Each step is one transaction with its events.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from services.profiles.contracts import ContractStore
from services.profiles.domain import Customer, CustomerStatus, changed_fields
from services.profiles.handlers import SOURCE, Profiles, get_customer, snapshot
from services.profiles.ledger_store import LedgerStore
from services.profiles.timeline import EntryKind
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import Event, new_event
from shared.events.customers import CustomerMerged, CustomerUpdated
from shared.mongo import Collection, Database, Session

LIST_FIELDS = ("emails", "phones", "tags")
MAP_FIELDS = ("external_ids", "attributes")
FILLED_FIELDS = ("given_name", "family_name", "preferred_name", "address", "birthday")


class Gains(BaseModel):
    """What a merge added to the target: what an undo takes away again."""

    lists: dict[str, list[str]] = Field(default_factory=dict)
    maps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    filled: dict[str, Any] = Field(default_factory=dict)


def fold_into(target: Customer, source: Customer, now: datetime) -> tuple[Customer, Gains]:
    """The target with what only the source knew; the target's own values win."""
    gains = Gains()
    changes: dict[str, Any] = {}
    for name in LIST_FIELDS:
        mine: list[str] = getattr(target, name)
        added = [value for value in getattr(source, name) if value not in mine]
        if added:
            gains.lists[name] = added
            changes[name] = [*mine, *added]
    for name in MAP_FIELDS:
        own: dict[str, Any] = getattr(target, name)
        new = {key: value for key, value in getattr(source, name).items() if key not in own}
        if new:
            gains.maps[name] = new
            changes[name] = {**own, **new}
    for name in FILLED_FIELDS:
        value = getattr(source, name)
        if getattr(target, name) is None and value is not None:
            dumped = value.model_dump() if isinstance(value, BaseModel) else value
            gains.filled[name] = dumped
            changes[name] = dumped
    return target.with_changes(changes, now), gains


def take_back(target: Customer, gains: Gains, now: datetime) -> Customer:
    """The target without what a merge gave it (values changed since are kept)."""
    changes: dict[str, Any] = {}
    for name, added in gains.lists.items():
        changes[name] = [value for value in getattr(target, name) if value not in added]
    for name, added_map in gains.maps.items():
        current: dict[str, Any] = getattr(target, name)
        changes[name] = {k: v for k, v in current.items() if added_map.get(k, object()) != v}
    for name, value in gains.filled.items():
        current_value = getattr(target, name)
        dumped = (
            current_value.model_dump() if isinstance(current_value, BaseModel) else current_value
        )
        if dumped == value:
            changes[name] = None
    return target.with_changes(changes, now)


class CustomerData(Protocol):
    """Documents of one customer that follow the customer through a merge."""

    name: str

    async def move(self, source: str, target: str, session: Session) -> list[str]:
        """Re-key the source's documents to the target; returns what moved."""
        ...

    async def move_back(
        self, moved: list[str], source: str, target: str, session: Session
    ) -> None: ...


@dataclass
class KeyedDocuments:
    """Documents with a ``customer_id`` field (ledger, contracts, interactions, timeline)."""

    name: str
    collection: Collection

    async def move(self, source: str, target: str, session: Session) -> list[str]:
        cursor = self.collection.find({"customer_id": source}, {"_id": 1}, session=session)
        moved = [document["_id"] async for document in cursor]
        if moved:
            await self.collection.update_many(
                {"_id": {"$in": moved}}, {"$set": {"customer_id": target}}, session=session
            )
        return moved

    async def move_back(self, moved: list[str], source: str, target: str, session: Session) -> None:
        if moved:
            await self.collection.update_many(
                {"_id": {"$in": moved}, "customer_id": target},
                {"$set": {"customer_id": source}},
                session=session,
            )


@dataclass
class ConsentDocuments:
    """Consents live in one document per customer: histories join, the latest wins."""

    name: str
    collection: Collection

    async def move(self, source: str, target: str, session: Session) -> list[str]:
        theirs = await self.collection.find_one({"_id": source}, session=session)
        if theirs is None:
            return []
        ours = await self.collection.find_one({"_id": target}, session=session) or {"_id": target}
        moved = [entry["id"] for entry in theirs.get("history", [])]
        history = sorted(
            [*ours.get("history", []), *theirs.get("history", [])],
            key=lambda entry: entry["changed_at"],
        )
        await self.collection.replace_one(
            {"_id": target}, _with_history(target, history), upsert=True, session=session
        )
        await self.collection.delete_one({"_id": source}, session=session)
        # Keep the source's own document to give back on undo.
        await self.collection.database["merged_consents"].replace_one(
            {"_id": source}, {**theirs, "_id": source}, upsert=True, session=session
        )
        return moved

    async def move_back(self, moved: list[str], source: str, target: str, session: Session) -> None:
        if not moved:
            return
        ours = await self.collection.find_one({"_id": target}, session=session) or {}
        kept = [entry for entry in ours.get("history", []) if entry["id"] not in set(moved)]
        await self.collection.replace_one(
            {"_id": target}, _with_history(target, kept), upsert=True, session=session
        )
        saved = self.collection.database["merged_consents"]
        theirs = await saved.find_one({"_id": source}, session=session)
        if theirs is not None:
            await self.collection.replace_one({"_id": source}, theirs, upsert=True, session=session)
            await saved.delete_one({"_id": source}, session=session)


def _with_history(customer_id: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """A consents document whose current decisions are the latest of its history."""
    current: dict[str, dict[str, Any]] = {}
    for entry in history:  # oldest first: later decisions overwrite earlier ones
        current.setdefault(entry["channel"], {})[entry["purpose"]] = {
            "granted": entry["granted"],
            "source": entry.get("source"),
            "changed_at": entry["changed_at"],
        }
    return {"_id": customer_id, "current": current, "history": history}


@dataclass
class Merger:
    profiles: Profiles
    data: Sequence[CustomerData]
    ledger: LedgerStore
    contracts: ContractStore
    merges: Collection

    @classmethod
    def of(cls, profiles: Profiles, db: Database) -> Merger:
        return cls(
            profiles=profiles,
            data=[
                KeyedDocuments("ledger", db["ledger"]),
                KeyedDocuments("contracts", db["contracts"]),
                KeyedDocuments("interactions", db["interactions"]),
                KeyedDocuments("timeline", db["timeline"]),
                ConsentDocuments("consents", db["consents"]),
            ],
            ledger=LedgerStore(db),
            contracts=ContractStore(db),
            merges=db["merges"],
        )

    async def ensure_indexes(self) -> None:
        await self.merges.create_index("source_id")


class MergeResult(BaseModel):
    merge_id: str
    target: Customer
    source: Customer
    moved: dict[str, int]


async def merge(merger: Merger, target_id: str, source_id: str) -> MergeResult:
    if target_id == source_id:
        raise InvalidInput("a profile cannot be merged into itself")
    profiles = merger.profiles
    target = await get_customer(profiles, target_id)
    source = await get_customer(profiles, source_id)
    now = profiles.clock()
    merged_target, gains = fold_into(target, source, now)
    tombstone = source.model_copy(
        update={
            "status": CustomerStatus.MERGED,
            "merged_into": target.id,
            "updated_at": now,
            "version": source.version + 1,
        }
    )
    merge_id = f"mrg_{uuid.uuid4().hex}"
    moved: dict[str, list[str]] = {}

    async def work(session: Session) -> None:
        # The source lets go of its e-mails and phones before the target claims them.
        if not await profiles.store.replace(source, tombstone, session):
            raise Conflict(f"customer {source.id} changed meanwhile; try again")
        if not await profiles.store.replace(target, merged_target, session):
            raise Conflict(f"customer {target.id} changed meanwhile; try again")
        for data in merger.data:
            moved[data.name] = await data.move(source.id, target.id, session)
        await merger.ledger.recompute(target.id, session)
        await merger.ledger.recompute(source.id, session)
        await merger.merges.insert_one(
            {
                "_id": merge_id,
                "source_id": source.id,
                "target_id": target.id,
                "source_before": source.model_dump(mode="json"),
                "gains": gains.model_dump(mode="json"),
                "moved": moved,
                "merged_at": now,
                "undone_at": None,
            },
            session=session,
        )
        merged = new_event(
            CustomerMerged(customer_id=target.id, source_customer_id=source.id, merged_at=now),
            source=SOURCE,
        )
        changed = ["merged", *changed_fields(target, merged_target)]
        await profiles.outbox.add(
            session, [merged, await _updated(merger, merged_target, changed, session)]
        )
        await _note(profiles, session, merged.id, target.id, now,
                    f"profile {source.id} merged into this one")  # fmt: skip

    await profiles.commit(work)
    return MergeResult(
        merge_id=merge_id,
        target=merged_target,
        source=tombstone,
        moved={name: len(ids) for name, ids in moved.items()},
    )


async def undo_merge(merger: Merger, merge_id: str) -> tuple[Customer, Customer]:
    """Give the source back its profile and data; returns (source, target)."""
    profiles = merger.profiles
    record = await merger.merges.find_one({"_id": merge_id})
    if record is None:
        raise NotFound(f"no merge {merge_id}")
    if record["undone_at"] is not None:
        raise Conflict(f"merge {merge_id} was already undone")
    tombstone = await profiles.store.get(record["source_id"])
    target = await get_customer(profiles, record["target_id"])
    if tombstone is None or tombstone.status is not CustomerStatus.MERGED:
        raise Conflict(f"customer {record['source_id']} is no longer a merged profile")
    now = profiles.clock()
    before = Customer.model_validate(record["source_before"])
    restored = before.model_copy(update={"updated_at": now, "version": tombstone.version + 1})
    slimmed = take_back(target, Gains.model_validate(record["gains"]), now)

    async def work(session: Session) -> None:
        if not await profiles.store.replace(target, slimmed, session):
            raise Conflict(f"customer {target.id} changed meanwhile; try again")
        if not await profiles.store.replace(tombstone, restored, session):
            raise Conflict(f"customer {tombstone.id} changed meanwhile; try again")
        for data in merger.data:
            await data.move_back(
                record["moved"].get(data.name, []), restored.id, target.id, session
            )
        await merger.ledger.recompute(target.id, session)
        await merger.ledger.recompute(restored.id, session)
        await merger.merges.update_one(
            {"_id": merge_id}, {"$set": {"undone_at": now}}, session=session
        )
        undone = new_event(
            CustomerMerged(
                customer_id=target.id,
                source_customer_id=restored.id,
                merged_at=record["merged_at"],
                undone=True,
            ),
            source=SOURCE,
        )
        changed = ["unmerged", *changed_fields(target, slimmed)]
        events: list[Event[Any]] = [
            undone,
            await _updated(merger, slimmed, changed, session),
            await _updated(merger, restored, ["unmerged"], session),
        ]
        await profiles.outbox.add(session, events)
        for customer_id, text in (
            (target.id, f"merge of profile {restored.id} undone"),
            (restored.id, f"restored from merge into {target.id}"),
        ):
            await _note(profiles, session, f"{undone.id}:{customer_id}", customer_id, now, text)

    await profiles.commit(work)
    return restored, slimmed


async def _updated(
    merger: Merger, customer: Customer, changed: list[str], session: Session
) -> Event[CustomerUpdated]:
    """A full snapshot, contracts included, since a merge moves them too."""
    contracts = await merger.contracts.of_customer(customer.id, session)
    payload = CustomerUpdated.model_validate(
        {
            **snapshot(customer),
            "changed_fields": changed,
            "contracts": [contract.summary().model_dump(mode="json") for contract in contracts],
        }
    )
    return new_event(payload, source=SOURCE)


async def _note(
    profiles: Profiles, session: Session, entry_id: str, customer_id: str, at: datetime, text: str
) -> None:
    await profiles.timeline.append(
        session,
        entry_id=entry_id,
        customer_id=customer_id,
        kind=EntryKind.MERGE,
        occurred_at=at,
        summary=text,
    )
