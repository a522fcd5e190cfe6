"""MongoDB adapter of schedules: birthdays, renewal reminders and daily complaint status
reports, persisted.

A schedule is a document with the next time it is due (UTC) and the occurrence it last
fired. The scheduler fires a due schedule and moves it on in *one* transaction that also
records the deliveries, guarded by the schedule's version: when two schedulers (or a
restarted one) reach the same schedule, one commits and the other's transaction is
aborted; and the deliveries' ledger key includes the occurrence, so even a repeat could
not send twice. Schedules follow the profile: a new birthday or renewal date moves them,
a cancelled contract, a closed complaint or an erased customer cancels them.

When a schedule is due is worked out in ``scheduling_domain.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from services.notifications.documents import Write, update_many, update_one
from services.notifications.scheduling_domain import (
    Schedule,
    ScheduleStatus,
    StaleSchedule,
    daily_id,
)
from shared.mongo import Database, Session


def schedule_from(document: Mapping[str, Any]) -> Schedule:
    return Schedule(
        id=document["_id"],
        rule=document["rule"],
        customer_id=document["customer_id"],
        due_at=document["due_at"],
        occurrence=document["occurrence"],
        status=ScheduleStatus(document["status"]),
        params=document.get("params") or {},
        fired=document.get("fired"),
        version=int(document.get("version") or 1),
    )


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self.schedules = db["schedules"]

    async def ensure_indexes(self) -> None:
        await self.schedules.create_index([("status", ASCENDING), ("due_at", ASCENDING)])
        await self.schedules.create_index([("customer_id", ASCENDING), ("rule", ASCENDING)])
        await self.schedules.create_index([("params.complaint_id", ASCENDING)])

    async def get(self, schedule_id: str, session: Session | None = None) -> Schedule | None:
        document = await self.schedules.find_one({"_id": schedule_id}, session=session)
        return None if document is None else schedule_from(document)

    async def of_customer(
        self, customer_id: str, session: Session | None = None, rule: str | None = None
    ) -> list[Schedule]:
        query: dict[str, Any] = {"customer_id": customer_id}
        if rule:
            query["rule"] = rule
        cursor = self.schedules.find(query, session=session).sort("_id", ASCENDING)
        return [schedule_from(document) async for document in cursor]

    async def due(self, now: datetime, limit: int = 200) -> list[Schedule]:
        cursor = (
            self.schedules.find({"status": ScheduleStatus.ACTIVE.value, "due_at": {"$lte": now}})
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [schedule_from(document) async for document in cursor]

    async def advance(
        self,
        session: Session,
        schedule: Schedule,
        *,
        fired: str,
        next_due: datetime | None,
        next_occurrence: str | None,
        now: datetime,
    ) -> None:
        """Record that ``schedule`` fired ``fired``, if nobody else did meanwhile."""
        changes: dict[str, Any] = {"fired": fired, "last_fired_at": now, "updated_at": now}
        if next_due is None:
            changes["status"] = ScheduleStatus.DONE.value
        else:
            changes.update(due_at=next_due, occurrence=next_occurrence)
        result = await self.schedules.update_one(
            {"_id": schedule.id, "version": schedule.version,
             "status": ScheduleStatus.ACTIVE.value},
            {"$set": changes, "$inc": {"version": 1}},
            session=session,
        )  # fmt: skip
        if result.matched_count != 1:
            raise StaleSchedule(schedule.id)


# -- what the events change (applied in a batch: see ``batch.py``) -------------------------


def put_write(
    schedule_id: str,
    *,
    rule: str,
    customer_id: str,
    due_at: datetime,
    occurrence: str,
    params: Mapping[str, Any],
    now: datetime,
) -> Write:
    """Create or move a schedule (what it last fired is kept, so nothing repeats)."""
    return update_one(
        schedule_id,
        {
            "$set": {
                "rule": rule,
                "customer_id": customer_id,
                "due_at": due_at,
                "occurrence": occurrence,
                "status": ScheduleStatus.ACTIVE.value,
                "params": dict(params),
                "updated_at": now,
            },
            "$inc": {"version": 1},
            "$setOnInsert": {"fired": None, "created_at": now},
        },
        upsert=True,
    )


def cancel_write(query: Mapping[str, Any], reason: str, now: datetime) -> Write:
    return update_many(
        {**query, "status": ScheduleStatus.ACTIVE.value},
        {"$set": {"status": ScheduleStatus.CANCELLED.value, "cancelled_because": reason,
                  "updated_at": now}, "$inc": {"version": 1}},
    )  # fmt: skip


def reactivate_write(query: Mapping[str, Any], reason: str, now: datetime) -> Write:
    return update_many(
        {**query, "status": ScheduleStatus.CANCELLED.value, "cancelled_because": reason},
        {"$set": {"status": ScheduleStatus.ACTIVE.value, "cancelled_because": None,
                  "updated_at": now}, "$inc": {"version": 1}},
    )  # fmt: skip


def move_write(query: Mapping[str, Any], customer_id: str, moved_from: str | None) -> Write:
    return update_many(
        query,
        {"$set": {"customer_id": customer_id, "moved_from": moved_from}, "$inc": {"version": 1}},
    )


def forget_write(customer_id: str, now: datetime) -> Write:
    """Erasure: schedules are cancelled and keep no birthday or contract."""
    return update_many(
        {"customer_id": customer_id},
        {"$set": {"status": ScheduleStatus.CANCELLED.value, "cancelled_because": "erased",
                  "params": {}, "updated_at": now}, "$inc": {"version": 1}},
    )  # fmt: skip


def remember_status(complaint_id: str, status: str, public_comment: str | None) -> Write:
    """What a complaint's daily report says of it: its status, its last public comment."""
    remembered = {"params.complaint.status": status}
    if public_comment:
        remembered["params.complaint.last_public_comment"] = public_comment
    return update_one(daily_id(complaint_id), {"$set": remembered})


def remember_comment(complaint_id: str, public_comment: str) -> Write:
    """A public reply without a status change: the daily report quotes it as the last."""
    return update_one(
        daily_id(complaint_id), {"$set": {"params.complaint.last_public_comment": public_comment}}
    )
