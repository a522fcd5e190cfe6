"""The dashboard at ``/``: a manager opens it with a token and sees the KPIs, charts with
data, the churn-risk list and recent notifications, which update without a reload when
new events arrive (server-sent events); the stream needs a staff token and ends when the
client leaves or the service stops.

The service runs for real (worker, API, dashboard) under uvicorn on a free port, fed on
Kafka; the page is driven in Debian's headless chromium through Playwright.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, expect

from devstack.up import Console, Stack, UpConfig, banner
from services.analytics import dashboard
from services.analytics.bootstrap import create_app
from services.analytics.dashboard import STATIC, Pulse
from services.analytics.handlers.context import Analytics
from services.analytics.settings import AnalyticsSettings
from shared.auth import Role, TokenService
from shared.kafka import AiokafkaPublisher
from shared.topics import TopicNames
from tests.analytics.conftest import (
    Api,
    acknowledged,
    ago,
    feedback,
    notified,
    opened,
    purchase,
    registered,
    resolved,
    returned,
)
from tests.service_harness import DrivenClock, eventually
from tests.support import web

# Waiting for the worker and the page; generous because the test machine is shared.
WAIT_MS = 30_000
STARTUP_SECONDS = 120
STOP_SECONDS = 90  # the 30 s grace period for open responses, then the runtime's stop
ACCENT_BLUE = (37, 99, 235)  # the revenue bars' colour (--accent in dashboard.css)
SLA_GREEN = (21, 128, 61)  # a target met at least 90% of the time (--good)


@dataclass
class Served:
    """The analytics service over real HTTP, with the test's handle on it."""

    url: str
    app: FastAPI
    api: Api
    server: uvicorn.Server

    def token(self, *roles: Role) -> str:
        return self.api.tokens.mint("manager", set(roles or {Role.AGENT}))


@asynccontextmanager
async def serving(
    settings: AnalyticsSettings,
    clock: DrivenClock,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
) -> AsyncIterator[Served]:
    app = create_app(settings)
    analytics: Analytics = app.state.analytics
    analytics.clock = clock
    # A generous grace period: a stream that did not end on shutdown would show as a cut
    # response (and a slow test), not pass unnoticed.
    async with (
        web.serving(app, grace=30, startup=STARTUP_SECONDS, stop=STOP_SECONDS) as running,
        httpx.AsyncClient(base_url=running.url, timeout=30) as http,
    ):
        api = Api(http, TokenService(settings.secret), analytics, clock, publisher, topics)
        yield Served(running.url, app, api, running.server)


@pytest.fixture
async def served(
    analytics_settings: AnalyticsSettings,
    clock: DrivenClock,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
) -> AsyncIterator[Served]:
    async with serving(analytics_settings, clock, publisher, topics) as service:
        yield service


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with web.chromium() as launched:
        yield launched


