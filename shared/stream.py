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

While a batch's transaction is in flight the worker reads the next batch ahead: it polls,
decodes and checks the markers (no write). That batch is not in hand: a stop or a
failure leaves it unapplied and unacknowledged (the failure rewinds to it), and after a
rebalance it is dropped and its partitions read again from where they stand.

The worker connects in the background with backoff, so a service whose broker is not up
yet still serves HTTP, and ``/readyz`` says what the worker is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared.consumer import EventConsumer, IncomingMessage, Prepared

log = logging.getLogger(__name__)

POLL_TIMEOUT = 0.5


@dataclass(frozen=True)
class _Read:
    """A batch read (and prepared) ahead of its turn."""

    records: list[Any]
    prepared: Prepared | None  # None: nothing came
    rebalances: int  # the worker's rebalance count when the read began


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
        self._rebalances = 0  # times partitions were given up
        self._task: asyncio.Task[None] | None = None
        self._ahead: asyncio.Task[_Read] | None = None  # the next batch, read ahead
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
            ahead, self._ahead = self._ahead, None
            if ahead is not None:  # read ahead, never applied: nothing of it is committed
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
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
            kafka.subscribe(self.topics, listener=_FinishBeforeRevoke(self))
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
        """Apply the batch read ahead (or read one now) and commit its offsets, while the
        next batch is read ahead."""
        ahead, self._ahead = self._ahead, None
        read = await self._take(kafka, ahead)
        if read.prepared is None:
            return
        if not self._stopping.is_set():
            self._ahead = asyncio.create_task(self._read(kafka), name=f"{self.group_id}-ahead")
        try:
            await self.consumer.apply(read.prepared)
        except BaseException:
            # Not applied, so not acknowledged: read it again, and what was read after it.
            following, self._ahead = self._ahead, None
            self._rewind(kafka, read.records + await _finished(following))
            raise
        offsets: dict[TopicPartition, int] = {}
        for record in read.records:
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        try:
            await kafka.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved meanwhile: the batch is stored, its markers make the
            # new owner's repetition a no-op.
            log.warning("offsets of an applied batch not committed: %s", error)
        self.applied_batches += 1

    async def give_up_partitions(self) -> None:
        """A rebalance takes partitions away: once the batch in hand is applied and
        committed; what was read ahead is not read on from."""
        async with self._in_hand:
            self._rebalances += 1

    async def _take(self, kafka: AIOKafkaConsumer, ahead: asyncio.Task[_Read] | None) -> _Read:
        """The batch read ahead, unless partitions were given up since it began: then its
        records are read again from where their partitions stand, with the rest."""
        if ahead is None:
            return await self._read(kafka)
        read = await ahead
        if read.rebalances == self._rebalances:
            return read
        self._rewind(kafka, read.records)
        return await self._read(kafka)

    async def _read(self, kafka: AIOKafkaConsumer) -> _Read:
        rebalances = self._rebalances
        records = await self._poll(kafka)
        if not records:
            return _Read(records, None, rebalances)
        try:
            prepared = await self.consumer.prepare([IncomingMessage.of(r) for r in records])
        except BaseException:
            self._rewind(kafka, records)
            raise
        return _Read(records, prepared, rebalances)

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

    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.give_up_partitions()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _finished(read: asyncio.Task[_Read] | None) -> list[Any]:
    """The records a read ahead took, once it is over (none if it failed or was
    cancelled: it rewound what it took)."""
    if read is None:
        return []
    try:
        return (await asyncio.shield(read)).records
    except asyncio.CancelledError:
        read.cancel()  # (this task is being cancelled: the read goes too, and rewinds)
        raise
    except Exception:
        return []
