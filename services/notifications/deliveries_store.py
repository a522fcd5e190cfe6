"""MongoDB adapter of deliveries: the delivery ledger.

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

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne

from services.notifications.deliveries_domain import (
    ERASED_FAILURE,
    WAITING_FOR_CUSTOMER,
    Delivery,
    DeliveryStatus,
)
from services.notifications.documents import Write, update_many
from services.notifications.domain import Purpose
from services.notifications.rules import Audience
from shared.mongo import Database, Session, find_in, update_in


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
        """These deliveries as stored, those still pending under ``claim`` (read by id,
        the claim and status checked here: see :func:`finish`)."""
        found = await find_in(self.deliveries, "_id", delivery_ids)
        return [
            delivery_from(document)
            for document in found
            if document.get("claim") == claim
            and document.get("status") == DeliveryStatus.PENDING.value
        ]

    async def claims(
        self, delivery_ids: Sequence[str], session: Session | None = None
    ) -> dict[str, dict[str, Any]]:
        """The claim and status of these deliveries as stored, by id."""
        found = await find_in(
            self.deliveries, "_id", delivery_ids,
            projection={"claim": 1, "status": 1}, session=session,
        )  # fmt: skip
        return {document["_id"]: document for document in found}

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
    """Record an attempt's outcome and release the claim. The caller has read, in the same
    transaction, that the delivery is still pending under this claim (an erasure cancels
    it; a claim that expired may have been taken over): a change made since makes the
    transaction conflict and run again. The filter is the id alone, which the store
    finds directly (with the claim and status in it, the development store looks for an
    index on them and reads every pending delivery)."""
    return UpdateOne(
        {"_id": delivery.id},
        {"$set": {**changes, "claim": None, "claimed_until": None}, "$inc": {"version": 1}},
    )


def status_filter(
    statuses: Sequence[DeliveryStatus],
    customer_ids: Sequence[str],
    rule: str | None,
    audience: Audience | None = None,
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if statuses:
        filters["status"] = {"$in": [status.value for status in statuses]}
    if customer_ids:
        filters["customer_id"] = {"$in": list(customer_ids)}
    if rule:
        filters["rule"] = rule
    if audience is not None:
        filters["audience"] = audience.value
    return filters
