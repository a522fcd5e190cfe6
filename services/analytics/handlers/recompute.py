"""Judging everyone: every live customer judged against the current population, and
the periodic :class:`Recomputer` that stores and announces what changed."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.analytics.domain.insights import Insight, evaluate
from services.analytics.domain.segments import Population
from services.analytics.domain.summaries import Summary
from services.analytics.handlers.context import Analytics
from services.analytics.handlers.judging import _changes, _same
from services.analytics.store import AnalyticsStore
from shared.background import Periodic
from shared.events.base import EventPayload
from shared.lease import Lease
from shared.mongo import Document
from shared.unit_of_work import UnitOfWork, UnitsOfWork

log = logging.getLogger(__name__)

RECOMPUTE_CHUNK = 500  # customers whose new judgement one transaction stores


@dataclass(frozen=True)
class Judged:
    customer_id: str
    name: str | None
    summary: Summary
    insight: Insight
    document: Document  # as read: its stored insight and version


async def judge_population(store: AnalyticsStore, now: datetime) -> tuple[Population, list[Judged]]:
    """Every live customer judged against the current population at ``now``; reads only."""
    documents = await store.live_for_judging()
    summaries = [Summary.from_document(d.get("summary")) for d in documents]
    population = Population.of(summaries)
    judged = [
        Judged(
            customer_id=document["_id"],
            name=document.get("name"),
            summary=summary,
            insight=evaluate(summary, population, document.get("registered_at"), now),
            document=document,
        )
        for document, summary in zip(documents, summaries, strict=True)
    ]
    return population, judged


@dataclass(frozen=True)
class _Judgement:
    customer_id: str
    version: Any  # as judged: stored only if the customer is still at it
    stored: Document
    payloads: list[EventPayload]


async def recompute(
    ctx: Analytics, now: datetime | None = None, chunk: int = RECOMPUTE_CHUNK
) -> int:
    """Judge every customer again at ``now``; store and announce what changed, ``chunk``
    customers a transaction (one bulk write). Returns how many customers changed. Safe
    beside a second instance: a customer written by someone else meanwhile (its version
    moved) is left to them, judged by that writer."""
    moment = now or ctx.now()
    ctx.new_buyers = 0
    population, judged = await judge_population(ctx.store, moment)
    await ctx.store.save_population(population, moment)
    ctx.judged(population)
    changes = []
    for item in judged:
        stored, payloads = _changes(item.customer_id, item.document, item.insight, moment)
        if not _same(item.document, stored):  # the usual case: nothing to store
            changes.append(
                _Judgement(item.customer_id, item.document.get("version"), stored, payloads)
            )
    units = UnitsOfWork(ctx.client, ctx.outbox, ctx.relay)
    changed = 0
    for start in range(0, len(changes), chunk):
        part = changes[start : start + chunk]
        changed += await units.run(functools.partial(_store_judgements, ctx, part, moment))
    return changed


async def _store_judgements(
    ctx: Analytics, judgements: Sequence[_Judgement], now: datetime, uow: UnitOfWork
) -> int:
    """Store the judgements of customers still as they were judged (their version read in
    one query), with one bulk write, and announce them; returns how many were stored."""
    versions = await ctx.store.live_versions(uow, [j.customer_id for j in judgements])
    stored = 0
    for judgement in judgements:
        key = judgement.customer_id
        if key not in versions or versions[key] != judgement.version:
            continue  # changed since judged: its writer judged it
        ctx.store.store_insight(uow, key, judgement.version, judgement.stored)
        uow.emit(ctx.announcements(judgement.payloads, now))
        stored += 1
    return stored


class Recomputer(Periodic):
    """Runs :func:`recompute` every ``interval`` seconds while it holds the lease, so two
    instances do not judge everyone twice; sooner when woken (the population grew), once
    ``settle`` seconds have let the rest of a burst arrive."""

    def __init__(
        self,
        ctx: Analytics,
        interval: float,
        settle: float = 5.0,
        lease_ttl: timedelta = timedelta(minutes=2),
    ) -> None:
        self.ctx = ctx
        self.owner = f"analytics-{uuid.uuid4()}"
        lease = Lease(ctx.store.state, "recompute_lease", self.owner, lease_ttl)
        super().__init__("analytics-recompute", interval, self._round, lease=lease, settle=settle)
        self._again = False

    async def claim(self) -> bool:
        return await self.holds_lease()

    async def _behind(self) -> bool:
        """Whether more customers have bought than the population last judged holds."""
        store = self.ctx.store
        return await store.buyer_count() > (await store.population()).size

    async def _round(self) -> bool:
        await recompute(self.ctx)
        # A buyer that woke us may have committed only as we read: once more.
        self._again = self.woken and not self._again and await self._behind()
        if self._again:
            self.wake()
        return False
