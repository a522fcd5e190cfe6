"""Across services: a refund granted in complaints reaches the customer's ledger in profiles.

Both services run against the same broker and topics, each with its own database, and
talk only through ``crm.complaint.resolved`` on Kafka, as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from services.complaints.bootstrap import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from services.profiles.bootstrap import create_app as create_profiles
from services.profiles.settings import ProfilesSettings
from shared.auth import Role, TokenService
from shared.mongo import Database, MongoClient
from shared.topics import TopicNames
from tests.service_harness import eventually


@asynccontextmanager
async def serving(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
            yield client


async def test_a_refund_resolution_reaches_the_profile_ledger(
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    mongo_client: MongoClient,
) -> None:
    common: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "mongodb_uri": mongodb_uri,
        "topic_prefix": topics.prefix,
        "outbox_poll_interval_seconds": 0.05,
    }
    profiles_settings = ProfilesSettings(mongodb_database=db.name, **common)
    complaints_db = f"{db.name}_complaints"
    complaints_settings = ComplaintsSettings(mongodb_database=complaints_db, **common)
    agent = {
        "Authorization": "Bearer "
        + TokenService(profiles_settings.secret).mint("ana", {Role.AGENT})
    }
    try:
        async with AsyncExitStack() as stack:
            profiles = await stack.enter_async_context(
                serving(create_profiles(profiles_settings), "profiles")
            )
            complaints = await stack.enter_async_context(
                serving(create_complaints(complaints_settings), "complaints")
            )
            customer = (
                await profiles.post(
                    "/api/v1/customers",
                    json={"given_name": "Ivana", "emails": ["ivana@example.hr"]},
                    headers=agent,
                )
            ).json()
            bought = await profiles.post(
                "/api/v1/purchases",
                json={
                    "purchase_id": "o-77",
                    "customer_id": customer["id"],
                    "items": [
                        {"sku": "KET-1", "name": "Kettle", "category": "kitchen",
                         "quantity": 1, "unit_price": "39.90"}
                    ],
                    "total_amount": "39.90",
                    "currency": "EUR",
                    "channel": "web",
                },
                headers=agent,
            )  # fmt: skip
            assert bought.status_code == 201, bought.text
            opened = await complaints.post(
                "/api/v1/complaints",
                json={
                    "customer_id": customer["id"],
                    "channel": "web",
                    "category": "product",
                    "subject": "Kettle leaks",
                    "description": "Water comes out at the bottom.",
                    "related_purchase_id": "o-77",
                    "priority": "normal",
                },
                headers=agent,
            )
            assert opened.status_code == 201, opened.text
            path = f"/api/v1/complaints/{opened.json()['id']}"
            for step, body in (
                ("acknowledge", None),
                ("status", {"status": "in_progress"}),
                (
                    "resolve",
                    {
                        "resolution_type": "refund",
                        "summary": "Refunded in full",
                        "refund_amount": "39.90",
                        "currency": "EUR",
                    },
                ),
            ):
                response = await complaints.post(f"{path}/{step}", json=body, headers=agent)
                assert response.status_code == 200, response.text

            async def refunded() -> bool:
                figures = await profiles.get(
                    f"/api/v1/customers/{customer['id']}/figures", headers=agent
                )
                eur = [c for c in figures.json()["currencies"] if c["currency"] == "EUR"]
                return bool(eur) and eur[0]["net_spent"] == "0.00"

            await eventually(refunded, message="the refund did not reach the ledger")
            ledger = await profiles.get(f"/api/v1/customers/{customer['id']}/ledger", headers=agent)
            kinds = [entry["kind"] for entry in ledger.json()["items"]]
            assert kinds == ["refund", "purchase"]
    finally:
        await mongo_client.drop_database(complaints_db)
