"""MongoDB adapter of the complaints service (pymongo's AsyncMongoClient).

``complaints`` holds one document per complaint with its clocks, conversation, history,
resolutions and feedback; ``version`` guards every replacement, so two writers never both
win (a lost race is retried by the use case). ``sla_calendars`` and ``sla_policies`` hold
the SLA configuration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.complaints.calendar import BusinessCalendar
from services.complaints.domain.model import ACTIVE, Complaint
from services.complaints.domain.query import ComplaintQuery, SlaFilter
from services.complaints.domain.sla import SlaPolicy
from shared.events.complaints import SlaClock
from shared.identity import End, Link, follow, link_of
from shared.mongo import Database, Session

# Lists leave out what only a single complaint's page shows.
SUMMARY_PROJECTION = {"comments": 0, "history": 0}


class ComplaintStore:
    def __init__(self, db: Database) -> None:
        self.complaints = db["complaints"]

    async def ensure_indexes(self) -> None:
        await self.complaints.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.complaints.create_index([("customer_id", ASCENDING), ("created_at", DESCENDING)])
        await self.complaints.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
        await self.complaints.create_index("calendar")
        for clock in SlaClock:
            await self.complaints.create_index(f"clocks.{clock.value}.due_at")
            await self.complaints.create_index(f"clocks.{clock.value}.warn_at")

    async def get(self, complaint_id: str, session: Session | None = None) -> Complaint | None:
        document = await self.complaints.find_one({"_id": complaint_id}, session=session)
        return None if document is None else _complaint(document)

    async def insert(self, complaint: Complaint, session: Session) -> None:
        await self.complaints.insert_one(_document(complaint), session=session)

    async def replace(self, before: Complaint, after: Complaint, session: Session) -> bool:
        """Store ``after`` if the stored version is still ``before``'s; False otherwise."""
        stored = after.model_copy(update={"version": before.version + 1})
        result = await self.complaints.replace_one(
            {"_id": before.id, "version": before.version}, _document(stored), session=session
        )
        return result.matched_count == 1

    async def search(
        self,
        query: ComplaintQuery,
        now: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Complaint]:
        """Newest first, keyset-paginated on (created_at, _id): pages never shift."""
        clauses = _criteria(query, now)
        if after is not None:
            moment, complaint_id = after
            clauses.append(
                {
                    "$or": [
                        {"created_at": {"$lt": moment}},
                        {"created_at": moment, "_id": {"$lt": complaint_id}},
                    ]
                }
            )
        filters = {"$and": clauses} if clauses else {}
        cursor = (
            self.complaints.find(filters, SUMMARY_PROJECTION)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [_complaint(document) async for document in cursor]

    async def due_for_alerts(self, now: datetime, reopen_before: datetime) -> list[str]:
        """Complaints with a warning or breach due and not yet announced, or resolved
        longer ago than the reopen window."""
        alternatives: list[dict[str, Any]] = [
            {"status": "resolved", "resolved_at": {"$lte": reopen_before}}
        ]
        for clock in SlaClock:
            prefix = f"clocks.{clock.value}"
            running = {f"{prefix}.running": True, f"{prefix}.stopped_at": None}
            alternatives.append(
                {**running, f"{prefix}.warn_at": {"$lte": now}, f"{prefix}.warned_at": None}
            )
            alternatives.append(
                {**running, f"{prefix}.due_at": {"$lte": now}, f"{prefix}.breached_at": None}
            )
        cursor = self.complaints.find({"$or": alternatives}, {"_id": 1})
        return [document["_id"] async for document in cursor]

    async def ids_on_calendar(self, calendar: str) -> list[str]:
        cursor = self.complaints.find(
            {"calendar": calendar, "status": {"$in": sorted(ACTIVE)}}, {"_id": 1}
        )
        return [document["_id"] async for document in cursor]

    async def ids_of_customer(self, customer_id: str, session: Session) -> list[str]:
        cursor = self.complaints.find({"customer_id": customer_id}, {"_id": 1}, session=session)
        return [document["_id"] async for document in cursor]

    async def move_customer(
        self, source_id: str, target_id: str, session: Session, *, undo: bool
    ) -> int:
        """Complaints follow a merge to the survivor; an undone merge takes back exactly
        those that moved."""
        if undo:
            result = await self.complaints.update_many(
                {"customer_id": target_id, "moved_from": source_id},
                {"$set": {"customer_id": source_id, "moved_from": None}, "$inc": {"version": 1}},
                session=session,
            )
        else:
            result = await self.complaints.update_many(
                {"customer_id": source_id},
                {
                    "$set": {"customer_id": target_id, "moved_from": source_id},
                    "$inc": {"version": 1},
                },
                session=session,
            )
        return result.modified_count


class CustomerDirectory:
    """What the complaints service heard of customers from profiles' events: who was
    merged into whom, and who was erased (no new complaint may name them)."""

    def __init__(self, db: Database) -> None:
        self.entries = db["customer_directory"]

    async def record_merge(
        self, session: Session, source_id: str, target_id: str, *, undone: bool
    ) -> None:
        """New complaints naming the source go to the survivor, until the merge is undone."""
        if undone:
            await self.entries.delete_one(
                {"_id": source_id, "merged_into": target_id}, session=session
            )
        else:
            await self.entries.update_one(
                {"_id": source_id}, {"$set": {"merged_into": target_id}}, upsert=True,
                session=session,
            )  # fmt: skip

    async def mark_erased(self, session: Session, customer_id: str, erased_at: datetime) -> None:
        await self.entries.update_one(
            {"_id": customer_id}, {"$set": {"erased_at": erased_at}}, upsert=True, session=session
        )

    async def current_id(self, customer_id: str) -> tuple[str, bool]:
        """The id complaints of ``customer_id`` are filed under, and whether it was erased."""

        async def link(key: str) -> Link | None:
            return link_of(await self.entries.find_one({"_id": key}), erased="erased_at")

        reached = await follow(customer_id, link)
        return reached.customer_id, reached.end is End.ERASED


class SlaConfigStore:
    def __init__(self, db: Database) -> None:
        self.calendars = db["sla_calendars"]
        self.policies = db["sla_policies"]

    async def all_calendars(self, session: Session | None = None) -> dict[str, BusinessCalendar]:
        cursor = self.calendars.find({}, session=session)
        return {
            document["_id"]: BusinessCalendar.model_validate(
                {k: v for k, v in document.items() if k != "_id"}
            )
            async for document in cursor
        }

    async def put_calendar(self, name: str, calendar: BusinessCalendar) -> None:
        await self.calendars.replace_one(
            {"_id": name}, {"_id": name, **calendar.model_dump(mode="json")}, upsert=True
        )

    async def all_policies(self, session: Session | None = None) -> list[SlaPolicy]:
        cursor = self.policies.find({}, session=session)
        return [
            SlaPolicy.model_validate({k: v for k, v in document.items() if k != "_id"})
            async for document in cursor
        ]

    async def put_policy(self, policy: SlaPolicy) -> None:
        key = f"{policy.priority.value}:{policy.category or '*'}"
        await self.policies.replace_one(
            {"_id": key}, {"_id": key, **policy.model_dump(mode="json")}, upsert=True
        )


def _criteria(query: ComplaintQuery, now: datetime) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = []
    for field, value in (
        ("status", query.status),
        ("priority", query.priority),
        ("category", query.category),
        ("customer_id", query.customer_id),
    ):
        if value:
            clauses.append({field: str(value)})
    if query.assignee:
        clauses.append(
            {"$or": [{"assigned_agent": query.assignee}, {"assigned_team": query.assignee}]}
        )
    if query.sla is SlaFilter.BREACHED:
        clauses.append(
            {"$or": [{f"clocks.{c.value}.breached_at": {"$ne": None}} for c in SlaClock]}
        )
    elif query.sla is SlaFilter.AT_RISK:
        clauses.append(
            {
                "status": {"$in": sorted(ACTIVE)},
                "$or": [
                    {
                        f"clocks.{c.value}.running": True,
                        f"clocks.{c.value}.stopped_at": None,
                        f"clocks.{c.value}.warn_at": {"$lte": now},
                        f"clocks.{c.value}.breached_at": None,
                    }
                    for c in SlaClock
                ],
            }
        )
    if query.created_after:
        clauses.append({"created_at": {"$gte": query.created_after}})
    if query.created_before:
        clauses.append({"created_at": {"$lt": query.created_before}})
    return clauses


def _document(complaint: Complaint) -> dict[str, Any]:
    document = complaint.model_dump(mode="python", exclude={"id"})
    document["_id"] = complaint.id
    return document


def _complaint(document: dict[str, Any]) -> Complaint:
    return Complaint.model_validate({**document, "id": document["_id"]})
