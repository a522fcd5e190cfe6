"""Signing out revokes the token it is made with, on every service of the portal: at
once on profiles (which stores the revocation), within seconds on complaints and
notifications (which learn it from ``crm.customer.signed_out``); the customer's other
session goes on."""

from __future__ import annotations

import asyncio
import json
import time

import jsonschema

from shared.events import decode
from shared.events.customers import CustomerSignedOut
from shared.events.schemas import DEFAULT_FOLDER
from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import Records, read_topic
from tests.portal.conftest import PortalStack
from tests.support.api import PROBLEM, ApiClient

SIGNED_OUT = "crm.customer.signed_out"
# How long complaints and notifications may take to hear of a sign-out (the event's trip
# plus the revocation cache's negative TTL); generous, the machine is shared.
LEARNING_SECONDS = 30.0


async def signed_in(stack: PortalStack, email: str, seen: set[str]) -> dict[str, str]:
    """A session of the customer owning ``email``, as the portal gets one; its bearer."""
    asked = await stack.profiles.http.post("/api/v1/portal/sign-in", json={"email": email})
    assert asked.status_code == 202, asked.text
    link = await stack.link_to(email, seen)
    seen.add(link)
    redeemed = await stack.profiles.http.post(
        "/api/v1/portal/sign-in/redeem", json={"token": link.partition("#token=")[2]}
    )
    assert redeemed.status_code == 200, redeemed.text
    return {"Authorization": f"Bearer {redeemed.json()['access_token']}"}


def reads(stack: PortalStack, customer_id: str) -> list[tuple[ApiClient, str]]:
    """A customer's own data on each service of the portal."""
    return [
        (stack.profiles, f"/api/v1/customers/{customer_id}"),
        (stack.complaints, "/api/v1/complaints"),
        (stack.notifications, f"/api/v1/customers/{customer_id}/inbox"),
    ]


async def status_of(api: ApiClient, path: str, bearer: dict[str, str]) -> int:
    return (await api.http.get(path, headers=bearer)).status_code


async def refused_within(api: ApiClient, path: str, bearer: dict[str, str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        response = await api.http.get(path, headers=bearer)
        if response.status_code == 401:
            assert response.headers["content-type"] == PROBLEM
            problem = response.json()
            assert problem["detail"] == "this session was signed out", problem
            assert problem["reason"] == "signed_out"
            return
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, f"{path} still takes the signed-out token"
        await asyncio.sleep(0.2)


async def test_signing_out_revokes_the_token_everywhere_and_only_that_one(
    stack: PortalStack, kafka_bootstrap: str, portal_topics: TopicNames
) -> None:
    customer = await stack.new_customer("Lucija")
    cid, email = customer["id"], customer["emails"][0]
    seen: set[str] = set()
    laptop = await signed_in(stack, email, seen)
    phone = await signed_in(stack, email, seen)  # a second session of the same customer
    for api, path in reads(stack, cid):
        assert await status_of(api, path, laptop) == 200, path
        assert await status_of(api, path, phone) == 200, path

    signed_out = await stack.profiles.http.post("/api/v1/portal/sign-out", headers=laptop)

    assert signed_out.status_code == 204, signed_out.text
    [(profiles, path), *others] = reads(stack, cid)
    refused = await profiles.http.get(path, headers=laptop)  # at once: profiles stored it
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["detail"] == "this session was signed out"
    again = await profiles.http.post("/api/v1/portal/sign-out", headers=laptop)
    assert again.status_code == 401
    for api, other in others:  # they learn it from the event
        await refused_within(api, other, laptop, LEARNING_SECONDS)
    for api, path in reads(stack, cid):  # the other session goes on
        assert await status_of(api, path, phone) == 200, path
    staff = stack.profiles.agent  # staff tokens are never checked against the list
    assert await status_of(stack.profiles, f"/api/v1/customers/{cid}", staff) == 200

    # The announcement: on crm.customers, keyed by the customer, valid by its schema.
    token_id = stack.tokens.verify(laptop["Authorization"].removeprefix("Bearer ")).token_id
    topic = portal_topics(CUSTOMERS)

    def announced(records: Records) -> Records:
        return [
            record
            for record in records
            if record.key == cid.encode() and json.loads(record.value)["type"] == SIGNED_OUT
        ]

    [record] = announced(
        await read_topic(kafka_bootstrap, topic, until=lambda read: bool(announced(read)))
    )
    envelope = json.loads(record.value)
    schema = json.loads((DEFAULT_FOLDER / f"{SIGNED_OUT}.v1.json").read_text())
    jsonschema.validate(envelope, schema, format_checker=jsonschema.FormatChecker())
    event = decode(record.value, list(record.headers or ()))
    assert isinstance(event.payload, CustomerSignedOut)
    assert event.payload.customer_id == cid
    assert event.payload.token_id == token_id
    assert event.subject == cid
