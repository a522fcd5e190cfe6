"""The dashboard: a page at ``/`` for managers, and the stream that keeps it live.

The page holds no data. It asks the JSON API (``/api/v1/kpis`` and friends) with the
access token the manager gives it, and asks again whenever ``GET /api/v1/dashboard/stream``
(server-sent events) says that the figures changed. Browsers' ``EventSource`` cannot send
an ``Authorization`` header, so the page reads the stream with ``fetch()``.

Changes are noticed with one MongoDB change stream on the analytics database, opened
while at least one dashboard is open and shared by all of them. It reports the inserts
that mean new figures: an applied event's marker (written in the same transaction as the
figures it changed) and an announced segment or churn-risk change (also written by the
periodic re-judging of every customer). Rapport needs transactions, so its MongoDB is a
replica set, where change streams work; polling a fingerprint instead would cost a query
a second per service even when nothing happens. Figures that move only with time (rolling
windows) are refetched by the page every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pymongo.errors import PyMongoError

from shared.auth import StaffPrincipal
from shared.mongo import Database
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# At most one update a second per stream; changes meanwhile are told in the next one.
THROTTLE_SECONDS = 1.0
# How often an idle stream looks whether the server is stopping. FastAPI itself sends a
# heartbeat comment after 15 s without an event.
CHECK_SECONDS = 0.5
# A new stream waits this long at most for the change stream to open before it says
# "connected" (so that nothing between the page's first fetch and the watch is missed).
OPEN_TIMEOUT_SECONDS = 2.0
RETRY_SECONDS = (0.5, 30.0)

# The page's own headers: it runs only its own scripts and talks only to its own origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

Watch = Callable[["Pulse"], Coroutine[Any, Any, None]]


class Pulse:
    """Tells every open dashboard stream that the figures changed.

    ``watch`` runs while at least one stream listens (it is cancelled when the last one
    leaves); it calls :meth:`watching` once it sees every change and :meth:`changed` on
    each change.
    """

    def __init__(self, watch: Watch) -> None:
        self._watch = watch
        self._listeners: set[asyncio.Event] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        self._late = False
        self.closed = False

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Event]:
        """An event set on each change (clear it after waking up)."""
        changed = asyncio.Event()
        self._listeners.add(changed)
        try:
            if self._watcher is None or self._watcher.done():
                self._open.clear()
                self._late = False
                self._watcher = asyncio.create_task(self._watch(self), name="dashboard-pulse")
            try:
                await asyncio.wait_for(self._open.wait(), OPEN_TIMEOUT_SECONDS)
            except TimeoutError:
                self._late = True  # so the opening, when it comes, counts as a change
            yield changed
        finally:
            self._listeners.discard(changed)
            if not self._listeners:
                await self._stop_watching()

    @property
    def listeners(self) -> int:
        """How many streams are open."""
        return len(self._listeners)

    def watching(self) -> None:
        self._open.set()
        if self._late:
            self._late = False
            self.changed()

    def changed(self) -> None:
        for listener in self._listeners:
            listener.set()

    async def close(self) -> None:
        """The service is stopping: open streams end."""
        self.closed = True
        await self._stop_watching()

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def inserts_into(db: Database, collections: Sequence[str]) -> Watch:
    """Watch ``db`` for inserts into ``collections``, reopening the change stream after a
    failure (and then telling a change: one may have been missed meanwhile)."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"operationType": "insert", "ns.coll": {"$in": list(collections)}}},
        {"$project": {"_id": 1}},
    ]

    async def watch(pulse: Pulse) -> None:
        delay, longest = RETRY_SECONDS
        reopened = False
        while True:
            try:
                async with await db.watch(pipeline) as stream:
                    pulse.watching()
                    if reopened:
                        pulse.changed()
                    delay = RETRY_SECONDS[0]
                    async for _ in stream:
                        pulse.changed()
            except PyMongoError as error:
                log.warning("dashboard cannot watch the analytics database: %s", error)
            reopened = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    return watch


def server_is_stopping() -> bool:
    """Whether uvicorn has begun a graceful shutdown.

    Uvicorn waits for open responses to finish before it runs the app's shutdown, so a
    stream that waited for that would hold every stop up for the whole grace period.
    Uvicorn's signal handler is a method of its server, whose ``should_exit`` flag is the
    first sign of a stop (sse-starlette makes the same check).
    """
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return getattr(server, "should_exit", False) is True


def get_pulse(request: Request) -> Pulse:
    """The app's pulse, made on first use from the runtime's database."""
    state = request.app.state
    pulse: Pulse | None = getattr(state, "dashboard_pulse", None)
    if pulse is None:
        runtime: ServiceRuntime = state.runtime
        watched = [runtime.consumer.processed.name, runtime.outbox.collection.name]
        pulse = Pulse(inserts_into(runtime.db, watched))
        runtime.shutdown.append(pulse.close)
        state.dashboard_pulse = pulse
    return pulse


PulseDep = Annotated[Pulse, Depends(get_pulse)]

router = APIRouter()
router.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The dashboard page; it holds no data, so it needs no token."""
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


def _update(reason: str) -> ServerSentEvent:
    return ServerSentEvent(
        event="update", data={"reason": reason, "at": datetime.now(UTC).isoformat()}
    )


# Not in the OpenAPI document: the answer never ends, which would hang a fuzzer or the
# docs page's "try it out". The README documents it with the dashboard.
@router.get("/api/v1/dashboard/stream", response_class=EventSourceResponse, include_in_schema=False)
async def stream(_: StaffPrincipal, pulse: PulseDep) -> AsyncIterator[ServerSentEvent]:
    """``update`` when the figures changed (at most one a second), the first on connecting.

    The stream ends when the client goes away (the request is cancelled) or the service
    stops.
    """
    async with pulse.listen() as changed:
        yield _update("connected")
        while not (pulse.closed or server_is_stopping()):
            # (asyncio.timeout: on Python 3.11 wait_for can swallow the request's
            # cancellation when it lands as the change does)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_SECONDS):
                    await changed.wait()
            if changed.is_set():
                changed.clear()
                yield _update("changed")
                await asyncio.sleep(THROTTLE_SECONDS)
