"""A service's HTTP API served in process, with ready-made tokens for each role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from fastapi import FastAPI

from shared.auth import Role, TokenService

PROBLEM = "application/problem+json"


@dataclass
class ApiClient:
    """Requests to one service's API, signed with the test's token service."""

    http: httpx.AsyncClient
    tokens: TokenService
    # Whose token a request carries when the test names none.
    default_role: ClassVar[Role] = Role.AGENT

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
        """A request under ``/api/v1`` that must succeed; its JSON body."""
        response = await self.http.request(
            method, f"/api/v1{path}", headers=headers or self.as_(self.default_role), **kwargs
        )
        assert response.status_code < 300, response.text
        return response.json()

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        """A GET under ``/api/v1`` that must answer 200; its JSON body."""
        response = await self.http.get(
            f"/api/v1{path}", headers=headers or self.as_(self.default_role), params=params
        )
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def in_process(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that talks to ``app`` directly, at ``http://<name>``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as http:
        yield http


@asynccontextmanager
async def serving(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started (its lifespan running) and a client that talks to it in process."""
    async with app.router.lifespan_context(app), in_process(app, name) as http:
        yield http
