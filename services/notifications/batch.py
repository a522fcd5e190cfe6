"""What one batch knows of the notifications state: read once, changed in memory.

The routes' load steps say what their events will need (:meth:`Batch.want`): the customers
named (by id, e-mail or external id), the deliveries already decided for these events or
for the business objects they are about (a purchase sent again under a new event id finds
the thank-you decided for the first), the schedules of the customers and complaints named,
the day's marketing messages of the customers a marketing rule may write to. The first
handler that reads makes the batch read all of it at once, for the whole batch whatever
mix of events it holds: an ``$in`` query per collection and kind of key, each on its index
(never an ``$or``). For a batch of purchases that is the directory (the customers, and the
profiles merged into them, whose opt-outs still count), the preferences, the ledger, and
once each the rule overrides and the webhook subscriptions; a batch naming a merged
profile or a buyer by e-mail reads the directory once more for them.

Handlers then read and change those documents in memory, each seeing what the earlier
events of the batch did, and every change is queued in the unit of work, to be written at
commit with one ``bulk_write`` per collection (see ``documents.py``: a change is described
once and applied both ways). A read of something nobody asked for (a handler reaching
further than its load step said) still works: the batch writes what it queued, then reads.

The dispatcher uses a batch too, without a unit of work, to read the customers and
preferences of the deliveries it claimed in the same few queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import InsertOne

from services.notifications.deliveries_domain import Delivery, DeliveryStatus
from services.notifications.deliveries_store import (
    DeliveryLedger,
    delivery_document,
    marketing_window,
)
from services.notifications.directory_domain import Customer
from services.notifications.directory_store import Directory, customer_from, merge_link
from services.notifications.documents import Document, Write, apply, matches
from services.notifications.ports import HandOff, Lease, WebhookPort, WebhookSubscription
from services.notifications.preferences_domain import CustomerPreferences
from services.notifications.preferences_store import PreferenceStore, combine
from services.notifications.rules import RuleConfig, configured
from services.notifications.rules_store import RuleStore
from services.notifications.scheduling_domain import Schedule
from services.notifications.scheduling_store import ScheduleStore, schedule_from
from shared.events import Event
from shared.identity import MAX_MERGE_HOPS, End, Link, follow, follow_known, merged_sources_known
from shared.mongo import Collection, Session, in_chunks
from shared.unit_of_work import UnitOfWork

# Marketing messages are counted per local day; a day anywhere is within this of now.
_MARKETING_MARGIN = timedelta(days=2)
# What a batch keeps of the deliveries it reads: enough to dedupe and count, and to apply
# the ledger's changes (see ``deliveries_store.py``) to them in memory.
_LEDGER_FIELDS = dict.fromkeys(
    ("customer_id", "source_event_id", "subject", "rule", "purpose", "audience", "status",
     "due_at", "last_error", "moved_from"),
    1,
)  # fmt: skip


@dataclass
class _Wanted:
    customers: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    external_ids: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)
    marketing_of: set[str] = field(default_factory=set)
    schedules: set[str] = field(default_factory=set)
    schedules_of: set[str] = field(default_factory=set)
    moved_from: set[str] = field(default_factory=set)


@dataclass
class _Read:
    """What was read already (a key read and found absent is known too)."""

    children_of: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    external_ids: set[str] = field(default_factory=set)
    preferences: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)
    marketing_of: set[str] = field(default_factory=set)
    schedules_of: set[str] = field(default_factory=set)
    moved_from: set[str] = field(default_factory=set)


class Batch:
    """The notifications state one unit of work (or one dispatcher round) sees."""

    def __init__(
        self,
        *,
        directory: Directory,
        preferences: PreferenceStore,
        ledger: DeliveryLedger,
        schedules: ScheduleStore,
        rule_store: RuleStore,
        webhooks: WebhookPort | None,
        rule_settings: Mapping[str, Mapping[str, Any]],
        clock: Callable[[], datetime],
        uow: UnitOfWork | None = None,
        hand_off: HandOff | None = None,
    ) -> None:
        self.uow = uow
        self._hand_off = hand_off
        self._lease: Lease | None = None
        self._handed: list[Delivery] = []
        self.session: Session | None = uow.session if uow is not None else None
        self._collections = (
            directory.customers,
            preferences.preferences,
            ledger.deliveries,
            schedules.schedules,
            rule_store.rules,
        )
        self._webhooks = webhooks
        self._rule_settings = rule_settings
        self._clock = clock
        self._wanted = _Wanted()
        self._read = _Read()
        self._fresh = False  # something is wanted that was not read yet
        self.customers: dict[str, Document | None] = {}
        self.preferences: dict[str, Document | None] = {}
        self.deliveries: dict[str, Document | None] = {}
        self.schedules: dict[str, Document | None] = {}
        self._overrides: dict[str, dict[str, Any]] | None = None
        self._rules: dict[str, RuleConfig] = {}
        self._children: dict[str, list[str]] | None = None  # by survivor, from ``customers``
        self._subscriptions: Sequence[WebhookSubscription] | None = None
        self.reads = 0  # queries sent (also counted in the unit of work's ``reads``)
        self.due_now = False  # a delivery due at once was recorded

    # -- what the batch will need ---------------------------------------------------------

    def want(
        self,
        *,
        customers: Iterable[str] = (),
        emails: Iterable[str] = (),
        external_ids: Iterable[str] = (),
        events: Iterable[str] = (),
        subjects: Iterable[str] = (),
        marketing_of: Iterable[str] = (),
        schedules: Iterable[str] = (),
        schedules_of: Iterable[str] = (),
        moved_from: Iterable[str] = (),
    ) -> None:
        """Say what the handlers will read; nothing is read until the first of them does."""
        wanted = self._wanted
        for keys, into in (
            (customers, wanted.customers),
            ((email.lower() for email in emails), wanted.emails),
            (external_ids, wanted.external_ids),
            (events, wanted.events),
            (subjects, wanted.subjects),
            (marketing_of, wanted.marketing_of),
            (schedules, wanted.schedules),
            (schedules_of, wanted.schedules_of),
            (moved_from, wanted.moved_from),
        ):
            for key in keys:
                if key not in into:
                    into.add(key)
                    self._fresh = True

    async def ready(self) -> None:
        """Read what is wanted and not known yet, for every collection at once."""
        if not self._fresh:
            return
        self._fresh = False
        try:
            if self.uow is not None and self.uow.pending_writes:
                await self.uow.flush()  # what this batch changed so far, before reading more
            await self._read_customers()
            self._children = None
            await self._read_preferences()
            await self._read_deliveries()
            await self._read_schedules()
        except BaseException:
            self._fresh = True  # what was not read is still wanted
            raise

    async def _find(
        self, collection: Collection, clauses: Sequence[Mapping[str, Any]], **options: Any
    ) -> list[Document]:
        """The documents matching any of ``clauses``: a query per clause, not one ``$or``
        (each clause has its index; the development store scans the whole collection for
        an ``$or``)."""
        found: dict[Any, Document] = {}
        for clause in clauses:
            self.reads += 1
            if self.uow is not None:
                self.uow.reads += 1
            for query in in_chunks(clause):
                cursor = collection.find(query, session=self.session, **options)
                async for document in cursor:
                    found.setdefault(document["_id"], document)
        return list(found.values())

    async def _read_customers(self) -> None:
        wanted, read = self._wanted, self._read
        ids = {key for key in wanted.customers if key not in self.customers}
        parents = wanted.customers - read.children_of
        emails, external_ids = wanted.emails - read.emails, wanted.external_ids - read.external_ids
        for _ in range(MAX_MERGE_HOPS):
            clauses: list[Mapping[str, Any]] = []
            if ids:
                clauses.append({"_id": {"$in": sorted(ids)}})
            if parents:
                clauses.append({"merged_into": {"$in": sorted(parents)}})
            if emails:
                clauses.append({"emails": {"$in": sorted(emails)}})
            if external_ids:
                clauses.append({"external_ids": {"$in": sorted(external_ids)}})
            if not clauses:
                return
            for document in await self._find(self._collections[0], clauses):
                self.customers.setdefault(document["_id"], document)
            for key in ids:
                self.customers.setdefault(key, None)
            read.children_of |= parents
            read.emails |= emails
            read.external_ids |= external_ids
            # Next: where the profiles found were merged into, and what was merged into them.
            known = [document for document in self.customers.values() if document is not None]
            ids = {
                document["merged_into"]
                for document in known
                if document.get("merged_into") and document["merged_into"] not in self.customers
            }
            parents = {document["_id"] for document in known} - read.children_of
            emails, external_ids = set(), set()

    async def _read_preferences(self) -> None:
        known = {key for key, document in self.customers.items() if document is not None}
        ids = (self._wanted.customers | known) - self._read.preferences
        if not ids:
            return
        for document in await self._find(self._collections[1], [{"_id": {"$in": sorted(ids)}}]):
            self.preferences.setdefault(document["_id"], document)
        for key in ids:
            self.preferences.setdefault(key, None)
        self._read.preferences |= ids

    async def _read_deliveries(self) -> None:
        wanted, read = self._wanted, self._read
        events = wanted.events - read.events
        subjects = wanted.subjects - read.subjects
        marketing = {self.current_id(key) for key in wanted.marketing_of} - read.marketing_of
        clauses: list[Mapping[str, Any]] = []
        if events:
            clauses.append({"source_event_id": {"$in": sorted(events)}})
        if subjects:
            clauses.append({"subject": {"$in": sorted(subjects)}})
        if marketing:
            now = self._clock()
            window = marketing_window(
                sorted(marketing), now - _MARKETING_MARGIN, now + _MARKETING_MARGIN
            )
            clauses.append(window)
        if not clauses:
            return
        for document in await self._find(self._collections[2], clauses, projection=_LEDGER_FIELDS):
            self.deliveries.setdefault(document["_id"], document)
        read.events |= events
        read.subjects |= subjects
        read.marketing_of |= marketing

    async def _read_schedules(self) -> None:
        wanted, read = self._wanted, self._read
        ids = {key for key in wanted.schedules if key not in self.schedules}
        owners, moved = wanted.schedules_of - read.schedules_of, wanted.moved_from - read.moved_from
        clauses: list[Mapping[str, Any]] = []
        if ids:
            clauses.append({"_id": {"$in": sorted(ids)}})
        if owners:
            clauses.append({"customer_id": {"$in": sorted(owners)}})
        if moved:
            clauses.append({"moved_from": {"$in": sorted(moved)}})
        if not clauses:
            return
        for document in await self._find(self._collections[3], clauses):
            self.schedules.setdefault(document["_id"], document)
        for key in ids:
            self.schedules.setdefault(key, None)
        read.schedules_of |= owners
        read.moved_from |= moved

    # -- reading (from memory) ------------------------------------------------------------

    async def customer_document(self, customer_id: str) -> Document | None:
        """The directory's document of this id itself (not following a merge)."""
        if customer_id not in self.customers:
            self.want(customers=[customer_id])
            await self.ready()
        return self.customers.get(customer_id)

    async def customer(self, customer_id: str) -> Customer | None:
        """The customer, following merges to the survivor; None when never heard of."""

        async def link(key: str) -> Link | None:
            if key not in self.customers:  # not read yet (a merge target nobody asked for)
                self.want(customers=[key])
                await self.ready()
            return merge_link(self.customers.get(key))

        reached = await follow(customer_id, link)
        document = self.customers.get(reached.customer_id)
        if reached.end is not End.LIVE or document is None:
            return None
        return customer_from(document)

    def current_id(self, customer_id: str) -> str:
        """The survivor ``customer_id`` stands for, as far as the batch knows."""
        return follow_known(
            customer_id, lambda key: merge_link(self.customers.get(key))
        ).customer_id

    async def find_by_email(self, email: str) -> Customer | None:
        address = email.lower()
        if address not in self._read.emails:
            self.want(emails=[address])
            await self.ready()
        return self._live({"emails": address})

    async def find_by_external_id(self, external_id: str) -> Customer | None:
        if external_id not in self._read.external_ids:
            self.want(external_ids=[external_id])
            await self.ready()
        return self._live({"external_ids": external_id})

    def _live(self, condition: Mapping[str, Any]) -> Customer | None:
        query = {**condition, "erased": {"$ne": True}, "merged_into": None}
        for document in self.customers.values():
            if document is not None and matches(document, query):
                return customer_from(document)
        return None

    def merged_from(self, customer_id: str) -> list[str]:
        """The profiles merged into ``customer_id`` (and into those), not undone."""
        if self._children is None:
            self._children = {}
            for key, document in self.customers.items():
                if document is not None and document.get("merged_into"):
                    self._children.setdefault(document["merged_into"], []).append(key)
        children = self._children
        return merged_sources_known(
            customer_id,
            lambda ids: [child for id_ in ids for child in sorted(children.get(id_, ()))],
        )

    async def preferences_of(self, customer_id: str) -> CustomerPreferences:
        """The customer's preferences, with the opt-outs of the profiles merged into theirs."""
        if customer_id not in self._read.children_of:
            self.want(customers=[customer_id])
            await self.ready()
        ids = [customer_id, *self.merged_from(customer_id)]
        if any(key not in self._read.preferences for key in ids):
            self.want(customers=ids)
            await self.ready()
        return combine(ids, self.preferences)

    async def marketing_between(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        excluding: tuple[str, str] | None = None,
    ) -> int:
        """Marketing messages planned or sent for the customer in [start, end): one per
        (source event, rule), however many channels it went on."""
        if customer_id not in self._read.marketing_of:
            self.want(marketing_of=[customer_id])
            await self.ready()
        window = marketing_window([customer_id], start, end)
        messages = {
            (document["source_event_id"], document["rule"])
            for document in self.deliveries.values()
            if document is not None and matches(document, window)
        }
        if excluding is not None:
            messages.discard(excluding)
        return len(messages)

    async def schedule(self, schedule_id: str) -> Schedule | None:
        if schedule_id not in self.schedules:
            self.want(schedules=[schedule_id])
            await self.ready()
        document = self.schedules.get(schedule_id)
        return None if document is None else schedule_from(document)

    async def schedule_of(self, customer_id: str, schedule_id: str) -> Schedule | None:
        """A schedule that is always the customer's own (a birthday, a renewal reminder):
        known once the customer's schedules are read, absent if not among them."""
        if customer_id not in self._read.schedules_of:
            self.want(schedules_of=[customer_id])
            await self.ready()
        document = self.schedules.setdefault(schedule_id, None)
        return None if document is None else schedule_from(document)

    async def schedules_of(self, customer_id: str, rule: str) -> list[Schedule]:
        if customer_id not in self._read.schedules_of:
            self.want(schedules_of=[customer_id])
            await self.ready()
        query = {"customer_id": customer_id, "rule": rule}
        return [
            schedule_from(document)
            for _, document in sorted(self.schedules.items())
            if document is not None and matches(document, query)
        ]

    async def rule(self, name: str) -> RuleConfig:
        """The rule as configured now: the settings' defaults, then the stored overrides."""
        if name in self._rules:
            return self._rules[name]
        if self._overrides is None:
            found = await self._find(self._collections[4], [{}])
            self._overrides = {
                document["_id"]: {k: v for k, v in document.items() if k != "_id"}
                for document in found
            }
        config = configured(name, self._rule_settings.get(name, {}), self._overrides.get(name, {}))
        self._rules[name] = config
        return config

    async def subscriptions(self, event_type: str) -> list[WebhookSubscription]:
        """The active webhook subscriptions matching ``event_type``."""
        if self._webhooks is None:
            return []
        if self._subscriptions is None:
            self.reads += 1
            if self.uow is not None:
                self.uow.reads += 1
            self._subscriptions = await self._webhooks.active()
        return [s for s in self._subscriptions if s.matches(event_type)]

    # -- changing (in memory now, in the store at commit) ---------------------------------

    def change_customers(self, *writes: Write) -> None:
        self._change(0, self.customers, writes)
        if any("merged_into" in write.update.get("$set", {}) for write in writes):
            self._children = None

    def change_deliveries(self, *writes: Write) -> None:
        self._change(2, self.deliveries, writes)

    def change_schedules(self, *writes: Write) -> None:
        self._change(3, self.schedules, writes)

    def _change(
        self, index: int, documents: dict[Any, Document | None], writes: Sequence[Write]
    ) -> None:
        uow = self._writable()
        for write in writes:
            apply(documents, write)
            uow.write(self._collections[index], write.operation())

    def forget_preferences(self, customer_id: str) -> None:
        self._writable().delete(self._collections[1], customer_id)
        self.preferences[customer_id] = None

    async def record(self, delivery: Delivery) -> bool:
        """Add the delivery to the ledger unless its key is there already; True when new."""
        # Keyed on its subject when it has one (see ``deliveries_domain.delivery_id``), else
        # on its event.
        if delivery.subject is not None:
            if delivery.subject not in self._read.subjects:
                self.want(subjects=[delivery.subject])
                await self.ready()
        elif delivery.source_event_id not in self._read.events:
            self.want(events=[delivery.source_event_id])
            await self.ready()
        if self.deliveries.get(delivery.id) is not None:
            return False
        uow = self._writable()
        if delivery.status is DeliveryStatus.PENDING and delivery.due_at <= self._clock():
            self.due_now = True
            lease = self._leased()
            if lease is not None:
                delivery = delivery.model_copy(
                    update={"claim": lease.claim, "claimed_until": lease.until,
                            "due_at": lease.until}
                )  # fmt: skip
                self._handed.append(delivery)
        document = delivery_document(delivery)
        # (as a plain write: the unit of work need not keep a copy, the batch keeps its own)
        uow.write(self._collections[2], InsertOne(document), key=delivery.id)
        self.deliveries[delivery.id] = {key: document.get(key) for key in _LEDGER_FIELDS}
        return True

    def _leased(self) -> Lease | None:
        """The batch's claim on what it records as due now: taken at the first such
        delivery, handed to the dispatcher once the batch has committed."""
        if self._lease is None and self._hand_off is not None and self.uow is not None:
            self._lease = self._hand_off.reserve(self._clock())
            if self._lease is not None:
                lease, hand_off = self._lease, self._hand_off
                self.uow.after_commit(lambda: hand_off.take(lease, *self._as_committed()))
        return self._lease

    def _as_committed(self) -> tuple[list[Delivery], list[str]]:
        """The deliveries handed over as recorded, when nothing later in the batch changed
        them; the ids of those something did (a merge moved them, an erasure cancelled
        them), which the dispatcher reads back as committed."""
        unchanged: list[Delivery] = []
        changed: list[str] = []
        for delivery in self._handed:
            now = self.deliveries.get(delivery.id)
            if now is not None and all(
                now.get(name) == value
                for name, value in (
                    ("status", DeliveryStatus.PENDING.value),
                    ("customer_id", delivery.customer_id),
                    ("due_at", delivery.due_at),
                    ("last_error", delivery.last_error),
                )
            ):
                unchanged.append(delivery)
            else:
                changed.append(delivery.id)
        return unchanged, changed

    def emit(self, events: Sequence[Event[Any]]) -> None:
        self._writable().emit(events)

    def _writable(self) -> UnitOfWork:
        if self.uow is None:
            raise RuntimeError("this batch only reads: it has no unit of work")
        return self.uow
