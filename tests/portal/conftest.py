"""The customer portal for real: profiles (which serves the page and signs customers in),
complaints (help centre, support requests) and notifications (the sign-in e-mail, the
inbox) under uvicorn on free ports, on the session's broker, store and SMTP sink, each
with a database of its own and all on topics of their own; the page driven in Debian's
headless chromium through Playwright, as the dashboard test does.

One stack serves the whole folder: starting three services (their consumer groups
joining) costs more than all the journeys together. Each journey brings its own customer
(its own e-mail address), so journeys neither see nor disturb each other, and neither do
other test sessions on the same broker and store.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, ViewportSize, expect

from devstack.smtp import ReceivedMessage, SmtpSink
from services.complaints.bootstrap import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from services.notifications.bootstrap import create_app as create_notifications
from services.notifications.settings import NotificationsSettings
from services.profiles.bootstrap import create_app as create_profiles
from services.profiles.settings import ProfilesSettings
from shared.auth import TokenService
from shared.mongo import create_client
from shared.topics import TopicNames, ensure_topics
from tests.conftest import delete_topics, visible
from tests.support.api import ApiClient
from tests.support.web import chromium, listening, serving

# Waiting for the page and for what travels over Kafka; generous: the machine is shared.
WAIT_MS = 30_000
STARTUP_SECONDS = 120
STOP_SECONDS = 60
LINK = re.compile(r"https?://\S+/sign-in#token=[A-Za-z0-9_-]{43}")
SESSION_KEY = "rapport.portal.session"
expect.set_options(timeout=WAIT_MS)


@dataclass
class PortalStack:
    """The three services the portal talks to, and the test's handles on them."""

    portal: str  # where the page is: <profiles>/portal
    profiles: ApiClient
    complaints: ApiClient
    notifications: ApiClient
    profiles_app: FastAPI
    smtp: SmtpSink
    tokens: TokenService
    urls: dict[str, str] = field(default_factory=dict)

    async def new_customer(self, given_name: str, **fields: Any) -> dict[str, Any]:
        """A customer registered by an agent, with an e-mail address of its own."""
        email = f"{given_name.lower()}.{uuid.uuid4().hex[:10]}@example.hr"
        body = {"given_name": given_name, "emails": [email], **fields}
        customer: dict[str, Any] = await self.profiles.call("POST", "/customers", json=body)
        return customer

    async def publish_article(self, **body: Any) -> dict[str, Any]:
        api = self.complaints
        article = await api.call("POST", "/help/articles", json=body)
        published: dict[str, Any] = await api.call(
            "POST", f"/help/articles/{article['id']}/publish"
        )
        return published

    async def mail_to(
        self, address: str, unless: Callable[[ReceivedMessage], bool] = lambda _: False
    ) -> ReceivedMessage:
        """The next mail to ``address`` (one ``unless`` does not rule out), waiting for it
        without blocking the services, which run on this event loop."""

        def wanted(message: ReceivedMessage) -> bool:
            return address in message.envelope_to and not unless(message)

        return await asyncio.to_thread(self.smtp.wait_for, wanted, 60)

    async def link_to(self, address: str, seen: set[str] | None = None) -> str:
        """The sign-in link of the next mail to ``address`` that carries one not ``seen``
        (other mails, a purchase's thank-you, go to the same address)."""
        known = seen or set()

        def other(message: ReceivedMessage) -> bool:
            found = LINK.search(message.text())
            return found is None or found.group(0) in known

        return link_in(await self.mail_to(address, other))


def link_in(mail: ReceivedMessage) -> str:
    found = LINK.search(mail.text())
    assert found, f"no sign-in link in: {mail.text()!r}"
    return found.group(0)


@pytest.fixture(scope="package")
async def portal_topics(kafka_bootstrap: str) -> AsyncIterator[TopicNames]:
    names = TopicNames(f"test-portal-{uuid.uuid4().hex[:10]}.")
    await ensure_topics([kafka_bootstrap], names)
    await visible(kafka_bootstrap, set(names.all()))
    yield names
    await delete_topics(kafka_bootstrap, names.prefix)