@asynccontextmanager
async def opened_page(browser: Browser, url: str) -> AsyncIterator[Page]:
    context = await browser.new_context(
        locale="en-US", timezone_id="UTC", viewport={"width": 1400, "height": 1000}
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(url)
        yield page
        assert errors == [], f"the page raised: {errors}"
    finally:
        await context.close()


def the_day() -> list[Any]:
    """A day of a shop: two sales, a return, a complaint handled in time with feedback,
    two notifications, and a regular customer who stopped coming and complained."""
    return [
        registered("c-ana", "Ana Horvat", ago(hours=5)),
        registered("c-risk", "Mira Kovač", ago(days=60)),
        purchase("c-ana", "p1", ago(hours=3), [("SKU-TEA", "tea", "19.90"), ("CUP", "cups", "30")]),
        purchase("c-ana", "p2", ago(hours=2), [("SKU-TEA", "tea", "29.70")]),
        returned("c-ana", "r1", "p2", "29.70", ago(hours=1)),
        opened("c-ana", "k1", ago(hours=4)),
        acknowledged("c-ana", "k1", ago(hours=3)),
        resolved("c-ana", "k1", ago(hours=2)),
        feedback("c-ana", "k1", 4, 9, ago(hours=1)),
        notified("sent", "c-ana", "n1", ago(minutes=30)),
        notified("suppressed", "c-ana", "n2", ago(minutes=20)),
        # Every 10 days, the last 20 days ago, and a complaint still open: high churn risk.
        purchase("c-risk", "o1", ago(days=40)),
        purchase("c-risk", "o2", ago(days=30)),
        purchase("c-risk", "o3", ago(days=20)),
        opened("c-risk", "k2", ago(days=19, hours=1)),
    ]


async def chart_data(page: Page, canvas_id: str) -> list[float]:
    data = await page.evaluate(
        "(id) => Chart.getChart(id).data.datasets[0].data.map((v) => v ?? 0)", canvas_id
    )
    return [float(value) for value in data]


async def drawn(page: Page, canvas_id: str, rgb: tuple[int, int, int] | None = None) -> None:
    """Wait until the canvas has painted pixels (in ``rgb``, when given): charts animate."""

    async def painted() -> bool:
        return await painted_pixels(page, canvas_id, rgb) > 0

    await eventually(painted, timeout=WAIT_MS / 1000, message=f"{canvas_id} stayed blank")


async def painted_pixels(page: Page, canvas_id: str, rgb: tuple[int, int, int] | None) -> int:
    """How many pixels of the canvas are painted (in ``rgb``, when given)."""
    return int(
        await page.evaluate(
            """([id, rgb]) => {
                const canvas = document.getElementById(id);
                const pixels = canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                let count = 0;
                for (let i = 0; i < pixels.length; i += 4) {
                    if (pixels[i + 3] === 0) continue;
                    if (!rgb || (pixels[i] === rgb[0] && pixels[i + 1] === rgb[1]
                                 && pixels[i + 2] === rgb[2])) count += 1;
                }
                return count;
            }""",
            [canvas_id, list(rgb) if rgb else None],
        )
    )


async def test_a_manager_sees_the_figures_and_charts_and_they_update_without_a_reload(
    served: Served, browser: Browser
) -> None:
    await served.api.feed(*the_day())

    async with opened_page(browser, f"{served.url}/#token={served.token()}") as page:
        kpi = page.locator
        await expect(kpi("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        await expect(kpi("#kpi-purchases")).to_have_text("2", timeout=WAIT_MS)
        assert page.url == f"{served.url}/", "the token stays out of the address bar"
        await expect(kpi("#kpi-revenue")).to_have_text("€79.60")
        await expect(kpi("#kpi-revenue-detail")).to_have_text("€29.70 refunded")
        await expect(kpi("#kpi-aov")).to_have_text("€39.80")
        await expect(kpi("#kpi-returns")).to_have_text("50%")
        await expect(kpi("#kpi-new-customers")).to_have_text("1")
        await expect(kpi("#kpi-complaints")).to_contain_text("1")
        await expect(kpi("#kpi-complaints-detail")).to_have_text("1 resolved")
        await expect(kpi("#kpi-resolution-time")).to_have_text("2 h")
        await expect(kpi("#kpi-first-response-sla")).to_have_text("100%")
        await expect(kpi("#kpi-resolution-sla")).to_have_text("100%")
        await expect(kpi("#kpi-csat")).to_have_text("4.0/ 5")
        await expect(kpi("#kpi-nps")).to_have_text("+100")
        await expect(kpi("#kpi-notifications")).to_have_text("1")
        await expect(kpi("#kpi-notifications-detail")).to_have_text("0 failed · 1 suppressed")
        await expect(kpi("#updated")).to_contain_text("Updated")
        await expect(kpi("#no-data")).to_be_hidden()

        # The charts are drawn with the figures.
        assert sum(await chart_data(page, "revenue-chart")) == pytest.approx(79.60)
        await drawn(page, "revenue-chart", ACCENT_BLUE)
        segments = await served.api.get("/segments")
        assert sum(await chart_data(page, "segments-chart")) == segments["total"] > 0
        await drawn(page, "segments-chart")
        assert await chart_data(page, "sla-chart") == [100.0, 100.0]
        await drawn(page, "sla-chart", SLA_GREEN)

        # The customer at risk, with what gave them away; the latest notifications.
        at_risk = kpi('#churn-rows tr[data-customer="c-risk"]')
        await expect(at_risk).to_contain_text("Mira Kovač")
        await expect(at_risk).to_contain_text("High")
        await expect(at_risk.locator(".reasons li")).to_have_text(
            [
                "overdue: 20.0 days since the last purchase, usually every 10.0 days",
                "unresolved complaint: 1 open",
            ]
        )
        await expect(kpi("#notification-list li")).to_have_count(2)
        await expect(kpi("#notification-list li").first).to_contain_text("Suppressed")
        await expect(kpi("#notification-list li").first).to_contain_text("to Ana Horvat")

        # A new sale arrives on Kafka: the page shows it without being reloaded.
        await page.evaluate("window.sameDocument = true")
        await served.api.feed(purchase("c-ana", "p3", ago(minutes=10), [("T", "tea", "20.40")]))
        await expect(kpi("#kpi-purchases")).to_have_text("3", timeout=WAIT_MS)
        await expect(kpi("#kpi-revenue")).to_have_text("€100.00")
        assert sum(await chart_data(page, "revenue-chart")) == pytest.approx(100.00)
        assert await page.evaluate("window.sameDocument") is True

        # Another window: the last hour has only the newest sale, per minute.
        await kpi("button[data-window='1h']").click()
        await expect(kpi("button[data-window='1h']")).to_have_attribute("aria-pressed", "true")
        await expect(kpi("#kpi-purchases")).to_have_text("1", timeout=WAIT_MS)
        await expect(kpi("#revenue-note")).to_have_text("Per minute · EUR")
        assert len(await chart_data(page, "revenue-chart")) == 61
        if screenshot := os.environ.get("RAPPORT_DASHBOARD_SCREENSHOT"):
            await page.screenshot(path=screenshot, full_page=True)

        # The service stops: the page says it is reconnecting.
        served.server.should_exit = True
        await expect(kpi("#live")).to_have_attribute("data-state", "retrying", timeout=WAIT_MS)
        await expect(kpi("#live-text")).to_contain_text("Reconnecting")


async def test_without_a_token_the_page_asks_for_one_and_explains_a_refusal(
    served: Served, browser: Browser
) -> None:
    async with opened_page(browser, f"{served.url}/") as page:
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#dashboard")).to_be_hidden()
        await expect(page.locator("#token")).to_be_focused()

        await page.locator("#token").fill("not-a-token")
        await page.get_by_role("button", name="Open the dashboard").click()
        await expect(page.locator("#signin-message")).to_contain_text("refused", timeout=WAIT_MS)
        await expect(page.locator("#dashboard")).to_be_hidden()

        customer = served.api.tokens.mint("c1", {Role.CUSTOMER}, customer_id="c-ana")
        await page.locator("#token").fill(customer)
        await page.get_by_role("button", name="Open the dashboard").click()
        await expect(page.locator("#signin-message")).to_contain_text("admin or agent role")

        await page.locator("#token").fill(served.token(Role.ADMIN))
        await page.get_by_role("button", name="Open the dashboard").click()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        await expect(page.locator("#no-data")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#no-data")).to_contain_text("make demo")
        await expect(page.locator("#kpi-purchases")).to_have_text("0")

        # The token lives in the tab: a reload keeps the manager signed in.
        await page.reload()
        await expect(page.locator("#dashboard")).to_be_visible()
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator("#signin")).to_be_visible()


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a text/event-stream answer (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields:
                yield {"event": fields.get("event"), "data": json.loads(fields.get("data", "null"))}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def next_event(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The next event; heartbeats would keep a missing one waiting for ever."""
    return await asyncio.wait_for(anext(events), WAIT_MS / 1000)


async def test_the_stream_tells_of_changes_and_ends_when_the_client_or_the_service_goes(
    served: Served,
) -> None:
    http = served.api.http
    headers = {"Authorization": f"Bearer {served.token()}"}
    async with http.stream("GET", "/api/v1/dashboard/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        first = await next_event(events)
        assert first["event"] == "update"
        assert first["data"]["reason"] == "connected"
        await served.api.feed(registered("c-new", "Nova Novak", ago(minutes=1)))
        change = await next_event(events)
        assert change["event"] == "update"
        assert change["data"]["reason"] == "changed"

    pulse: Pulse = served.app.state.dashboard_pulse

    async def nobody_listens() -> bool:
        return pulse.listeners == 0

    await eventually(nobody_listens, timeout=30, message="a closed stream kept listening")

    async with http.stream("GET", "/api/v1/dashboard/stream", headers=headers) as response:
        events = sse_events(response)
        assert (await next_event(events))["data"]["reason"] == "connected"
        served.server.should_exit = True
        # The answer ends properly (a cut one would raise here) instead of being held open.
        async with asyncio.timeout(STOP_SECONDS):
            rest = [event async for event in events]
        assert all(event["event"] == "update" for event in rest)


async def test_the_page_is_public_and_the_stream_needs_a_staff_token(served: Served) -> None:
    http = served.api.http
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (STATIC / "index.html").read_bytes()  # no data in it
    assert "script-src 'self'" in page.headers["content-security-policy"]
    library = await http.get("/static/vendor/chart.umd.min.js")
    assert library.status_code == 200
    assert b"Chart.js v4" in library.content[:200]

    refused = await http.get("/api/v1/dashboard/stream")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    customer = served.api.tokens.mint("c1", {Role.CUSTOMER}, customer_id="c-ana")
    forbidden = await http.get(
        "/api/v1/dashboard/stream", headers={"Authorization": f"Bearer {customer}"}
    )
    assert forbidden.status_code == 403

    paths = (await http.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert "/api/v1/dashboard/stream" not in paths


def test_make_up_prints_a_dashboard_link_that_signs_in() -> None:
    config = UpConfig.from_env(
        {
            "RAPPORT_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
            "RAPPORT_MONGODB_URI": "mongodb://127.0.0.1:27017",
            "RAPPORT_NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "RAPPORT_ADMIN_TOKEN": "s3cret/+token",
        }
    )
    stack = Stack(config, Console(io.StringIO()), threading.Event())
    stack.services = [
        SimpleNamespace(name=name, url=f"http://127.0.0.1:{port}")  # type: ignore[misc]
        for name, port in config.http_ports.items()
    ]
    printed = banner(stack)
    assert "http://127.0.0.1:8004/#token=s3cret%2F%2Btoken" in printed


async def test_one_watch_serves_every_stream_while_any_is_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dashboard, "OPEN_TIMEOUT_SECONDS", 0.05)
    opening = asyncio.Event()
    watches: list[str] = []

    async def watch(pulse: Pulse) -> None:
        watches.append("started")
        try:
            await opening.wait()  # the database is slow to open the change stream
            pulse.watching()
            await asyncio.Event().wait()
        finally:
            watches.append("stopped")

    pulse = Pulse(watch)
    async with pulse.listen() as first, pulse.listen() as second:
        assert watches == ["started"]
        assert not first.is_set()
        opening.set()  # changes before the opening may have been missed: tell them

        async def both_told() -> bool:
            return first.is_set() and second.is_set()

        await eventually(both_told, timeout=30, message="a late opening was not told")
        first.clear()
        pulse.changed()
        assert first.is_set()
    assert watches == ["started", "stopped"]
    assert pulse.listeners == 0
