"""MongoDB adapters of the notifications service: the delivery ledger, preferences and
rule overrides.

The ledger holds one document per (message key, rule, channel[, webhook subscription]);
its ``_id`` is derived from that key, so a second decision about the same message finds
the first instead of adding a delivery. The message key is the business object the
message is about where there is one (``purchase:<purchase_id>``, ``return:<return_id>``,
``complaint-reply:<comment_id>``: kept as the delivery's ``subject``), else the source
event id: a till that sends the same purchase again under a new event id is thanked once.
A dispatcher claims due deliveries in a transaction (two never both hold one) and records
an outcome only under its own claim; every change increments the delivery's ``version``
(a redrive is guarded by it). The event path's changes to the ledger are described here
as writes a batch applies (``documents.Write``), in memory and at commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, UpdateOne

from services.notifications.documents import Write, update_many
from services.notifications.domain import Channel, Purpose
from services.notifications.policy import Preferences, QuietHours
from services.notifications.rules import Audience
from shared.mongo import Database, Session, find_in, update_in

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
    message_key: str, rule: str, channel: Channel, subscription_id: str | None = None
) -> str:
    """The ledger key as an id: the same message always gets the same id. ``message_key``
    is the delivery's ``subject`` (the business object) when it has one, else the source
    event id."""
    key = "|".join((message_key, rule, channel.value, subscription_id or ""))
    return str(uuid.uuid5(_LEDGER_NAMESPACE, key))


class Delivery(BaseModel):
    """One message on one channel, from decision to outcome."""

    model_config = ConfigDict(extra="ignore")

    id: str
    source_event_id: str
    source_event_type: str
    # The business object the message is about (``purchase:<id>``, ...), when there is one:
    # the ledger key, so two events about it give one message.
    subject: str | None = Field(default=None, exclude=True)
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
    # A webhook's body: the triggering CloudEvent in structured JSON, kept as it will be
    # sent (the same bytes on every attempt); None for a schedule's message and once erased.
    cloudevent: str | None = Field(default=None, exclude=True)
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


def delivery_document(delivery: Delivery) -> dict[str, Any]:
    document = delivery.model_dump(mode="python", exclude={"id"})
    document.update(
        subject=delivery.subject,
        context=delivery.context,
        cloudevent=delivery.cloudevent,
        claimed_until=delivery.claimed_until,
        claim=delivery.claim,
        version=delivery.version,
    )
    document["_id"] = delivery.id
    return document


def delivery_from(document: Mapping[str, Any]) -> Delivery:
    return Delivery.model_validate({**document, "id": document["_id"]})


class DeliveryLedger:
    def __init__(self, db: Database) -> None:
        self.deliveries = db["deliveries"]

    async def ensure_indexes(self) -> None:
        await self.deliveries.create_index(
            [("source_event_id", ASCENDING), ("rule", ASCENDING), ("channel", ASCENDING),
             ("subscription_id", ASCENDING)],
            unique=True,
            name="ledger_key",
        )  # fmt: skip
        await self.deliveries.create_index([("subject", ASCENDING)], name="subject")
        await self.deliveries.create_index([("status", ASCENDING), ("due_at", ASCENDING)])
        await self.deliveries.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.deliveries.create_index([("customer_id", ASCENDING), ("created_at", DESCENDING)])

    async def get(self, delivery_id: str, session: Session | None = None) -> Delivery | None:
        document = await self.deliveries.find_one({"_id": delivery_id}, session=session)
        return None if document is None else delivery_from(document)

    async def claim_due(
        self, now: datetime, limit: int, claim: str, until: datetime
    ) -> list[Delivery]:
        """Reserve up to ``limit`` due deliveries (oldest first) for one sender until
        ``until``, in one transaction: one query finds them, one update claims them (two
        senders claiming at once conflict, and the one that retries finds what is left).
        A claimed delivery is due again at ``until``: if its sender dies, the claim
        expires and another takes it over; its outcome sets when it is due next.
        ``claim`` must be new for every call: outcomes are recorded against it."""

        async def work(session: Session) -> list[dict[str, Any]]:
            cursor = (
                self.deliveries.find(claimable(now), session=session)
                .sort("due_at", ASCENDING)
                .limit(limit)
            )
            # (a claim older than ``due_at`` doing its work is kept to its term)
            found = [d async for d in cursor if not _held(d, now)]
            if found:
                await self.deliveries.update_many(
                    {"_id": {"$in": [document["_id"] for document in found]}},
                    {"$set": {"claim": claim, "claimed_until": until, "due_at": until,
                              "updated_at": now}, "$inc": {"version": 1}},
                    session=session,
                )  # fmt: skip
            return found

        async with self.deliveries.database.client.start_session() as session:
            found = await session.with_transaction(work)
        for document in found:
            document.update(
                claim=claim, claimed_until=until, due_at=until, updated_at=now,
                version=int(document.get("version") or 1) + 1,
            )  # fmt: skip
        return [delivery_from(document) for document in found]

    async def claimed(self, delivery_ids: Sequence[str], claim: str) -> list[Delivery]:
        """These deliveries as stored, those still pending under ``claim``."""
        found = await find_in(
            self.deliveries, "_id", delivery_ids,
            {"claim": claim, "status": DeliveryStatus.PENDING.value},
        )  # fmt: skip
        return [delivery_from(document) for document in found]

    async def release(self, deliveries: Sequence[Delivery], now: datetime) -> None:
        """Hand back claimed deliveries that were not tried (a sender stopping)."""
        if not deliveries:
            return
        await update_in(
            self.deliveries, "_id", [d.id for d in deliveries],
            {"$set": {"claim": None, "claimed_until": None, "due_at": now, "updated_at": now},
             "$inc": {"version": 1}},
            {"claim": {"$in": sorted({d.claim for d in deliveries if d.claim})}},
        )  # fmt: skip

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
        return [delivery_from(document) async for document in cursor]


def claimable(now: datetime) -> dict[str, Any]:
    """Pending and due: a claim moves ``due_at`` to its expiry, so a claimed delivery is
    not due until its sender has had its lease."""
    return {"status": DeliveryStatus.PENDING.value, "due_at": {"$lte": now}}


def _held(document: Mapping[str, Any], now: datetime) -> bool:
    held_until = document.get("claimed_until")
    return held_until is not None and held_until > now


def marketing_window(customer_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, Any]:
    """The marketing messages planned or sent for these customers due in [start, end)."""
    return {
        "customer_id": {"$in": list(customer_ids)},
        "purpose": Purpose.MARKETING.value,
        "status": {"$in": [DeliveryStatus.PENDING.value, DeliveryStatus.SENT.value]},
        "due_at": {"$gte": start, "$lt": end},
    }


# What the event path changes in the ledger beyond new deliveries (applied in a batch:
# see ``batch.py``; in order, after the deliveries the batch recorded before them).


def release_waiting(customer_id: str, now: datetime) -> list[Write]:
    """The customer is known now: what waited for them goes at once."""
    return [
        update_many(
            {"customer_id": customer_id, "status": DeliveryStatus.PENDING.value,
             "last_error": WAITING_FOR_CUSTOMER, "due_at": {"$gt": now}, "claim": None},
            {"$set": {"due_at": now, "updated_at": now}, "$inc": {"version": 1}},
        )
    ]  # fmt: skip


def cancel_pending(customer_id: str, reason: str, now: datetime) -> list[Write]:
    return [
        update_many(
            {"customer_id": customer_id, "status": DeliveryStatus.PENDING.value},
            {"$set": {"status": DeliveryStatus.CANCELLED.value, "reason": reason,
                      "updated_at": now}, "$inc": {"version": 1}},
        )
    ]  # fmt: skip


def anonymise(customer_id: str, now: datetime) -> list[Write]:
    """Erasure: keep that something was sent, when and why; no address, no content."""
    return [
        update_many(
            {"customer_id": customer_id, "audience": Audience.CUSTOMER.value},
            {"$set": {"address": None, "context": {}, "cloudevent": None, "last_error": None,
                      "updated_at": now, "erased": True}, "$inc": {"version": 1}},
        ),
        # A failure's reason may quote the address ("550 <ana@example.com> unknown").
        update_many(
            {"customer_id": customer_id, "status": DeliveryStatus.FAILED.value},
            {"$set": {"reason": ERASED_FAILURE}},
        ),
        # Internal messages about the customer keep the staff address, not the content.
        update_many(
            {"customer_id": customer_id, "audience": Audience.STAFF.value},
            {"$set": {"context": {}, "cloudevent": None, "updated_at": now, "erased": True},
             "$inc": {"version": 1}},
        ),
    ]  # fmt: skip


def move_pending(source_id: str, target_id: str, *, undo: bool) -> list[Write]:
    """Deliveries not sent yet follow a merge (and go back when it is undone)."""
    if undo:
        return [
            update_many(
                {"customer_id": target_id, "moved_from": source_id,
                 "status": DeliveryStatus.PENDING.value},
                {"$set": {"customer_id": source_id, "moved_from": None, "address": None},
                 "$inc": {"version": 1}},
            )
        ]  # fmt: skip
    return [
        update_many(
            {"customer_id": source_id, "status": DeliveryStatus.PENDING.value},
            {"$set": {"customer_id": target_id, "moved_from": source_id, "address": None},
             "$inc": {"version": 1}},
        )
    ]  # fmt: skip


def finish(delivery: Delivery, changes: Mapping[str, Any]) -> UpdateOne:
    """Record an attempt's outcome, if the delivery is still pending under this claim
    (an erasure cancels it; a claim that expired may have been taken over); releases it."""
    return UpdateOne(
        {"_id": delivery.id, "claim": delivery.claim, "status": DeliveryStatus.PENDING.value},
        {"$set": {**changes, "claim": None, "claimed_until": None}, "$inc": {"version": 1}},
    )


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
        """What a customer merged from several profiles chose (see :func:`combine`)."""
        if not customer_ids:
            return CustomerPreferences()
        cursor = self.preferences.find({"_id": {"$in": list(customer_ids)}}, session=session)
        documents = {document["_id"]: document async for document in cursor}
        return combine(customer_ids, documents)

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


def combine(
    customer_ids: Sequence[str], documents: Mapping[str, Mapping[str, Any] | None]
) -> CustomerPreferences:
    """What a customer merged from several profiles (``customer_ids``, the survivor
    first) chose, from their stored ``documents``: every opt-out any of them made; the
    quiet hours of the first that set its own. Profiles the survivor's own choice was made
    over (see ``PreferenceStore.put``) no longer count: that choice replaced theirs."""
    if not customer_ids:
        return CustomerPreferences()
    survivor, *others = customer_ids
    document = documents.get(survivor)
    covered = set(document.get("covers", [])) if document else set()
    found = [_preferences(document)]
    found.extend(_preferences(documents.get(other)) for other in others if other not in covered)
    if len(found) == 1:
        return found[0]
    own = next((p for p in found if p.quiet_hours or p.quiet_hours_off), found[0])
    return CustomerPreferences(
        opt_outs=list(dict.fromkeys(o for p in found for o in p.opt_outs)),
        quiet_hours=own.quiet_hours,
        quiet_hours_off=own.quiet_hours_off,
    )


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
