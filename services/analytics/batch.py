"""What one batch of events reads and changes in analytics, held in memory.

The consumer applies a batch of events in one unit of work (``shared.unit_of_work``).
Analytics' handlers ask for customers, and for the owners of e-mails and external ids, by
``_id``: the unit of work's identity map answers those. They also ask for facts by the
customer they count for (``customer_id``) or by the name an event gave them (``named``),
which it cannot answer: a :class:`FactTable` does, from memory, including what earlier
events of the batch changed, which always wins over what the store still holds.

Reading is batched in two steps. The routes' ``load`` steps only say what their events
will ask (``want_...``); the first handler of the batch reads all of it
(:meth:`Batch.fetch`): one ``$in`` query per collection whatever the mix of event types,
one more per merge step followed, and a second round when merges or erasures are in the
batch (they need the names their customers' facts were given). A question no step
foresaw costs one query, and is answered from memory after that.

Nothing is written while the events are applied. At the end of the batch each touched
customer's summary is rebuilt once (:meth:`Batch.summaries`: from the stored summary and
the batch's new facts when that is exact, else from all of the customer's facts, read for
all such customers at once), and every changed fact is queued in the unit of work
(:meth:`Batch.save`), to be written with one ``bulk_write`` per collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext
from pymongo import InsertOne, ReplaceOne

from services.analytics.domain.summaries import FACT_KINDS, Summary, resummarise, with_new_facts
from services.analytics.store import (
    ANONYMOUS_PREFIX,
    FACT_OF,
    FACTS,
    AnalyticsStore,
    is_identity_key,
)
from shared.identity import MAX_MERGE_HOPS, End, Link, follow, link_of
from shared.mongo import Collection, Document, find_in, in_chunk, in_chunks
from shared.observability import current_span_context
from shared.unit_of_work import UnitOfWork

FIELDS = ("customer_id", "named")  # what facts are asked for by, besides their _id


class FactTable:
    """One kind of fact as a batch sees it: by ``_id``, and by ``customer_id`` and
    ``named`` for the values asked about."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.documents: dict[str, Document | None] = {}  # None: known to be absent
        self._index: dict[str, dict[str, dict[str, None]]] = {name: {} for name in FIELDS}
        self._asked: dict[str, set[str]] = {name: set() for name in FIELDS}
        self._wanted: dict[str, set[str]] = {name: set() for name in ("_id", *FIELDS)}
        self._new: dict[str, None] = {}  # in the order added
        self._changed: dict[str, None] = {}

    def want(self, by: str, values: Iterable[str]) -> None:
        """Read the facts with one of these ``_id`` / ``customer_id`` / ``named`` values at
        the next :meth:`fetch`."""
        self._wanted[by].update(values)

    @property
    def wanting(self) -> bool:
        """Whether a :meth:`fetch` has something to ask."""
        return any(self._wanted.values())

    async def fetch(self, uow: UnitOfWork) -> None:
        wanted, self._wanted = self._wanted, {name: set() for name in self._wanted}
        await self._ask(uow, wanted)

    async def get(self, uow: UnitOfWork, key: str) -> Document | None:
        """The fact with this ``_id`` (read if not known). Do not change it in place:
        :meth:`put` a changed copy."""
        if key not in self.documents:
            await self._ask(uow, {"_id": [key]})
        return self.documents[key]

    async def find(self, uow: UnitOfWork, by: str, values: Iterable[str]) -> list[Document]:
        """The facts whose ``by`` (``customer_id`` or ``named``) is one of ``values``;
        values not asked about before are read in one query."""
        values = list(dict.fromkeys(values))
        await self._ask(uow, {by: values})
        keys: dict[str, None] = {}
        for value in values:
            keys.update(self._index[by].get(value, {}))
        return [document for key in keys if (document := self.documents[key]) is not None]

    def add(self, document: Document) -> None:
        """A new fact, inserted at :meth:`save`."""
        self._set(document)
        self._new[document["_id"]] = None

    def put(self, document: Document) -> None:
        """A fact changed (whole), stored at :meth:`save`."""
        self._set(document)
        if document["_id"] not in self._new:
            self._changed[document["_id"]] = None

    def save(self, uow: UnitOfWork) -> None:
        """Queue in ``uow`` what the batch added and changed, each fact once. The table,
        not the unit of work's identity map, holds the batch's view of facts: the writes
        are queued as they are, with no copy kept."""
        for key in self._new:
            if (document := self.documents[key]) is not None:
                uow.write(self.collection, InsertOne(document), key=key)
        for key in self._changed:
            if (document := self.documents[key]) is not None:
                uow.write(self.collection, ReplaceOne({"_id": key}, document, upsert=True), key=key)
        self._new.clear()
        self._changed.clear()

    async def _ask(self, uow: UnitOfWork, values: Mapping[str, Iterable[str]]) -> None:
        """Read the facts with the values not known or asked about yet: one query (an
        ``$or`` of the kinds of key), or, past ``shared.mongo.in_chunk()`` keys when that
        limits a query's keys, one per kind and that many keys."""
        ids = [key for key in dict.fromkeys(values.get("_id", ())) if key not in self.documents]
        asking = {
            name: [value for value in dict.fromkeys(values.get(name, ())) if value not in asked]
            for name, asked in self._asked.items()
        }
        clauses: list[Document] = [{"_id": {"$in": ids}}] if ids else []
        clauses += [{name: {"$in": new}} for name, new in asking.items() if new]
        if not clauses:
            return
        keys = len(ids) + sum(len(new) for new in asking.values())
        limit = in_chunk()
        if not limit or keys <= limit:
            queries = [clauses[0] if len(clauses) == 1 else {"$or": clauses}]
        else:
            queries = [query for clause in clauses for query in in_chunks(clause)]
        for query in queries:
            uow.reads += 1
            async for document in self.collection.find(query, session=uow.session):
                if document["_id"] not in self.documents:  # what the batch holds is newer
                    self._set(document)
        for key in ids:
            self.documents.setdefault(key, None)
        for name, new in asking.items():
            self._asked[name].update(new)

    def _set(self, document: Document) -> None:
        key = document["_id"]
        before = self.documents.get(key)
        for name in FIELDS:
            if before is not None and before.get(name) is not None:
                self._index[name][before[name]].pop(key, None)
            if document.get(name) is not None:
                self._index[name].setdefault(document[name], {})[key] = None
        self.documents[key] = document


