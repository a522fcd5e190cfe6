"""A running complaints service (HTTP API, worker, SLA watcher) on this test's topics and
database, with a clock the test drives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.complaints.bootstrap import create_app
from services.complaints.handlers import Complaints
from services.complaints.settings import ComplaintsSettings
from shared.auth import Role, TokenService
from shared.mongo import Database
from shared.topics import TopicNames
from tests.service_harness import DrivenClock

# Monday 2026-11-23 10:00 in Zagreb: inside the default calendar's working hours.
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class Api:
    """The complaints API with ready-made tokens for each role."""

    http: httpx.AsyncClient
    tokens: TokenService
    complaints: Complaints
    clock: DrivenClock

    def as_(self, *roles: Role, customer_id: str | None = None) -> dict[str, str]:
        token = self.tokens.mint("tester", set(roles), customer_id=customer_id)
        return {"Authorization": f"Bearer {token}"}

    @property
    def agent(self) -> dict[str, str]:
        return self.as_(Role.AGENT)

    @property
    def admin(self) -> dict[str, str]:
        return self.as_(Role.ADMIN)

    def customer(self, customer_id: str) -> dict[str, str]:
        return self.as_(Role.CUSTOMER, customer_id=customer_id)

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        """A request that must succeed; its JSON body."""
        response = await self.http.request(
            method, f"/api/v1{path}", headers=headers or self.agent, **kwargs
        )
        assert response.status_code < 300, response.text
        return response.json()


def complaints_settings_for(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database, **extra: Any
) -> ComplaintsSettings:
    return ComplaintsSettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        mongodb_database=db.name,
        outbox_poll_interval_seconds=0.05,
        **{"sla_check_interval_seconds": 3600.0, **extra},
    )


@pytest.fixture
def complaints_settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> ComplaintsSettings:
    return complaints_settings_for(kafka_bootstrap, mongodb_uri, topics, db)


@pytest.fixture
def clock() -> DrivenClock:
    return DrivenClock(MONDAY_MORNING)


@asynccontextmanager
async def running(settings: ComplaintsSettings, clock: DrivenClock) -> AsyncIterator[Api]:
    app = create_app(settings)
    complaints: Complaints = app.state.complaints
    complaints.clock = clock
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://complaints") as http:
            yield Api(http, TokenService(settings.secret), complaints, clock)


@pytest.fixture
async def api(complaints_settings: ComplaintsSettings, clock: DrivenClock) -> AsyncIterator[Api]:
    async with running(complaints_settings, clock) as service:
        yield service
