"""The stream worker: a service's consumer group, one unit of work per poll.

It polls the service's topics (up to ``batch_size`` records, lingering ``linger`` seconds
for more once the first arrived), hands the batch to :class:`EventConsumer` and commits
the batch's offsets only after that returned, that is after its transaction committed.
Nothing is acknowledged that was not applied:

- a stop finishes the batch in hand (within ``stop_timeout``), commits it, and leaves the
  group at once so its partitions move to the other replicas; past the timeout the batch
  is abandoned: its transaction is aborted and its offsets stay uncommitted;
- a rebalance waits for the batch in hand to be applied and committed before the
  partitions are given up;
- a crash commits nothing: the records come again, and the markers of what was applied
  make the repetition a no-op.

The worker connects in the background with backoff, so a service whose broker is not up
yet still serves HTTP, and ``/readyz`` says what the worker is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared.consumer import EventConsumer, IncomingMessage

log = logging.getLogger(__name__)

POLL_TIMEOUT = 0.5


class WorkerState(StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONSUMING = "consuming"


class StreamWorker:
    """Feeds one consumer group's records to an :class:`EventConsumer`, a batch a poll."""

    def __init__(
        self,
        consumer: EventConsumer,
        *,
        bootstrap_servers: Sequence[str],
        group_id: str,
        topics: Sequence[str],
        batch_size: int = 500,
        linger: float = 0.05,
        session_timeout_ms: int = 10_000,
        stop_timeout: float = 30.0,
    ) -> None:
        self.consumer = consumer
        self.bootstrap_servers = list(bootstrap_servers)
        self.group_id = group_id
        self.topics = list(topics)
        self.batch_size = batch_size
        self.linger = linger
        self.session_timeout_ms = session_timeout_ms
        self.stop_timeout = stop_timeout
        self.state = WorkerState.STOPPED
        self.applied_batches = 0
        self._stopping = asyncio.Event()
        self._in_hand = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._kafka: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if not self.topics:
            return
        self._stopping.clear()
        self.state = WorkerState.CONNECTING
        self._task = asyncio.create_task(self._run(), name=f"{self.group_id}-stream")

    async def stop(self) -> None:
        """Finish the batch in hand (or abandon it past ``stop_timeout``), then leave."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.stop_timeout)
        except TimeoutError:
            log.warning(
                "the batch in hand did not finish within %s s; abandoning it uncommitted",
                self.stop_timeout,
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = WorkerState.STOPPED

    def readiness(self) -> str:
        return "ok" if self.state is WorkerState.CONSUMING or not self.topics else self.state

    async def _run(self) -> None:
        kafka = await self._connect()
        if kafka is None:
            return
        try:
            delay = 0.5
            while not self._stopping.is_set():
                try:
                    async with self._in_hand:
                        await self._one_batch(kafka)
                    delay = 0.5
                except Exception:
                    log.exception("a batch could not be handled; it comes again in %.1f s", delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, 10.0)
        finally:
            self.state = WorkerState.STOPPED
            self._kafka = None
            # Leaves the group at once (its partitions move now, not at the session
            # timeout); auto-commit is off, so nothing unapplied is committed.
            with contextlib.suppress(Exception):
                await asyncio.shield(kafka.stop())

    async def _connect(self) -> AIOKafkaConsumer | None:
        delay = 0.5
        while not self._stopping.is_set():
            kafka = AIOKafkaConsumer(
                *self.topics,
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                client_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.batch_size,
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=max(self.session_timeout_ms // 4, 100),
                rebalance_timeout_ms=max(int(self.stop_timeout * 1000), self.session_timeout_ms),
            )
            kafka.subscribe(self.topics, listener=_FinishBeforeRevoke(self._in_hand))
            try:
                await kafka.start()
            except KafkaError as error:
                log.warning("cannot reach Kafka (%s); retrying in %.1f s", error, delay)
                with contextlib.suppress(Exception):
                    await kafka.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 10.0)
                continue
            self._kafka = kafka
            self.state = WorkerState.CONSUMING
            return kafka
        return None

    async def _one_batch(self, kafka: AIOKafkaConsumer) -> None:
        records = await self._poll(kafka)
        if not records:
            return
        try:
            await self.consumer.handle_batch([IncomingMessage.of(record) for record in records])
        except Exception:
            self._rewind(kafka, records)  # not applied, so not acknowledged: read it again
            raise
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        try:
            await kafka.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved meanwhile: the batch is stored, its markers make the
            # new owner's repetition a no-op.
            log.warning("offsets of an applied batch not committed: %s", error)
        self.applied_batches += 1

    @staticmethod
    def _rewind(kafka: AIOKafkaConsumer, records: Sequence[Any]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in records:
            first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        for partition, offset in first.items():
            with contextlib.suppress(IllegalStateError):  # no longer ours: fine
                kafka.seek(partition, offset)

    async def _poll(self, kafka: AIOKafkaConsumer) -> list[Any]:
        """What one poll gives, topped up for ``linger`` seconds, up to ``batch_size``."""
        records: list[Any] = []
        wait = POLL_TIMEOUT
        deadline: float | None = None
        while len(records) < self.batch_size and not self._stopping.is_set():
            fetched = await kafka.getmany(
                timeout_ms=int(wait * 1000), max_records=self.batch_size - len(records)
            )
            for partition_records in fetched.values():
                records.extend(partition_records)
            if not records:
                return records
            if deadline is None:
                deadline = time.monotonic() + self.linger
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
        return records


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are given up only once the batch in hand is applied and committed."""

    def __init__(self, in_hand: asyncio.Lock) -> None:
        self.in_hand = in_hand

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.in_hand:
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
