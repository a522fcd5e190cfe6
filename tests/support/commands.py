"""Counting a MongoDB client's round trips: what a batch reads and writes, by collection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo import AsyncMongoClient, monitoring

from shared.mongo import MongoClient


class CommandCounter(monitoring.CommandListener):
    """The commands a client sends (its round trips), with the collection each names."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def finds(self, *leaving_out: str) -> list[str]:
        """The collections read, sorted (``leaving_out`` these)."""
        return sorted(self.finds_in_order(*leaving_out))

    def finds_in_order(self, *leaving_out: str) -> list[str]:
        return [
            collection
            for name, collection in self.commands
            if name == "find" and collection not in leaving_out
        ]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.commands.append((event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@asynccontextmanager
async def counted_client(uri: str) -> AsyncIterator[tuple[MongoClient, CommandCounter]]:
    """A client as the services make it, whose commands a :class:`CommandCounter` counts."""
    counter = CommandCounter()
    client: MongoClient = AsyncMongoClient(
        uri, tz_aware=True, uuidRepresentation="standard", event_listeners=[counter]
    )
    try:
        yield client, counter
    finally:
        await client.close()
