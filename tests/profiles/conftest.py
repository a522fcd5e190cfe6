"""A running profiles service (HTTP API and worker) on this test's topics and database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.profiles.bootstrap import create_app
from services.profiles.settings import ProfilesSettings
from shared.auth import TokenService
from shared.mongo import Database
from shared.topics import TopicNames
from tests.support.api import ApiClient, serving

# The profiles API with ready-made tokens for each role.
Api = ApiClient


@pytest.fixture
def profiles_settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> ProfilesSettings:
    return ProfilesSettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        mongodb_database=db.name,
        outbox_poll_interval_seconds=0.05,
        attribute_schema={
            "type": "object",
            "properties": {"loyalty_card": {"type": "string", "pattern": "^LC-[0-9]{6}$"}},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
    )


@pytest.fixture
async def api(profiles_settings: ProfilesSettings) -> AsyncIterator[Api]:
    app = create_app(profiles_settings)
    async with serving(app, "profiles") as http:
        yield Api(http, TokenService(profiles_settings.secret))
