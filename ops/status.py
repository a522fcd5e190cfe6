"""``rapport status``: is each service ready, and how far behind is its consumer group."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ops.kafka import group_lag, group_members
from services.analytics import worker as analytics_worker
from services.complaints import worker as complaints_worker
from services.notifications import worker as notifications_worker
from services.profiles import worker as profiles_worker
from shared.topics import TopicNames

# Each service's subscriptions, as its worker declares them; the local stack's ports.
SERVICES: dict[str, tuple[list[str], int]] = {
    "profiles": (profiles_worker.SUBSCRIPTIONS, 8001),
    "complaints": (complaints_worker.SUBSCRIPTIONS, 8002),
    "notifications": (notifications_worker.SUBSCRIPTIONS, 8003),
    "analytics": (analytics_worker.SUBSCRIPTIONS, 8004),
}


def service_url(env: Mapping[str, str], service: str) -> str:
    """``RAPPORT_<SERVICE>_URL``, else the local stack's ``http://127.0.0.1:<port>``
    (``RAPPORT_<SERVICE>_HTTP_PORT`` as ``make up`` takes it)."""
    name = service.upper()
    explicit = env.get(f"RAPPORT_{name}_URL")
    if explicit:
        return explicit.rstrip("/")
    port = env.get(f"RAPPORT_{name}_HTTP_PORT") or str(SERVICES[service][1])
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    url: str
    ready: bool
    detail: str  # "ready", what /readyz said was missing, or why it did not answer
    group: str
    members: int  # the group's members, as the broker sees them (worker replicas)
    lag: dict[str, int] | None  # per topic; None: the group never committed

    @property
    def total_lag(self) -> int | None:
        return None if self.lag is None else sum(self.lag.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "url": self.url,
            "ready": self.ready,
            "detail": self.detail,
            "group": self.group,
            "members": self.members,
            "lag": self.lag,
        }


async def _readiness(client: httpx.AsyncClient, url: str) -> tuple[bool, str]:
    try:
        response = await client.get(f"{url}/readyz")
    except httpx.HTTPError as error:
        return False, f"no answer: {type(error).__name__}"
    if response.status_code == 200:
        return True, "ready"
    try:
        checks = response.json().get("checks", {})
    except ValueError:
        return False, f"HTTP {response.status_code}"
    missing = [f"{name}: {value}" for name, value in checks.items() if value != "ok"]
    return False, "; ".join(missing) or f"HTTP {response.status_code}"


async def collect(
    env: Mapping[str, str], bootstrap: list[str], names: TopicNames, http_timeout: float = 3.0
) -> list[ServiceStatus]:
    async with httpx.AsyncClient(timeout=http_timeout) as client:

        async def one(service: str) -> ServiceStatus:
            subscriptions, _ = SERVICES[service]
            url = service_url(env, service)
            group = f"{names.prefix}rapport-{service}"
            (ready, detail), lag, members = await asyncio.gather(
                _readiness(client, url),
                group_lag(bootstrap, group, [names(topic) for topic in subscriptions]),
                group_members(bootstrap, group),
            )
            return ServiceStatus(service, url, ready, detail, group, len(members), lag)

        return list(await asyncio.gather(*(one(service) for service in SERVICES)))
