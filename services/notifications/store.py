"""MongoDB adapters of the notifications service: the delivery ledger, preferences and
rule overrides.

The ledger holds one document per (source event id, rule, channel[, webhook
subscription]); its ``_id`` is derived from that key, so a second decision about the same
message finds the first instead of adding a delivery. Every change to a delivery is
guarded by its ``version``, so two dispatchers never both claim or finish it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from services.notifications.domain import Channel, Purpose
from services.notifications.respect import Preferences, QuietHours
from services.notifications.rules import Audience
from shared.mongo import Database, Session

_LEDGER_NAMESPACE = uuid.UUID("6a1f6f0e-2b7c-4c55-9b3a-6e6f74696679")
ERASED = "[erased]"
WAITING_FOR_CUSTOMER = "customer not known yet"


ERASED_FAILURE = "delivery failed (the details were erased with the customer)"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


def delivery_id(
    source_event_id: str, rule: str, channel: Channel, subscription_id: str | None = None
) -> str:
    """The ledger key as an id: the same message always gets the same id."""
    key = "|".join((source_event_id, rule, channel.value, subscription_id or ""))
    return str(uuid.uuid5(_LEDGER_NAMESPACE, key))


class Delivery(BaseModel):
    """One message on one channel, from decision to outcome."""

    model_config = ConfigDict(extra="ignore")

    id: str
    source_event_id: str
    source_event_type: str
    rule: str
    channel: Channel
    subscription_id: str | None = None
    customer_id: str
    purpose: Purpose
    audience: Audience
    status: DeliveryStatus
    address: str | None = Field(default=None, description="null until resolved, or erased")
    locale: str | None = None
    context: dict[str, Any] = Field(default_factory=dict, exclude=True)
    due_at: datetime = Field(description="when the next attempt may be made")
    deferred_because: str | None = None
    attempts: int = 0
    last_error: str | None = None
    reason: str | None = Field(default=None, description="why it was suppressed or failed")
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    claimed_until: datetime | None = Field(default=None, exclude=True)
    claim: str | None = Field(default=None, exclude=True)
    version: int = Field(default=1, exclude=True)


def _document(delivery: Delivery) -> dict[str, Any]:
    document = delivery.model_dump(mode="python", exclude={"id"})
    document.update(
        context=delivery.context,
        claimed_until=delivery.claimed_until,
        claim=delivery.claim,
        version=delivery.version,
    )
    document["_id"] = delivery.id
    return document


def _delivery(document: Mapping[str, Any]) -> Delivery:
    return Delivery.model_validate({**document, "id": document["_id"]})


class Ledger:
    def __init__(self, db: Database) -> None:
        self.deliveries = db["deliveries"]

    async def ensure_indexes(self) -> None:
        await self.deliveries.create_index(
            [("source_event_id", ASCENDING), ("rule", ASCENDING), ("channel", ASCENDING),
             ("subscription_id", ASCENDING)],
            unique=True,
            name="ledger_key",
        )  # fmt: skip
        await self.deliveries.create_index([("status", ASCENDING), ("due_at", ASCENDING)])
        await self.deliveries.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.deliveries.create_index([("customer_id", ASCENDING), ("created_at", DESCENDING)])

    async def record(self, session: Session, delivery: Delivery) -> bool:
        """Store the delivery unless its key is in the ledger already; True when new."""
        result = await self.deliveries.update_one(
            {"_id": delivery.id},
            {"$setOnInsert": _document(delivery)},
            upsert=True,
            session=session,
        )
        return result.upserted_id is not None

    async def get(self, delivery_id: str, session: Session | None = None) -> Delivery | None:
        document = await self.deliveries.find_one({"_id": delivery_id}, session=session)
        return None if document is None else _delivery(document)

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        cursor = (
            self.deliveries.find(
                {
                    "status": DeliveryStatus.PENDING.value,
                    "due_at": {"$lte": now},
                    "$or": [{"claimed_until": None}, {"claimed_until": {"$lte": now}}],
                }
            )
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [_delivery(document) async for document in cursor]

    async def claim(
        self, delivery: Delivery, claim: str, until: datetime, now: datetime
    ) -> Delivery | None:
        """Reserve a due delivery for one sender; None when another got it first."""
        document = await self.deliveries.find_one_and_update(
            {
                "_id": delivery.id,
                "version": delivery.version,
                "status": DeliveryStatus.PENDING.value,
            },
            {"$set": {"claim": claim, "claimed_until": until, "updated_at": now},
             "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )  # fmt: skip
        return None if document is None else _delivery(document)

    async def finish(
        self,
        session: Session | None,
        delivery: Delivery,
        changes: Mapping[str, Any],
    ) -> bool:
        """Apply ``changes`` if the delivery is still as claimed; releases the claim."""
        result = await self.deliveries.update_one(
            {"_id": delivery.id, "version": delivery.version},
            {"$set": {**changes, "claim": None, "claimed_until": None}, "$inc": {"version": 1}},
            session=session,
        )
        return result.matched_count == 1

    async def redrive(self, delivery: Delivery, now: datetime) -> bool:
        result = await self.deliveries.update_one(
            {"_id": delivery.id, "version": delivery.version,
             "status": DeliveryStatus.FAILED.value},
            {"$set": {"status": DeliveryStatus.PENDING.value, "due_at": now, "attempts": 0,
                      "reason": None, "failed_at": None, "updated_at": now, "claim": None,
                      "claimed_until": None},
             "$inc": {"version": 1}},
        )  # fmt: skip
        return result.matched_count == 1

    async def page(
        self, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int
    ) -> list[Delivery]:
        query = filters
        if after is not None:
            moment, last_id = after
            keyset = {
                "$or": [
                    {"created_at": {"$lt": moment}},
                    {"created_at": moment, "_id": {"$lt": last_id}},
                ]
            }
            query = {"$and": [filters, keyset]} if filters else keyset
        cursor = (
            self.deliveries.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [_delivery(document) async for document in cursor]

    async def marketing_messages_between(
        self,
        session: Session,
        customer_id: str,
        start: datetime,
        end: datetime,
        excluding: tuple[str, str] | None = None,
    ) -> int:
        """Marketing messages planned or sent for the customer in [start, end): one per
        (source event, rule), however many channels it went on."""
        cursor = self.deliveries.find(
            {
                "customer_id": customer_id,
                "purpose": Purpose.MARKETING.value,
                "status": {"$in": [DeliveryStatus.PENDING.value, DeliveryStatus.SENT.value]},
                "due_at": {"$gte": start, "$lt": end},
            },
            {"source_event_id": 1, "rule": 1},
            session=session,
        )
        messages = {(d["source_event_id"], d["rule"]) async for d in cursor}
        if excluding is not None:
            messages.discard(excluding)
        return len(messages)

    async def release_waiting(self, session: Session, customer_id: str, now: datetime) -> None:
        """The customer is known now: what waited for them goes at once."""
        await self.deliveries.update_many(
            {"customer_id": customer_id, "status": DeliveryStatus.PENDING.value,
             "last_error": WAITING_FOR_CUSTOMER, "due_at": {"$gt": now}},
            {"$set": {"due_at": now, "updated_at": now}, "$inc": {"version": 1}},
            session=session,
        )  # fmt: skip

    async def cancel_pending(
        self, session: Session, customer_id: str, reason: str, now: datetime
    ) -> int:
        result = await self.deliveries.update_many(
            {"customer_id": customer_id, "status": DeliveryStatus.PENDING.value},
            {"$set": {"status": DeliveryStatus.CANCELLED.value, "reason": reason,
                      "updated_at": now}, "$inc": {"version": 1}},
            session=session,
        )  # fmt: skip
        return result.modified_count

    async def anonymise(self, session: Session, customer_id: str, now: datetime) -> int:
        """Erasure: keep that something was sent, when and why; no address, no content."""
        result = await self.deliveries.update_many(
            {"customer_id": customer_id, "audience": Audience.CUSTOMER.value},
            {"$set": {"address": None, "context": {}, "last_error": None, "updated_at": now,
                      "erased": True}, "$inc": {"version": 1}},
            session=session,
        )  # fmt: skip
        # A failure's reason may quote the address ("550 <ana@example.com> unknown").
        await self.deliveries.update_many(
            {"customer_id": customer_id, "status": DeliveryStatus.FAILED.value},
            {"$set": {"reason": ERASED_FAILURE}},
            session=session,
        )
        # Internal messages about the customer keep the staff address, not the content.
        await self.deliveries.update_many(
            {"customer_id": customer_id, "audience": Audience.STAFF.value},
            {"$set": {"context": {}, "updated_at": now, "erased": True}, "$inc": {"version": 1}},
            session=session,
        )
        return result.modified_count

    async def move_pending(
        self, session: Session, source_id: str, target_id: str, *, undo: bool
    ) -> None:
        """Deliveries not sent yet follow a merge (and go back when it is undone)."""
        if undo:
            await self.deliveries.update_many(
                {"customer_id": target_id, "moved_from": source_id,
                 "status": DeliveryStatus.PENDING.value},
                {"$set": {"customer_id": source_id, "moved_from": None, "address": None},
                 "$inc": {"version": 1}},
                session=session,
            )  # fmt: skip
            return
        await self.deliveries.update_many(
            {"customer_id": source_id, "status": DeliveryStatus.PENDING.value},
            {"$set": {"customer_id": target_id, "moved_from": source_id, "address": None},
             "$inc": {"version": 1}},
            session=session,
        )  # fmt: skip


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["21:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel
    purpose: Purpose


class CustomerPreferences(BaseModel):
    """What a customer chose: opt-outs per channel x purpose and their quiet hours
    (null: the service's default; ``quiet_hours_off``: none at all)."""

    model_config = ConfigDict(extra="forbid")

    opt_outs: list[OptOut] = Field(default_factory=list, max_length=8)
    quiet_hours: QuietHoursBody | None = None
    quiet_hours_off: bool = False

    def to_domain(self) -> Preferences:
        hours = self.quiet_hours
        return Preferences(
            opt_outs=frozenset((o.channel, o.purpose) for o in self.opt_outs),
            quiet_hours=QuietHours.parse(hours.start, hours.end) if hours else None,
            quiet_hours_off=self.quiet_hours_off,
        )


class PreferenceStore:
    def __init__(self, db: Database) -> None:
        self.preferences = db["preferences"]

    async def get(self, customer_id: str, session: Session | None = None) -> CustomerPreferences:
        return _preferences(await self.preferences.find_one({"_id": customer_id}, session=session))

    async def combined(
        self, customer_ids: Sequence[str], session: Session | None = None
    ) -> CustomerPreferences:
        """What a customer merged from several profiles chose: every opt-out any of them
        made; the quiet hours of the first (the survivor) that set its own. Profiles the
        survivor's own choice was made over (see ``put``) no longer count: that choice
        replaced theirs."""
        if not customer_ids:
            return CustomerPreferences()
        survivor, *others = customer_ids
        document = await self.preferences.find_one({"_id": survivor}, session=session)
        covered = set(document.get("covers", [])) if document else set()
        found = [_preferences(document)]
        for customer_id in others:
            if customer_id not in covered:
                found.append(await self.get(customer_id, session))
        if len(found) == 1:
            return found[0]
        own = next((p for p in found if p.quiet_hours or p.quiet_hours_off), found[0])
        return CustomerPreferences(
            opt_outs=list(dict.fromkeys(o for p in found for o in p.opt_outs)),
            quiet_hours=own.quiet_hours,
            quiet_hours_off=own.quiet_hours_off,
        )

    async def put(
        self,
        customer_id: str,
        preferences: CustomerPreferences,
        now: datetime,
        covers: Sequence[str] = (),
    ) -> CustomerPreferences:
        """Replace the customer's choice. ``covers``: the profiles merged into this one
        when the choice was made; their own choices stop counting for this customer (and
        count again for themselves if the merge is undone)."""
        await self.preferences.replace_one(
            {"_id": customer_id},
            {
                "_id": customer_id,
                **preferences.model_dump(mode="json"),
                "covers": list(covers),
                "updated_at": now,
            },
            upsert=True,
        )
        return preferences

    async def forget(self, session: Session, customer_id: str) -> None:
        await self.preferences.delete_one({"_id": customer_id}, session=session)


def _preferences(document: Mapping[str, Any] | None) -> CustomerPreferences:
    if document is None:
        return CustomerPreferences()
    return CustomerPreferences.model_validate(
        {k: v for k, v in document.items() if k in CustomerPreferences.model_fields}
    )


class RuleStore:
    """Overrides of the rules' defaults made through the API."""

    def __init__(self, db: Database) -> None:
        self.rules = db["rules"]

    async def overrides(self, session: Session | None = None) -> dict[str, dict[str, Any]]:
        cursor = self.rules.find({}, session=session)
        return {
            document["_id"]: {k: v for k, v in document.items() if k != "_id"}
            async for document in cursor
        }

    async def put(self, name: str, override: Mapping[str, Any]) -> None:
        await self.rules.update_one({"_id": name}, {"$set": dict(override)}, upsert=True)


def status_filter(
    statuses: Sequence[DeliveryStatus], customer_ids: Sequence[str], rule: str | None
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if statuses:
        filters["status"] = {"$in": [status.value for status in statuses]}
    if customer_ids:
        filters["customer_id"] = {"$in": list(customer_ids)}
    if rule:
        filters["rule"] = rule
    return filters