@dataclass
class Touched:
    """A customer whose summary the batch changes: rebuilt from all of its facts
    (``whole``), or from the stored summary and the facts ``added`` (ids by kind)."""

    whole: bool = False
    added: dict[str, dict[str, None]] = field(default_factory=dict)
    # the span of the last event touching it (made a carrier only if an event is announced)
    span: SpanContext = INVALID_SPAN_CONTEXT


class Batch:
    """Analytics' view of the store for one batch, and what the batch touched."""

    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self.facts = {name: FactTable(store.db[name]) for name in FACTS}
        self.touched: dict[str, Touched] = {}
        self._names: set[str] = set()
        self._names_of: set[str] = set()
        self._owners_of: set[str] = set()
        self._owned: dict[str, set[str]] = {}  # identity keys a customer had, as read
        self._owner_changes: dict[str, str | None] = {}  # identity keys given or taken
        self._customers: dict[str, Document | None] = {}  # as the batch got or put them
        self._resolved: dict[str, str] = {}

    # What the batch will ask (the routes' load steps say it; fetch reads it)

    def want_names(self, names: Iterable[str]) -> None:
        """Events name their customers so (ids, e-mail or external-id keys)."""
        self._names.update(names)

    def want_facts(self, kind: str, by: str, values: Iterable[str]) -> None:
        self.facts[kind].want(by, values)

    def want_names_of(self, customer_ids: Iterable[str]) -> None:
        """Every fact counting for or naming these customers, and every fact named as
        those were (a merge moves them, an erasure makes them anonymous)."""
        self._names_of.update(customer_ids)

    def want_identities_of(self, customer_ids: Iterable[str]) -> None:
        """The e-mails and external ids these customers own (an erasure drops them)."""
        self._owners_of.update(customer_ids)

    async def fetch(self, uow: UnitOfWork) -> None:
        """Read what the batch said it will ask and is not known yet."""
        while self._names or self._names_of or self._owners_of or self._facts_wanted():
            await self._know(uow, self._take(self._names))
            if owners := self._take(self._owners_of):
                await self._read_owned(uow, owners)
            names_of = self._take(self._names_of)
            for table in self.facts.values():
                for by in FIELDS:
                    table.want(by, names_of)
                await table.fetch(uow)
            for customer_id in names_of:  # a second round: the names their facts carry
                names = await self.named_for(uow, customer_id)
                self.want_names(names)
                for table in self.facts.values():
                    for by in FIELDS:
                        table.want(by, names)

    def _facts_wanted(self) -> bool:
        return any(table.wanting for table in self.facts.values())

    @staticmethod
    def _take(wanted: set[str]) -> set[str]:
        taken = set(wanted)
        wanted.clear()
        return taken

    async def _know(self, uow: UnitOfWork, names: set[str]) -> None:
        """Read what resolving ``names`` takes: the owners of identity keys, then the
        customers, then whom they were merged into (one query a step)."""
        keys = [name for name in names if is_identity_key(name)]
        await uow.load(self.store.identities, keys)
        ids = {name for name in names if not is_identity_key(name)}
        for key in keys:
            if (owner := await uow.get(self.store.identities, key)) is not None:
                ids.add(str(owner["customer_id"]))
        for _ in range(MAX_MERGE_HOPS):
            await uow.load(self.store.customers, ids)
            merged_into = set()
            for customer_id in ids:
                link = link_of(await self.customer(uow, customer_id))
                if link is not None and not link.erased and link.merged_into:
                    merged_into.add(link.merged_into)
            ids = {key for key in merged_into if not uow.known(self.store.customers, key)}
            if not ids:
                return

    async def _read_owned(self, uow: UnitOfWork, customer_ids: Iterable[str]) -> None:
        wanted = [key for key in customer_ids if key not in self._owned]
        if not wanted:
            return
        uow.reads += 1
        found = await find_in(
            self.store.identities, "customer_id", wanted, projection={"customer_id": 1},
            session=uow.session,
        )  # fmt: skip
        for customer_id in wanted:
            self._owned[customer_id] = set()
        for document in found:
            self._owned[str(document["customer_id"])].add(str(document["_id"]))

    # Who a fact belongs to

    async def resolve(self, uow: UnitOfWork, named: str) -> str:
        """The customer a fact naming ``named`` counts for: merges followed, erasure
        replaced by the customer's anonymous token."""
        known = self._resolved.get(named)
        if known is not None:
            return known
        current = named
        if is_identity_key(named):
            owner = await uow.get(self.store.identities, named)
            # not attributed until a profile names this e-mail or id
            current = named if owner is None else str(owner["customer_id"])

        async def link(key: str) -> Link | None:
            if is_identity_key(key):
                return None  # an e-mail or id no profile names: counted under itself
            return link_of(await self.customer(uow, key))

        reached = await follow(current, link)
        current = reached.customer_id
        if reached.end is End.ERASED:
            erased = await self.customer(uow, current)  # read on the way: no query
            assert erased is not None
            current = str(erased["anonymous_id"])
        self._resolved[named] = current
        return current

    async def attribution(self, uow: UnitOfWork, named: str) -> tuple[str, str]:
        """The name a new fact keeps, and the customer it counts for; a fact about an
        erased customer keeps neither its id."""
        customer_id = await self.resolve(uow, named)
        if customer_id.startswith(ANONYMOUS_PREFIX):
            return customer_id, customer_id
        return named, customer_id

    async def customer(self, uow: UnitOfWork, customer_id: str) -> Document | None:
        """The customer's document as the batch holds it (read if unknown). Do not change
        it in place: :meth:`put_customer` a changed copy."""
        if customer_id not in self._customers:
            self._customers[customer_id] = await uow.get(self.store.customers, customer_id)
        return self._customers[customer_id]

    def put_customer(self, uow: UnitOfWork, document: Document) -> None:
        """A customer changed in who it is (name, merge, erasure)."""
        uow.put(self.store.customers, document)
        self._customers[document["_id"]] = document
        self._resolved.clear()

    def own(self, uow: UnitOfWork, key: str, customer_id: str) -> None:
        """``customer_id`` has this e-mail or external id now."""
        uow.put(self.store.identities, {"_id": key, "customer_id": customer_id})
        self._owner_changes[key] = customer_id
        self._resolved.clear()

    async def disown_all(self, uow: UnitOfWork, customer_id: str) -> None:
        """``customer_id`` has no e-mail or external id any more."""
        await self._read_owned(uow, [customer_id])
        keys = {
            key
            for key in self._owned[customer_id]
            if self._owner_changes.get(key, customer_id) == customer_id
        }
        keys |= {key for key, owner in self._owner_changes.items() if owner == customer_id}
        for key in sorted(keys):
            uow.delete(self.store.identities, key)
            self._owner_changes[key] = None
        self._resolved.clear()

    async def named_for(self, uow: UnitOfWork, customer_id: str) -> set[str]:
        """Every name the facts counting for ``customer_id`` were given, and its own."""
        names = {customer_id}
        for table in self.facts.values():
            found = await table.find(uow, "customer_id", [customer_id])
            names.update(str(document["named"]) for document in found)
        return names

    async def reattribute(self, uow: UnitOfWork, names: Iterable[str]) -> set[str]:
        """Point every fact naming one of ``names`` at the customer it resolves to now;
        returns the customers whose facts changed (before and after)."""
        names = sorted(set(names))
        touched: set[str] = set()
        for table in self.facts.values():
            await table.find(uow, "named", names)  # what is not known yet, in one query
        for name in names:
            target = await self.resolve(uow, name)
            for table in self.facts.values():
                found = await table.find(uow, "named", [name])
                moving = [document for document in found if document["customer_id"] != target]
                for document in moving:
                    if document["customer_id"] is not None:
                        touched.add(str(document["customer_id"]))
                    table.put({**document, "customer_id": target})
                if moving:
                    touched.add(target)
        return touched

    async def anonymise(self, uow: UnitOfWork, names: Iterable[str], token: str) -> None:
        """Every fact counting for or naming one of ``names`` counts for ``token`` now."""
        names = sorted(set(names))
        for table in self.facts.values():
            found = await table.find(uow, "customer_id", names)
            found += await table.find(uow, "named", names)
            for document in found:
                table.put({**document, "customer_id": token, "named": token})

    # What the batch changed

    def touch(self, customer_id: str, kind: str | None = None, fact_id: str | None = None) -> None:
        """The customer's facts changed: ``fact_id`` of ``kind`` was added (or changed:
        a complaint), or anything (``kind`` None: the summary is rebuilt whole)."""
        if customer_id.startswith(ANONYMOUS_PREFIX) or is_identity_key(customer_id):
            return  # no summary: nobody to judge
        touched = self.touched.setdefault(customer_id, Touched())
        if kind is None:
            touched.whole = True
        elif fact_id is not None:
            touched.added.setdefault(kind, {})[fact_id] = None
        touched.span = current_span_context()

    def untouch(self, customer_id: str) -> None:
        self.touched.pop(customer_id, None)

    async def summaries(
        self, uow: UnitOfWork, customers: Mapping[str, Document | None]
    ) -> dict[str, Summary]:
        """The summary of each touched customer still live (with its document in
        ``customers``) as its facts now make it. The stored summary and the batch's new
        facts give it when that is exact; else the customer's facts of that kind (of every
        kind, for one with no stored summary or touched whole) are read, for all such
        customers at once."""
        started: dict[str, Summary] = {}
        rebuild: dict[str, dict[str, None]] = {kind: {} for kind in FACT_KINDS}
        live = [key for key in self.touched if _live(customers.get(key))]
        for customer_id in live:
            touched, document = self.touched[customer_id], customers.get(customer_id)
            # A customer without a document has no fact counted yet: each fact is stored
            # with its customer's summary. One with a document but no summary is rebuilt.
            stored = {} if document is None else document.get("summary")
            if touched.whole or stored is None:
                for kind in FACT_KINDS:
                    rebuild[kind][customer_id] = None
                continue
            summary = Summary.from_document(stored)
            for kind, ids in touched.added.items():
                updated = with_new_facts(summary, kind, self._added(kind, ids, customer_id))
                if updated is None:
                    rebuild[kind][customer_id] = None
                else:
                    summary = updated
            started[customer_id] = summary
        facts = {kind: await self._facts_of(uow, kind, rebuild[kind]) for kind in rebuild}
        summaries: dict[str, Summary] = {}
        for customer_id in live:
            summary = started.get(customer_id) or Summary()
            for kind in FACT_KINDS:
                if customer_id in rebuild[kind]:
                    summary = resummarise(summary, kind, facts[kind][customer_id])
            summaries[customer_id] = summary
        return summaries

    def _added(self, kind: str, ids: Iterable[str], customer_id: str) -> list[Any]:
        """The facts with these ids, as the domain sees them, that count for the customer."""
        table, convert = self.facts[kind], FACT_OF[kind]
        return [
            convert(document)
            for key in ids
            if (document := table.documents.get(key)) is not None
            and document["customer_id"] == customer_id
        ]

    async def _facts_of(
        self, uow: UnitOfWork, kind: str, customer_ids: Iterable[str]
    ) -> dict[str, list[Any]]:
        """Every fact of one kind of each of these customers (one query for all)."""
        by_customer: dict[str, list[Any]] = {customer_id: [] for customer_id in customer_ids}
        if by_customer:
            convert = FACT_OF[kind]
            for document in await self.facts[kind].find(uow, "customer_id", by_customer):
                by_customer[str(document["customer_id"])].append(convert(document))
        return by_customer

    def save(self, uow: UnitOfWork) -> None:
        """Queue every fact the batch added or changed in its unit of work."""
        for table in self.facts.values():
            table.save(uow)


def _live(customer: Document | None) -> bool:
    """Not erased nor merged into another: a customer with a summary to keep."""
    return customer is None or not (customer.get("erased") or customer.get("merged_into"))
