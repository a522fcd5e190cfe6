"""A service under uvicorn on a free port, and Debian's chromium through Playwright: what
the browser tests (the dashboard, the portal) run on."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, async_playwright


@dataclass
class Running:
    url: str
    server: uvicorn.Server


def listening() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1, for a server to be handed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    return listener


@asynccontextmanager
async def serving(
    app: FastAPI,
    listener: socket.socket | None = None,
    *,
    grace: int,
    startup: float,
    stop: float,
) -> AsyncIterator[Running]:
    """``app`` under uvicorn (``grace`` seconds for open responses at shutdown); a start
    that hangs past ``startup`` fails, never hangs CI."""
    listener = listener or listening()
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=grace
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(startup):
            while not server.started:
                if task.done():
                    await task  # raises what stopped the start, if anything did
                    raise AssertionError(f"{app.title} did not start")
                await asyncio.sleep(0.05)
        yield Running(f"http://127.0.0.1:{listener.getsockname()[1]}", server)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, stop)
        finally:
            listener.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's headless chromium (``make browser`` installs it, or ``RAPPORT_CHROMIUM``)."""
    executable = os.environ.get("RAPPORT_CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.fail("chromium is missing: `make browser` installs it, or set RAPPORT_CHROMIUM")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
