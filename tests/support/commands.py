"""Counting a MongoDB client's round trips: what a batch reads and writes, by collection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo import AsyncMongoClient, monitoring

from shared.mongo import MongoClient, in_chunk


def in_queries(keys: int) -> int:
    """The ``$in`` queries a read of ``keys`` distinct keys sends in this process (one,
    unless ``RAPPORT_MONGODB_IN_CHUNK`` limits the keys of one)."""
    size = in_chunk()
    return -(-keys // size) if size else 1


class CommandCounter(monitoring.CommandListener):
    """The commands a client sends (its round trips), with the collection each names."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []
        # The write commands: (command, collection, how many documents it carried).
        self.writes: list[tuple[str, str, int]] = []

    def finds(self, *leaving_out: str) -> list[str]:
        """The collections read, sorted (``leaving_out`` these)."""
        return sorted(self.finds_in_order(*leaving_out))

    def finds_in_order(self, *leaving_out: str) -> list[str]:
        return [
            collection
            for name, collection in self.commands
            if name == "find" and collection not in leaving_out
        ]

    def written(self, collection: str) -> list[tuple[str, int]]:
        """The write commands sent to ``collection``: (command, documents it carried)."""
        return [(name, size) for name, target, size in self.writes if target == collection]

    def clear(self) -> None:
        self.commands.clear()
        self.writes.clear()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        target = command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        self.commands.append((event.command_name, collection))
        if event.command_name in ("insert", "update", "delete"):
            size = sum(len(command.get(part, ())) for part in ("documents", "updates", "deletes"))
            self.writes.append((event.command_name, collection, size))

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
