"""A background loop in a service process: the outbox relay, an SLA watcher, the
notifications scheduler, the analytics re-judge.

Each round calls ``work``; a round that fails is logged and the next one tried. When
``work`` answers ``True`` (more is waiting) the next round starts at once; otherwise the
loop waits ``interval`` seconds, or less when something :meth:`~Periodic.wake`\\ s it
(then it lets ``settle`` seconds pass first, so the rest of a burst arrives). With a
:class:`~shared.lease.Lease`, a round runs only while this process holds it, so one
replica of a service does the work at a time; a stop hands the lease over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared.lease import Lease

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``work`` every ``interval`` seconds in a task until stopped (see the module's
    docstring); ``retry_after``: the pause after a failed round (``interval`` when None)."""

    def __init__(
        self,
        name: str,
        interval: float,
        work: Callable[[], Awaitable[bool]],
        *,
        lease: Lease | None = None,
        settle: float = 0.0,
        retry_after: float | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.work = work
        self.lease = lease
        self.settle = settle
        self.retry_after = retry_after
        # Whether the round under way was started by a wake (not by the interval).
        self.woken = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something is waiting: start the next round now rather than at the interval."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Cancel until it ends: a round may swallow one cancellation (a library that
            # catches it), never every one.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        if self.lease is not None:
            await self.lease.release()

    async def holds_lease(self) -> bool:
        """Take or renew the lease (True without one)."""
        return self.lease is None or await self.lease.acquire()

    async def _run(self) -> None:
        while True:
            more = False
            pause = self.interval
            try:
                if await self.holds_lease():
                    more = await self.work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: a round failed; trying again at the next one", self.name)
                pause = self.interval if self.retry_after is None else self.retry_after
            if more:
                self.woken = False
                continue
            # (asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a stop's
            # cancellation that lands as the wake-up does, and the loop would run on)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            self.woken = self._wake.is_set()
            if self.woken and self.settle:
                await asyncio.sleep(min(self.settle, self.interval))
            self._wake.clear()
