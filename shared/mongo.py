"""MongoDB plumbing on pymongo's ``AsyncMongoClient``."""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from bson import Decimal128
from bson.codec_options import TypeCodec, TypeRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

if TYPE_CHECKING:
    from shared.settings import PlatformSettings

Document = dict[str, Any]
MongoClient = AsyncMongoClient[Document]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]
Session = AsyncClientSession
T = TypeVar("T")

# Keys per ``$in`` query (``RAPPORT_MONGODB_IN_CHUNK``, applied by :func:`set_in_chunk`):
# 0, the default, puts all of a read's keys in one query, as MongoDB wants. The Python
# development store (SecantusDB's ``secantusd-py``) matches ``$in`` against every key for
# every candidate, so there one query for 500 keys costs 5-10 times what ten queries of 50
# do; the dev tooling sets 50 for it (``SecantusServer.in_chunk``).
_in_chunk = 0


def set_in_chunk(size: int) -> None:
    """From now on, in this process, at most ``size`` keys per ``$in`` query (0: no limit)."""
    global _in_chunk  # noqa: PLW0603 - one store per process, configured at start-up
    if size < 0:
        raise ValueError(f"keys per $in query must be 0 (no limit) or more, not {size}")
    _in_chunk = size


def in_chunk() -> int:
    """Keys per ``$in`` query in this process (0: all in one)."""
    return _in_chunk


# IEEE 754 decimal128, as BSON stores it: 34 digits, exponents -6176..6111 (biased by 6176).
_D128_DIGITS = 34
_D128_EXPONENTS = range(-6176, 6112)
_D128_BIAS = 6176
_LOW_64 = (1 << 64) - 1
# Exact or an error: a significand of up to 34 digits is an integer here without rounding.
_D128_EXACT = decimal.Context(
    prec=_D128_DIGITS, Emax=6144, Emin=-6143, traps=[decimal.Inexact, decimal.Rounded]
)


def decimal128(value: Decimal) -> Decimal128:
    """``Decimal128(value)``, three times faster for what money is: a finite value of at most
    34 digits. bson builds the 128 bits one bit at a time (3.4 µs a value, 14 % of the
    profiles consumer's CPU with a purchase's nine amounts); here the significand and the
    biased exponent go straight into the two 64-bit halves of the BID encoding, as bson's
    own encoder places them for such values. Anything else (infinities, NaN, more digits,
    an exponent out of range, which bson rounds or clamps) goes through bson."""
    sign, digits, exponent = value.as_tuple()
    if (
        not isinstance(exponent, int)
        or len(digits) > _D128_DIGITS
        or (exponent not in _D128_EXPONENTS)
    ):
        return Decimal128(value)
    significand = abs(int(value.scaleb(-exponent, _D128_EXACT)))
    # (below 10^34 < 2^113 the significand's high part fits in 49 bits: no "11" form)
    high = (sign << 63) | ((exponent + _D128_BIAS) << 49) | (significand >> 64)
    # (bson takes the two halves as a pair; its stubs list only the decimal-tuple form)
    halves: Any = (high, significand & _LOW_64)
    return Decimal128(halves)


class _DecimalCodec(TypeCodec):
    """``Decimal`` written as BSON decimal128 and read back as ``Decimal``."""

    python_type = Decimal
    bson_type = Decimal128

    def transform_python(self, value: Any) -> Decimal128:
        return decimal128(value)

    def transform_bson(self, value: Any) -> Decimal:
        return Decimal(value.to_decimal())


_DECIMALS = TypeRegistry([_DecimalCodec()])


def with_decimals(collection: Collection) -> Collection:
    """``collection`` storing ``Decimal`` values as decimal128 and reading them back as
    ``Decimal``, at any depth of a document, during BSON's own encoding and decoding
    (no walk of each document in Python before a write and after a read)."""
    options = collection.codec_options.with_options(type_registry=_DECIMALS)
    return collection.with_options(codec_options=options)


def create_client(uri: str, app_name: str) -> MongoClient:
    """A client; it connects lazily, on first use, never at import time."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=5_000,
    )


def connect(settings: PlatformSettings, app_name: str) -> MongoClient:
    """A client of the settings' MongoDB (connecting lazily); from now on this process's
    reads by key send at most their ``mongodb_in_chunk`` keys a query (one store per
    process)."""
    set_in_chunk(settings.mongodb_in_chunk)
    return create_client(settings.mongodb_uri, app_name)


async def in_transaction(client: MongoClient, work: Callable[[Session], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction, retried by the driver on transient errors."""
    async with client.start_session() as session:
        return await session.with_transaction(work)


async def in_transaction_retrying(
    client: MongoClient,
    work: Callable[[Session], Awaitable[T]],
    *,
    retry_on: tuple[type[Exception], ...],
    attempts: int = 3,
) -> T:
    """Like :func:`in_transaction`, run again when ``work`` found that a concurrent write
    got there first (one of ``retry_on``); the last such error propagates."""
    for attempt in range(1, attempts + 1):
        try:
            return await in_transaction(client, work)
        except retry_on:
            if attempt == attempts:
                raise
    raise AssertionError("attempts must be at least 1")


def chunks(keys: Iterable[T], size: int | None = None) -> Iterator[list[T]]:
    """``keys`` (duplicates dropped, order kept) in lists of at most ``size`` (by default
    :func:`in_chunk`; 0: one list), none when there are no keys."""
    unique = list(dict.fromkeys(keys))
    size = in_chunk() if size is None else size
    step = size or len(unique) or 1
    for start in range(0, len(unique), step):
        yield unique[start : start + step]


def in_chunks(query: Mapping[str, Any], field: str | None = None) -> list[dict[str, Any]]:
    """``query`` as queries of at most :func:`in_chunk` keys in the ``$in`` of ``field``
    (by default the first condition with an ``$in`` list); as it is when it has none."""
    for name, condition in query.items():
        if field not in (None, name):
            continue
        if isinstance(condition, Mapping) and isinstance(condition.get("$in"), list):
            return [
                {**query, name: {**condition, "$in": chunk}} for chunk in chunks(condition["$in"])
            ]
    return [dict(query)]


async def find_in(
    collection: Collection,
    field: str,
    keys: Iterable[Any],
    query: Mapping[str, Any] | None = None,
    *,
    projection: Mapping[str, Any] | Sequence[str] | None = None,
    session: Session | None = None,
) -> list[Document]:
    """The documents whose ``field`` is one of ``keys`` (and that match ``query``): one
    ``$in`` query (per :func:`in_chunk` keys)."""
    found: dict[Any, Document] = {}  # (an array field can match in two chunks)
    for chunked in in_chunks({**(query or {}), field: {"$in": list(keys)}}, field):
        async for document in collection.find(chunked, projection, session=session):
            found.setdefault(document["_id"], document)
    return list(found.values())


async def update_in(
    collection: Collection,
    field: str,
    keys: Iterable[Any],
    update: Mapping[str, Any],
    query: Mapping[str, Any] | None = None,
    *,
    session: Session | None = None,
) -> int:
    """``update_many`` of the documents whose ``field`` is one of ``keys`` (and that match
    ``query``), :func:`in_chunk` keys per command; returns how many were modified."""
    modified = 0
    for chunked in in_chunks({**(query or {}), field: {"$in": list(keys)}}, field):
        result = await collection.update_many(chunked, update, session=session)
        modified += result.modified_count
    return modified


async def ping(client: MongoClient) -> None:
    await client.admin.command("ping")
