"""Analytics learns of a customer's sign-out from ``crm.customer.signed_out`` and refuses
that token from then on (401); the customer's other tokens, and staff, go on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from shared.auth import Role
from shared.events.customers import CustomerSignedOut
from shared.revocation import NEGATIVE_TTL, REVOKED_TOKENS
from tests.analytics.conftest import Api
from tests.support.api import PROBLEM


async def test_a_signed_out_token_is_refused_once_the_event_is_heard(api: Api) -> None:
    customer_id = "c-signs-out"
    signed_out_token = api.tokens.mint(customer_id, {Role.CUSTOMER}, customer_id=customer_id)
    other_token = api.tokens.mint(customer_id, {Role.CUSTOMER}, customer_id=customer_id)
    principal = api.tokens.verify(signed_out_token)
    assert principal.token_id is not None
    assert principal.expires_at is not None
    path = f"/api/v1/customers/{customer_id}/insights"

    async def status(token: str) -> int:
        response = await api.http.get(path, headers={"Authorization": f"Bearer {token}"})
        return response.status_code

    before = await status(signed_out_token)  # looked up now: cached as not revoked
    assert before != 401

    await api.feed(
        CustomerSignedOut(
            customer_id=customer_id,
            token_id=principal.token_id,
            expires_at=principal.expires_at,
            signed_out_at=datetime.now(UTC),
        )
    )

    deadline = time.monotonic() + NEGATIVE_TTL + 10
    while (
        response := await api.http.get(path, headers=_bearer(signed_out_token))
    ).status_code != 401:
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.1)
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "this session was signed out"
    assert await status(other_token) == before
    assert (await api.http.get(path, headers=api.agent)).status_code == before
    stored = await api.analytics.store.db[REVOKED_TOKENS].find_one({"_id": principal.token_id})
    assert stored is not None
    assert stored["customer_id"] == customer_id
    assert abs(stored["expires_at"] - principal.expires_at) < timedelta(milliseconds=1)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
