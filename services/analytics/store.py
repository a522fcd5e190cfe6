"""MongoDB read models of analytics: facts keyed by their ids, and one document per customer.

Facts are kept so that the order they arrive in does not matter (the earliest time, sets
of times, fields each event owns), which is what lets a replay reach the figures of the
live run. Each fact keeps the customer id the event named (``named``) and the customer it
counts for now (``customer_id``), which follows merges and becomes an anonymous token on
erasure. The event path changes them a batch at a time, in memory, and writes them in
bulk (``services.analytics.batch``); this module says what they are and answers the read
side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne

from services.analytics.domain.facts import FeedbackFact, NotificationFact, PurchaseFact, ReturnFact
from services.analytics.domain.figures import Metric
from services.analytics.domain.kpis import KpiFacts
from services.analytics.domain.segments import Population
from services.analytics.domain.summaries import complaint_from_document
from shared.clock import to_millisecond
from shared.mongo import Collection, Database, Document, Session
from shared.unit_of_work import UnitOfWork

FACTS = ("purchases", "returns", "complaints", "feedback", "notifications")
ANONYMOUS_PREFIX = "anonymous-"  # what an erased customer's facts count for


def stored_time(moment: datetime) -> datetime:
    """``moment`` as the store keeps it (BSON dates): UTC, to the millisecond. What a batch
    holds in memory must equal what a later batch reads back."""
    return to_millisecond(moment)


def is_identity_key(named: str) -> bool:
    """A purchase may name its buyer by e-mail or external id instead of customer id."""
    return named.startswith(("email:", "external:"))


def purchase_fact(document: Mapping[str, Any]) -> PurchaseFact:
    return PurchaseFact(
        purchase_id=document["_id"],
        at=document["at"],
        currency=document["currency"],
        total=Decimal(document["total"]),
        items=tuple(
            (i["sku"], i["name"], i["category"], i["quantity"]) for i in document.get("items", ())
        ),
    )


def return_fact(document: Mapping[str, Any]) -> ReturnFact:
    return ReturnFact(
        return_id=document["_id"],
        at=document["at"],
        currency=document["currency"],
        refund=Decimal(document["refund"]),
    )


def feedback_fact(document: Mapping[str, Any]) -> FeedbackFact:
    return FeedbackFact(at=document["at"], csat=document["csat"], nps=document.get("nps"))


FACT_OF: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "purchases": purchase_fact,
    "returns": return_fact,
    "complaints": complaint_from_document,
    "feedback": feedback_fact,
}


class AnalyticsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.purchases: Collection = db["purchases"]
        self.returns: Collection = db["returns"]
        self.complaints: Collection = db["complaints"]
        self.feedback: Collection = db["feedback"]
        self.notifications: Collection = db["notifications"]
        self.customers: Collection = db["customers"]
        self.identities: Collection = db["identities"]
        self.state: Collection = db["analytics_state"]

    async def ensure_indexes(self) -> None:
        for name in FACTS:
            await self.db[name].create_index([("customer_id", ASCENDING)])
            await self.db[name].create_index([("named", ASCENDING)])
        for name, field in (
            ("purchases", "at"),
            ("returns", "at"),
            ("feedback", "at"),
            ("complaints", "opened_at"),
            ("complaints", "first_resolved_at"),
            ("complaints", "acknowledged_at"),
            ("complaints", "first_response_due_at"),
            ("complaints", "resolution_due_at"),
            ("complaints", "breach_due.first_response"),
            ("complaints", "breach_due.resolution"),
        ):
            await self.db[name].create_index([(field, ASCENDING)])
        await self.purchases.create_index([("skus", ASCENDING)])
        await self.purchases.create_index([("categories", ASCENDING)])
        await self.notifications.create_index([("at", DESCENDING), ("_id", DESCENDING)])
        await self.identities.create_index([("customer_id", ASCENDING)])
        await self.customers.create_index([("registered_at", ASCENDING)])
        await self.customers.create_index([("insight.segment", ASCENDING), ("_id", ASCENDING)])
        await self.customers.create_index([("insight.churn_level", ASCENDING)])
        await self.customers.create_index([("summary.categories", ASCENDING)])

    # Customers

    async def customer(self, customer_id: str, session: Session | None = None) -> Document | None:
        return await self.customers.find_one({"_id": customer_id}, session=session)

    async def population(self, session: Session | None = None) -> Population:
        document = await self.state.find_one({"_id": "population"}, session=session)
        return Population.from_document(document)

    async def save_population(self, population: Population, now: datetime) -> None:
        await self.state.replace_one(
            {"_id": "population"},
            {"_id": "population", **population.to_document(), "computed_at": now},
            upsert=True,
        )

    def live_customers(self) -> dict[str, Any]:
        return {"erased": {"$ne": True}, "merged_into": None}

    async def live_for_judging(self) -> list[Document]:
        """Every live customer, by id, with what judging reads of it: the summary, when
        it registered, its name, and its stored insight and version."""
        return [
            document
            async for document in self.customers.find(
                self.live_customers(),
                {"summary": 1, "registered_at": 1, "name": 1, "insight": 1, "version": 1},
            ).sort("_id", 1)
        ]

    async def live_versions(self, uow: UnitOfWork, customer_ids: Sequence[str]) -> dict[str, Any]:
        """The stored version of each of these customers still live, in one query."""
        live = self.live_customers()
        uow.reads += 1
        found = self.customers.find(
            {**live, "_id": {"$in": list(customer_ids)}},
            {"version": 1},
            session=uow.session,
        )
        return {document["_id"]: document.get("version") async for document in found}

    def store_insight(
        self, uow: UnitOfWork, customer_id: str, version: Any, insight: Document
    ) -> None:
        """Store the customer's new insight when ``uow`` commits, if the customer is still
        live and at ``version``."""
        uow.write(
            self.customers,
            UpdateOne(
                {**self.live_customers(), "_id": customer_id, "version": version},
                {"$set": {"insight": insight}, "$inc": {"version": 1}},
            ),
            key=customer_id,
        )

    async def segments_of_live_customers(self) -> list[str]:
        """The segment of each live customer that has one."""
        segments = []
        async for document in self.customers.find(self.live_customers(), {"insight.segment": 1}):
            insight = document.get("insight") or {}
            if insight.get("segment"):
                segments.append(insight["segment"])
        return segments

    async def segment_members_page(
        self, segment: str, after: str | None, limit: int
    ) -> list[Document]:
        """Up to ``limit`` live customers in ``segment``, by id, after the id ``after``."""
        query: dict[str, Any] = {**self.live_customers(), "insight.segment": segment}
        if after is not None:
            query["_id"] = {"$gt": after}
        return await self.customers.find(query).sort("_id", 1).limit(limit).to_list()

    async def churn_risks_page(
        self, levels: Sequence[str], after: tuple[float, str] | None, limit: int
    ) -> list[Document]:
        """Up to ``limit`` live customers at one of the churn ``levels``, highest score
        first, then by id, after the (score, id) ``after``."""
        query: dict[str, Any] = {
            **self.live_customers(),
            "insight.churn_level": {"$in": list(levels)},
        }
        if after is not None:
            score, customer_id = after
            query["$or"] = [
                {"insight.churn_score": {"$lt": score}},
                {"insight.churn_score": score, "_id": {"$gt": customer_id}},
            ]
        return (
            await self.customers.find(query)
            .sort([("insight.churn_score", -1), ("_id", 1)])
            .limit(limit)
            .to_list()
        )

    async def peers_of(self, customer_id: str, categories: Sequence[str]) -> list[Document]:
        """The summaries of the other live customers who bought in any of ``categories``."""
        return [
            document
            async for document in self.customers.find(
                {
                    **self.live_customers(),
                    "_id": {"$ne": customer_id},
                    "summary.categories": {"$in": list(categories)},
                },
                {"summary": 1},
            )
        ]

    async def live_customers_with(self, field: str, value: str) -> list[Document]:
        """The live customers whose ``field`` (a summary list) holds ``value``, with it."""
        return [
            document
            async for document in self.customers.find(
                {**self.live_customers(), field: value}, {field: 1}
            )
        ]

    async def names_of(self, customer_ids: Sequence[str]) -> dict[str, Any]:
        """The name of each of these customers analytics knows, by id."""
        return {
            document["_id"]: document.get("name")
            async for document in self.customers.find(
                {"_id": {"$in": list(customer_ids)}}, {"name": 1}
            )
        }

    async def buyer_count(self) -> int:
        """Live customers with a purchase: the population RFM ranks against."""
        return await self.customers.count_documents(
            {**self.live_customers(), "summary.purchases": {"$gt": 0}}
        )

    # Window queries for KPIs

    async def kpi_facts(self, start: datetime, end: datetime) -> KpiFacts:
        span = {"$gt": start, "$lte": end}
        purchases = [
            purchase_fact(d)
            async for d in self.purchases.find({"at": span}, {"items": 0, "skus": 0})
        ]
        returns = [return_fact(d) async for d in self.returns.find({"at": span})]
        complaints = [
            complaint_from_document(d)
            async for d in self.complaints.find(
                {
                    "$or": [
                        {"opened_at": span},
                        {"first_resolved_at": span},
                        {"acknowledged_at": span},
                        # a clock missed unanswered counts at its due time
                        {"first_response_due_at": span},
                        {"resolution_due_at": span},
                        {"breach_due.first_response": span},
                        {"breach_due.resolution": span},
                    ]
                }
            )
        ]
        notifications = [
            NotificationFact(event_type=d["event_type"], at=d["at"])
            async for d in self.notifications.find({"at": span}, {"event_type": 1, "at": 1})
        ]
        feedback = [feedback_fact(d) async for d in self.feedback.find({"at": span})]
        new_customers = await self.customers.count_documents({"registered_at": span})
        return KpiFacts(
            purchases=purchases,
            returns=returns,
            new_customers=new_customers,
            complaints=complaints,
            notifications=notifications,
            feedback=feedback,
        )

    async def series_values(
        self, metric: Metric, start: datetime, end: datetime, currency: str | None
    ) -> list[tuple[datetime, Decimal]]:
        span = {"$gt": start, "$lte": end}
        one = Decimal(1)
        if metric is Metric.PURCHASES:
            return [(d["at"], one) async for d in self.purchases.find({"at": span}, {"at": 1})]
        if metric is Metric.REVENUE:
            return [
                (d["at"], Decimal(d["total"]))
                async for d in self.purchases.find(
                    {"at": span, "currency": currency}, {"at": 1, "total": 1}
                )
            ]
        if metric is Metric.RETURNS:
            return [(d["at"], one) async for d in self.returns.find({"at": span}, {"at": 1})]
        if metric is Metric.NEW_CUSTOMERS:
            return [
                (d["registered_at"], one)
                async for d in self.customers.find({"registered_at": span}, {"registered_at": 1})
            ]
        if metric is Metric.COMPLAINTS_OPENED:
            return [
                (d["opened_at"], one)
                async for d in self.complaints.find({"opened_at": span}, {"opened_at": 1})
            ]
        if metric is Metric.COMPLAINTS_RESOLVED:
            return [
                (d["first_resolved_at"], one)
                async for d in self.complaints.find(
                    {"first_resolved_at": span}, {"first_resolved_at": 1}
                )
            ]
        return [
            (d["at"], one)
            async for d in self.notifications.find(
                {"at": span, "event_type": "crm.notification.sent"}, {"at": 1}
            )
        ]

    async def main_currency(self, start: datetime, end: datetime) -> str | None:
        counts: dict[str, int] = {}
        async for d in self.purchases.find({"at": {"$gt": start, "$lte": end}}, {"currency": 1}):
            counts[d["currency"]] = counts.get(d["currency"], 0) + 1
        if not counts:
            return None
        return sorted(counts, key=lambda cur: (-counts[cur], cur))[0]

    # Purchases and notifications

    async def purchases_with(self, field: str, value: str) -> list[Document]:
        """The purchases whose ``field`` (``skus`` or ``categories``) holds ``value``, with
        that field and their items."""
        return [
            purchase
            async for purchase in self.purchases.find({field: value}, {field: 1, "items": 1})
        ]

    async def latest_notifications(self, limit: int) -> list[Document]:
        """The ``limit`` latest notification facts, newest first."""
        return (
            await self.notifications.find({}).sort([("at", -1), ("_id", -1)]).limit(limit).to_list()
        )
