"""What the pipeline benchmark's baselines share: a plain aiokafka consumer of the purchases
that hands each poll to :meth:`RawLoop.apply` and then commits its offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.mongo import Database, MongoClient


class RawLoop:
    """Polls up to 500 records, applies them, commits their offsets; until stopped or a
    failure (kept in ``failure``, the measurement's reason)."""

    collections: tuple[str, ...] = ()  # created in ``db`` before the first poll

    def __init__(
        self,
        bootstrap: list[str],
        topic: str,
        group: str,
        client: MongoClient,
        db: Database,
        *,
        client_id: str,
    ) -> None:
        self.client = client
        self.db = db
        self.kafka: Any = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
        )
        self.task: asyncio.Task[None] | None = None
        self.failure: str | None = None

    async def start(self) -> None:
        existing = await self.db.list_collection_names()
        for name in self.collections:
            if name not in existing:
                await self.db.create_collection(name)
        await self.kafka.start()
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        try:
            while True:
                fetched = await self.kafka.getmany(timeout_ms=500, max_records=500)
                records = [record for part in fetched.values() for record in part]
                if not records:
                    continue
                await self.apply(records)
                offsets: dict[TopicPartition, int] = {}
                for record in records:
                    offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
                await self.kafka.commit(offsets)
        except Exception as error:  # reported as the measurement's failure
            self.failure = f"failed: {type(error).__name__}: {error}"

    async def apply(self, records: Sequence[Any]) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.kafka.stop()
