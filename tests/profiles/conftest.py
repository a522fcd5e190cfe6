"""A running profiles service (HTTP API and worker) on this test's topics and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.profiles.bootstrap import create_app
from services.profiles.settings import ProfilesSettings
from shared.auth import Role, TokenService
from shared.mongo import Database
from shared.topics import TopicNames


@dataclass
class Api:
    """The profiles API with ready-made tokens for each role."""

    http: httpx.AsyncClient
    tokens: TokenService

    def as_(self, *roles: Role, customer_id: str | None = None) -> dict[str, str]:
        token = self.tokens.mint("tester", set(roles), customer_id=customer_id)
        return {"Authorization": f"Bearer {token}"}

    @property
    def agent(self) -> dict[str, str]:
        return self.as_(Role.AGENT)

    def customer(self, customer_id: str) -> dict[str, str]:
        return self.as_(Role.CUSTOMER, customer_id=customer_id)


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
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://profiles") as http:
            yield Api(http, TokenService(profiles_settings.secret))