@pytest.fixture(scope="package")
async def stack(
    kafka_bootstrap: str, mongodb_uri: str, smtp_sink: SmtpSink, portal_topics: TopicNames
) -> AsyncIterator[PortalStack]:
    run = uuid.uuid4().hex[:10]
    databases = {name: f"test_portal_{run}_{name}" for name in ("profiles", "complaints", "notif")}
    listeners = {name: listening() for name in ("profiles", "complaints", "notifications")}
    urls = {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in listeners.items()}
    common: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "mongodb_uri": mongodb_uri,
        "topic_prefix": portal_topics.prefix,
        "outbox_poll_interval_seconds": 0.05,
        "portal_origins": [urls["profiles"]],
    }
    portal = f"{urls['profiles']}/portal"
    profiles = ProfilesSettings(
        mongodb_database=databases["profiles"],
        portal_url=portal,
        portal_complaints_url=urls["complaints"],
        portal_notifications_url=urls["notifications"],
        **common,
    )
    complaints = ComplaintsSettings(
        mongodb_database=databases["complaints"], sla_check_interval_seconds=3600.0, **common
    )
    notifications = NotificationsSettings(
        mongodb_database=databases["notif"],
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        portal_url=portal,
        dispatcher_poll_interval_seconds=0.05,
        scheduler_poll_interval_seconds=3600.0,
        send_timeout_seconds=30.0,
        quiet_hours_start="",  # the in-app messages of a journey arrive whatever the hour
        **common,
    )
    apps = {
        "profiles": create_profiles(profiles),
        "complaints": create_complaints(complaints),
        "notifications": create_notifications(notifications),
    }
    tokens = TokenService(profiles.secret)
    client = create_client(mongodb_uri, app_name="rapport-tests")
    try:
        async with AsyncExitStack() as running:
            clients = {}
            for name, app in apps.items():
                served = await running.enter_async_context(
                    serving(
                        app, listeners[name], grace=5, startup=STARTUP_SECONDS, stop=STOP_SECONDS
                    )
                )
                url = served.url
                http = await running.enter_async_context(
                    httpx.AsyncClient(base_url=url, timeout=30)
                )
                clients[name] = ApiClient(http, tokens)
            yield PortalStack(
                portal=portal,
                profiles=clients["profiles"],
                complaints=clients["complaints"],
                notifications=clients["notifications"],
                profiles_app=apps["profiles"],
                smtp=smtp_sink,
                tokens=tokens,
                urls=urls,
            )
    finally:
        for database in databases.values():
            await client.drop_database(database)
        await client.close()


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


@asynccontextmanager
async def opened_page(
    browser: Browser,
    url: str,
    *,
    locale: str = "en-GB",
    viewport: ViewportSize = DESKTOP,
    timezone: str = "Europe/Zagreb",
) -> AsyncIterator[Page]:
    """A fresh browser (no storage) on ``url``; the page must raise no error."""
    context = await browser.new_context(locale=locale, timezone_id=timezone, viewport=viewport)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(url)
        yield page
        assert errors == [], f"the page raised: {errors}"
    finally:
        await context.close()


async def sign_in(
    page: Page, stack: PortalStack, email: str, *, lands_on: str | None = None
) -> str:
    """Sign in as a customer does: ask for a link, open the one the e-mail brings.
    Returns the link (used up now). From the portal's start, landing on Me; with
    ``lands_on``, from the sign-in form the page shows now (a link opened signed out),
    landing back on that URL."""
    if lands_on is None:
        await page.goto(f"{stack.portal}/")
    await page.locator("#sign-in-email").fill(email)
    await page.locator("#sign-in-form button[type=submit]").click()
    await expect(page.locator("#link-sent")).to_contain_text(email)
    link = await stack.link_to(email)
    assert link.startswith(f"{stack.portal}/sign-in#token="), link
    await page.goto(link)
    await expect(page).to_have_url(lands_on or f"{stack.portal}/me")
    return link


async def assert_labelled(page: Page) -> None:
    """Every form control on the page has a name a screen reader can say."""
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
            .filter((el) => el.type !== "hidden" && el.offsetParent !== null)
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
            .map((el) => el.outerHTML)"""
    )
    assert unnamed == [], f"form controls without a label: {unnamed}"


async def no_sideways_scrolling(page: Page) -> None:
    width = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"the page is wider than the screen: {width}"
