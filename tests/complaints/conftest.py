"""A running complaints service (HTTP API, worker, SLA watcher) on this test's topics and
database, with a clock the test drives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from services.complaints.bootstrap import create_app
from services.complaints.handlers import Complaints
from services.complaints.settings import ComplaintsSettings
from shared.auth import TokenService
from shared.mongo import Database
from shared.topics import TopicNames
from tests.service_harness import DrivenClock
from tests.support.api import ApiClient, serving

# Monday 2026-11-23 10:00 in Zagreb: inside the default calendar's working hours.
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class Api(ApiClient):
    """The complaints API, with the service's core and the clock the test drives."""

    complaints: Complaints
    clock: DrivenClock


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
    app.state.community.clock = clock
    async with serving(app, "complaints") as http:
        yield Api(http, TokenService(settings.secret), complaints, clock)


@pytest.fixture
async def api(complaints_settings: ComplaintsSettings, clock: DrivenClock) -> AsyncIterator[Api]:
    async with running(complaints_settings, clock) as service:
        yield service
