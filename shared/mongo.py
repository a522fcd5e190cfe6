"""MongoDB plumbing on pymongo's ``AsyncMongoClient``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
MongoClient = AsyncMongoClient[Document]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]
Session = AsyncClientSession
T = TypeVar("T")


def create_client(uri: str, app_name: str) -> MongoClient:
    """A client; it connects lazily, on first use, never at import time."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=5_000,
    )


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


async def ping(client: MongoClient) -> None:
    await client.admin.command("ping")
