"""A unit of work: one MongoDB transaction, batched reads and writes, and the outbox.

The event path and the HTTP path use it alike. Whoever runs it (the consumer for a batch
of events, a use case for a request) first *loads* what the work touches with one query
per collection (``$in`` on the keys); handlers then read and change those documents in
memory, each seeing what earlier ones changed, and collect outgoing events. At commit,
every collection gets one ``bulk_write`` (in the order the changes were made; a document
stored whole several times, by :meth:`UnitOfWork.insert` or :meth:`UnitOfWork.put`, is
written once, as it ended up) and the outbox one ``insert_many``, all in one transaction,
which is run again on a transient transaction error. After the commit the outbox relay
is woken, so an event announced by a consumer goes out at once rather than at the relay's
next poll, and what was registered with :meth:`UnitOfWork.after_commit` runs (only for
the attempt that committed).

A handler that changes the same document event after event (a customer's figures) can
keep it as a domain object (:meth:`UnitOfWork.keep`, read back with
:meth:`UnitOfWork.decoded`): it is then decoded once when first read and encoded once at
commit, not at every event of the batch.

A collection a handler changes through the unit of work must not also be written by that
handler through ``session`` directly: queued writes reach the database only at commit.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

from shared.events import Event
from shared.mongo import Collection, Document, MongoClient, Session, find_in
from shared.observability import TRANSACTION_RETRIES, current_trace_context
from shared.outbox import Outbox, OutboxRelay

log = logging.getLogger(__name__)
T = TypeVar("T")
WriteOperation = InsertOne[Document] | ReplaceOne[Document] | UpdateOne | UpdateMany | DeleteOne


class _Kept:
    """A domain object kept whole: its document is encoded when read or written."""

    __slots__ = ("_document", "encode", "value")

    def __init__(self, value: Any, encode: Callable[[Any], Document]) -> None:
        self.value = value
        self.encode = encode
        self._document: Document | None = None

    def document(self) -> Document:
        if self._document is None:
            self._document = self.encode(self.value)
        return self._document


@dataclass(frozen=True)
class _Whole:
    """A document written whole at commit: an insert, or a put (replace or insert)."""

    insert: bool
    key: Hashable
    entry: Document | _Kept

    def operation(self) -> InsertOne[Document] | ReplaceOne[Document]:
        entry = self.entry
        document = entry.document() if isinstance(entry, _Kept) else entry
        if self.insert:
            return InsertOne(document)
        return ReplaceOne({"_id": self.key}, document, upsert=True)


@dataclass
class _Loaded:
    """One collection's identity map: what was read or changed (``None`` = known absent),
    and the objects decoded from it (with the entry each was decoded from)."""

    documents: dict[Hashable, Document | _Kept | None] = field(default_factory=dict)
    decoded: dict[Hashable, tuple[object, Any]] = field(default_factory=dict)


class UnitOfWork:
    """What a batch (or a request) reads and changes, written at commit in one go."""

    def __init__(self, session: Session, outbox: Outbox) -> None:
        self.session = session
        self.outbox = outbox
        self.events: list[Event[Any]] = []
        self._maps: dict[str, _Loaded] = {}
        self._collections: dict[str, Collection] = {}
        self._writes: dict[str, list[WriteOperation | _Whole]] = {}
        # Where a queued insert or whole-document put of a key sits in its collection's
        # writes, while nothing else queued since touches that key: a later put replaces it.
        self._whole: dict[tuple[str, Hashable], int] = {}
        self._after_commit: list[Callable[[], None]] = []
        # Round trips made, for tests and benchmarks.
        self.reads = 0
        self.writes = 0

    # Reading

    async def load(self, collection: Collection, ids: Iterable[Hashable]) -> None:
        """Read the documents with these ``_id``s (one ``$in`` query per
        :func:`~shared.mongo.in_chunk` keys), unless already known."""
        known = self._map(collection).documents
        wanted = list(dict.fromkeys(key for key in ids if key not in known))
        if not wanted:
            return
        if self._writes.get(collection.full_name):
            await self._flush_collection(collection.full_name)  # a read sees queued writes
        self.reads += 1
        for document in await find_in(collection, "_id", wanted, session=self.session):
            known[document["_id"]] = document
        for key in wanted:
            known.setdefault(key, None)

    async def get(self, collection: Collection, key: Hashable) -> Document | None:
        """The document as this unit of work sees it (loaded or changed); read if unknown.

        Returns a copy the caller may change; :meth:`put` it to keep the change.
        """
        document = await self.view(collection, key)
        return None if document is None else cast(Document, copy.deepcopy(document))

    async def view(self, collection: Collection, key: Hashable) -> Mapping[str, Any] | None:
        """The document as this unit of work sees it, not copied: to read only (the
        handlers' hot path reads a field or two of documents it does not change)."""
        entry = await self._entry(self._map(collection), collection, key)
        return entry.document() if isinstance(entry, _Kept) else entry

    async def decoded(
        self, collection: Collection, key: Hashable, decode: Callable[[Mapping[str, Any] | None], T]
    ) -> T:
        """The document as this unit of work sees it, as ``decode`` makes it into an object
        (``None``: there is none); decoded once while the document is unchanged, and the
        object itself when it was :meth:`keep`-ed. The object is shared: to read, or to
        replace with :meth:`keep`, never to change in place."""
        loaded = self._map(collection)
        entry = await self._entry(loaded, collection, key)
        if isinstance(entry, _Kept):
            return entry.value  # type: ignore[no-any-return]
        cached = loaded.decoded.get(key)
        if cached is not None and cached[0] is entry:
            return cached[1]  # type: ignore[no-any-return]
        value = decode(entry)
        loaded.decoded[key] = (entry, value)
        return value

    async def _entry(self, loaded: _Loaded, collection: Collection, key: Hashable) -> Any:
        """What the unit holds for ``key`` (a document, a kept object or None), read first
        when unknown (a known key costs no call to :meth:`load`: the handlers' hot path)."""
        if key not in loaded.documents:
            await self.load(collection, [key])
        return loaded.documents[key]

    def known(self, collection: Collection, key: Hashable) -> bool:
        return key in self._map(collection).documents

    # Writing (queued until commit)

    def put(self, collection: Collection, document: Document) -> None:
        """Store ``document`` whole (insert or replace by ``_id``) at commit.

        The unit of work keeps ``document`` itself (it is what will be written): the
        caller hands it over and does not change it afterwards (:meth:`get` a copy)."""
        self._whole_write(collection, document["_id"], document)

    def keep(
        self, collection: Collection, key: Hashable, value: T, encode: Callable[[T], Document]
    ) -> None:
        """Store ``value`` whole at commit as the document ``encode(value)`` (with ``_id``
        ``key``), like :meth:`put`, but encoded only then (or when the document is read):
        a later :meth:`keep` of the same key replaces it without an encoding in between.
        ``value`` is handed over and not changed afterwards."""
        self._whole_write(collection, key, _Kept(value, encode))

    def insert(self, collection: Collection, document: Document) -> None:
        """Insert ``document`` at commit; a duplicate ``_id`` fails the transaction. As
        with :meth:`put`, the document is handed over."""
        key = document["_id"]
        self._map(collection).documents[key] = document
        self._whole.pop((collection.full_name, key), None)  # a second insert fails, as it should
        self._queue(collection, _Whole(True, key, document), whole=key)

    def _whole_write(self, collection: Collection, key: Hashable, entry: Document | _Kept) -> None:
        self._map(collection).documents[key] = entry
        at = self._whole.get((collection.full_name, key))
        if at is None:
            self._queue(collection, _Whole(False, key, entry), whole=key)
            return
        # Written once, as it ended up: an insert stays an insert (a duplicate still fails).
        operations = self._writes[collection.full_name]
        queued = operations[at]
        assert isinstance(queued, _Whole)
        operations[at] = _Whole(queued.insert, key, entry)

    def delete(self, collection: Collection, key: Hashable) -> None:
        self._map(collection).documents[key] = None
        self._whole.pop((collection.full_name, key), None)
        self._queue(collection, DeleteOne({"_id": key}))

    def write(
        self, collection: Collection, operation: WriteOperation, *, key: Hashable | None = None
    ) -> None:
        """Queue an operation the identity map cannot describe (e.g. ``$inc``, ``$push``).

        The document it changes (``key``; all of the collection's when not given) is
        forgotten from the map: a later :meth:`get` of it first flushes the queued writes.
        """
        self._queue(collection, operation)
        documents = self._map(collection).documents
        if key is None:
            documents.clear()
            self._forget_whole(collection.full_name)
        else:
            documents.pop(key, None)
            self._whole.pop((collection.full_name, key), None)

    def emit(self, events: Sequence[Event[Any]]) -> None:
        """Announce ``events`` through the outbox, in this unit's transaction, each with
        the trace context current now (that of the event or request being handled)."""
        trace = current_trace_context()
        self.events.extend(
            dataclasses.replace(event, extensions={**trace, **event.extensions})
            if trace and "traceparent" not in event.extensions
            else event
            for event in events
        )

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this unit of work's transaction has committed (never for
        an attempt that was aborted and run again): work that must not happen for changes
        that might not be stored, such as sending a message they record."""
        self._after_commit.append(callback)

    def committed(self) -> None:
        """Run the :meth:`after_commit` callbacks; whoever committed the transaction calls
        it. A failing callback is logged and does not stop the others."""
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("an after-commit callback failed")

    # Commit

    async def flush(self) -> None:
        """Write what is queued: one ``bulk_write`` per collection, one outbox insert."""
        for name in list(self._writes):
            await self._flush_collection(name)
        events, self.events = self.events, []
        await self.outbox.add(self.session, events)

    @property
    def pending_writes(self) -> int:
        return sum(len(operations) for operations in self._writes.values()) + len(self.events)

    async def _flush_collection(self, name: str) -> None:
        operations = self._writes.pop(name, [])
        self._forget_whole(name)
        if operations:
            self.writes += 1
            await self._collections[name].bulk_write(
                [op.operation() if isinstance(op, _Whole) else op for op in operations],
                ordered=True,
                session=self.session,
            )

    def _map(self, collection: Collection) -> _Loaded:
        name = collection.full_name
        loaded = self._maps.get(name)
        if loaded is None:
            loaded = self._maps[name] = _Loaded()
            self._collections.setdefault(name, collection)
        return loaded

    def _queue(
        self, collection: Collection, operation: WriteOperation | _Whole, *, whole: Hashable = None
    ) -> None:
        name = collection.full_name
        self._collections.setdefault(name, collection)
        operations = self._writes.setdefault(name, [])
        if whole is not None:
            self._whole[(name, whole)] = len(operations)
        operations.append(operation)

    def _forget_whole(self, name: str) -> None:
        for entry in [entry for entry in self._whole if entry[0] == name]:
            del self._whole[entry]


@dataclass
class UnitsOfWork:
    """Runs work in a unit of work: one transaction, retried on transient errors."""

    client: MongoClient
    outbox: Outbox
    relay: OutboxRelay | None = None

    async def run(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        attempts: list[UnitOfWork] = []

        async def attempt(session: Session) -> T:
            uow = UnitOfWork(session, self.outbox)
            attempts.append(uow)
            result = await work(uow)
            await uow.flush()
            return result

        async with self.client.start_session() as session:
            result = await session.with_transaction(attempt)
        if len(attempts) > 1:
            TRANSACTION_RETRIES.inc(len(attempts) - 1)
            log.info("a unit of work ran %d times (transient transaction errors)", len(attempts))
        if self.relay is not None:
            self.relay.wake()
        attempts[-1].committed()
        return result
