"""The analytics context: what the use cases need (the store, the outbox, the clock),
the batch in hand per unit of work, and the judged population (cached)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.analytics.batch import Batch
from services.analytics.domain.segments import Population
from services.analytics.store import AnalyticsStore
from shared.clock import Clock, to_millisecond, utc_now
from shared.events import Event, new_event
from shared.events.base import EventPayload
from shared.mongo import MongoClient, Session
from shared.outbox import Outbox, OutboxRelay
from shared.unit_of_work import UnitOfWork

SOURCE = "/rapport/analytics"
POPULATION_TTL = 2.0


@dataclass
class Analytics:
    """What the analytics use cases need: the store, the outbox and the clock."""

    client: MongoClient
    store: AnalyticsStore
    outbox: Outbox
    relay: OutboxRelay | None = None
    clock: Clock = utc_now
    announce: bool = True  # a replay rebuilds figures but announces nothing
    # Judge everyone again soon (the recomputer's wake) once the buyers have grown by this
    # fraction since the population was last judged; 0 leaves it to the periodic run.
    regrade_growth: float = 0.0
    regrade: Callable[[], None] | None = None
    new_buyers: int = 0
    # The judged population, read again at most every POPULATION_TTL (monotonic seconds):
    # it changes once a recompute, and every batch needs it.
    _population: tuple[float, Population] | None = field(default=None, init=False, repr=False)
    # What each batch in hand holds in memory, by its unit of work (gone with it).
    batches: weakref.WeakKeyDictionary[UnitOfWork, Batch] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False
    )

    def now(self) -> datetime:
        return to_millisecond(self.clock())

    def batch(self, uow: UnitOfWork) -> Batch:
        """The batch ``uow`` applies, as analytics holds it (the load steps fill it)."""
        batch = self.batches.get(uow)
        if batch is None:
            batch = self.batches[uow] = Batch(self.store)
        return batch

    async def ready(self, uow: UnitOfWork) -> Batch:
        """The batch, with what its load steps asked for read (once, by the first handler)."""
        batch = self.batch(uow)
        await batch.fetch(uow)
        return batch

    async def population(self, session: Session) -> Population:
        cached = self._population
        if cached is not None and time.monotonic() - cached[0] < POPULATION_TTL:
            return cached[1]
        population = await self.store.population(session)
        self._population = (time.monotonic(), population)
        return population

    def judged(self, population: Population) -> None:
        """The population a recompute judged everyone against, now the current one."""
        self._population = (time.monotonic(), population)

    def noticed_new_buyer(self, population: Population) -> None:
        """A customer bought for the first time: past a growth of ``regrade_growth`` of the
        judged population, its quintiles are stale, so everyone is judged again soon."""
        self.new_buyers += 1
        if self.regrade is None or self.regrade_growth <= 0:
            return
        if self.new_buyers >= max(1.0, population.size * self.regrade_growth):
            self.regrade()

    def announcements(
        self, payloads: Sequence[EventPayload], now: datetime, trace: dict[str, str] | None = None
    ) -> list[Event[Any]]:
        if not self.announce:
            return []
        return [new_event(p, source=SOURCE, time=now, extensions=trace) for p in payloads]
