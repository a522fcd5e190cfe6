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

from services.profiles.contracts_store import ContractStore
from services.profiles.domain import Customer, CustomerStatus, changed_fields
from services.profiles.handlers import SOURCE, Profiles, get_customer, snapshot
from services.profiles.ledger_store import LedgerStore
from services.profiles.merging_domain import Gains, MergeResult, fold_into, take_back
from services.profiles.merging_store import ConsentDocuments, KeyedDocuments, MergeRecords
from services.profiles.timeline_domain import EntryKind
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import Event, new_event
from shared.events.customers import CustomerMerged, CustomerUpdated
from shared.mongo import Database, Session


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
class Merger:
    profiles: Profiles
    data: Sequence[CustomerData]
    ledger: LedgerStore
    contracts: ContractStore
    merges: MergeRecords

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
            merges=MergeRecords(db),
        )

    async def ensure_indexes(self) -> None:
        await self.merges.ensure_indexes()


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
        await merger.merges.add(
            session, merge_id=merge_id, source=source, target=target, gains=gains,
            moved=moved, merged_at=now,
        )  # fmt: skip
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
    record = await merger.merges.get(merge_id)
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
        await merger.merges.mark_undone(merge_id, now, session)
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
