"""A background loop in a service process (an SLA watcher, a dispatcher, a scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``work`` every ``interval`` seconds in a task until stopped. A round that fails
    is logged and the next one tried; when ``work`` answers ``True`` (more is waiting) the
    next round starts at once."""

    def __init__(self, name: str, interval: float, work: Callable[[], Awaitable[bool]]) -> None:
        self.name = name
        self.interval = interval
        self.work = work
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            more = False
            try:
                more = await self.work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: a round failed; trying again at the next one", self.name)
            if not more:
                await asyncio.sleep(self.interval)
