"""The portal's passwordless sign-in: a single-use link by e-mail, then a customer token."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from services.profiles.bootstrap import create_app
from services.profiles.settings import ProfilesSettings
from services.profiles.sign_in import SignIn
from shared.auth import TokenService
from shared.clock import to_millisecond
from shared.events import decode
from shared.events.customers import SignInRequested
from shared.mongo import Database
from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import Records, read_topic
from tests.profiles.conftest import Api
from tests.service_harness import DrivenClock
from tests.support.api import PROBLEM, serving

SIGN_IN_REQUESTED = "crm.customer.sign_in_requested"


@dataclass
class Portal:
    """The profiles API with the sign-in's clock in the test's hands."""

    api: Api
    sign_in: SignIn
    clock: DrivenClock
    db: Database

    @property
    def http(self) -> httpx.AsyncClient:
        return self.api.http

    async def ask(self, email: str, **body: Any) -> httpx.Response:
        response = await self.http.post("/api/v1/portal/sign-in", json={"email": email, **body})
        assert response.status_code == 202, response.text
        return response

    async def redeem(self, token: str) -> httpx.Response:
        return await self.http.post("/api/v1/portal/sign-in/redeem", json={"token": token})

    async def links(self, customer_id: str) -> list[dict[str, Any]]:
        return await self.db["sign_in_links"].find({"customer_id": customer_id}).to_list()

    async def requested(self, customer_id: str) -> list[dict[str, Any]]:
        """The sign-in events stored for the customer, oldest first (the outbox keeps what
        it published: the link is in nothing else the test can read)."""
        events = []
        async for document in self.db["outbox"].find().sort("order", 1):
            event = json.loads(bytes(document["value"]))
            if event["type"] == SIGN_IN_REQUESTED and event["subject"] == customer_id:
                events.append(event)
        return events

    async def token(self, customer_id: str) -> str:
        """The token of the customer's latest link, as the portal takes it from the URL."""
        url = (await self.requested(customer_id))[-1]["data"]["sign_in_url"]
        return str(url.partition("#token=")[2])


@pytest.fixture
def settings(profiles_settings: ProfilesSettings) -> ProfilesSettings:
    return profiles_settings.model_copy(update={"portal_url": "https://portal.example.com/"})


@pytest.fixture
async def portal(settings: ProfilesSettings, db: Database) -> AsyncIterator[Portal]:
    app = create_app(settings)
    clock = DrivenClock(datetime.now(UTC))  # near real time: the TTL index runs on it
    app.state.sign_in.clock = clock
    async with serving(app, "profiles") as http:
        yield Portal(Api(http, TokenService(settings.secret)), app.state.sign_in, clock, db)


async def new_customer(portal: Portal, **fields: Any) -> dict[str, Any]:
    body = {"given_name": "Ivana", "emails": [f"ivana.{uuid.uuid4().hex[:8]}@example.hr"]}
    response = await portal.http.post(
        "/api/v1/customers", json={**body, **fields}, headers=portal.api.agent
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


async def test_a_link_for_a_known_address_is_stored_hashed_and_announced(
    portal: Portal, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer = await new_customer(portal, locale="hr")
    cid, email = customer["id"], customer["emails"][0]
    asked_at = portal.clock()

    answer = await portal.ask(f"  {email.upper()} ", locale="fa")

    assert "sign-in link is on its way" in answer.json()["detail"]
    [link] = await portal.links(cid)
    assert link["used_at"] is None
    assert link["expires_at"] == to_millisecond(asked_at) + timedelta(minutes=15)

    def announced(records: Records) -> list[SignInRequested]:
        events = [decode(record.value, list(record.headers or ())) for record in records]
        return [e.payload for e in events if isinstance(e.payload, SignInRequested)]

    records = await read_topic(
        kafka_bootstrap, topics(CUSTOMERS), until=lambda found: bool(announced(found))
    )
    [request] = announced(records)
    assert (request.customer_id, request.email) == (cid, email)
    assert request.locale == "fa"  # the portal's language when it says; else the profile's
    assert request.expires_at == link["expires_at"]
    url = request.sign_in_url
    assert url.startswith("https://portal.example.com/sign-in#token=")
    token = url.partition("#token=")[2]
    # Only the digest of the token is stored: a copy of the database signs nobody in.
    assert link["_id"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(await portal.links(cid), default=str)


async def test_an_unknown_or_erased_address_gets_the_same_answer_and_no_link(
    portal: Portal, kafka_bootstrap: str, topics: TopicNames
) -> None:
    erased = await new_customer(portal)
    gone = await portal.http.delete(f"/api/v1/customers/{erased['id']}", headers=portal.api.admin)
    assert gone.status_code in (200, 204), gone.text
    known = await new_customer(portal)

    unknown_answer = await portal.ask("nobody.at.all@example.hr")
    erased_answer = await portal.ask(erased["emails"][0])
    known_answer = await portal.ask(known["emails"][0])

    assert unknown_answer.json() == erased_answer.json() == known_answer.json()
    assert await portal.db["sign_in_links"].count_documents({}) == 1

    def requested(records: Records) -> list[str]:
        events = [json.loads(record.value) for record in records]
        return [e["subject"] for e in events if e["type"] == SIGN_IN_REQUESTED]

    # The relay publishes in commit order: once the known one is out, nothing else was.
    records = await read_topic(
        kafka_bootstrap, topics(CUSTOMERS), until=lambda found: bool(requested(found))
    )
    assert requested(records) == [known["id"]]


async def test_the_link_gives_a_customer_token_for_its_customer_once(portal: Portal) -> None:
    customer, other = await new_customer(portal), await new_customer(portal)
    await portal.ask(customer["emails"][0])
    token = await portal.token(customer["id"])

    signed_in = await portal.redeem(token)

    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert (body["token_type"], body["customer_id"]) == ("bearer", customer["id"])
    assert body["expires_in"] == 12 * 3600
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    me = (await portal.http.get("/api/v1/me", headers=bearer)).json()
    assert (me["roles"], me["customer_id"]) == (["customer"], customer["id"])
    own = await portal.http.get(f"/api/v1/customers/{customer['id']}", headers=bearer)
    assert own.status_code == 200
    assert own.json()["given_name"] == "Ivana"
    foreign = await portal.http.get(f"/api/v1/customers/{other['id']}", headers=bearer)
    problem_of(foreign, 403)
    [link] = await portal.links(customer["id"])
    assert link["used_at"] is not None

    again = problem_of(await portal.redeem(token), 410)
    assert again["reason"] == "used"
    assert "already used" in again["detail"]
    assert "ask for a new link" in again["detail"]


async def test_two_redemptions_at_once_sign_in_only_one(portal: Portal) -> None:
    customer = await new_customer(portal)
    await portal.ask(customer["emails"][0])
    token = await portal.token(customer["id"])

    answers = await asyncio.gather(portal.redeem(token), portal.redeem(token))

    assert sorted(answer.status_code for answer in answers) == [200, 410]


async def test_an_expired_link_is_refused_with_a_clear_answer(portal: Portal) -> None:
    customer = await new_customer(portal)
    await portal.ask(customer["emails"][0])
    token = await portal.token(customer["id"])

    portal.clock.advance(minutes=15, seconds=1)
    expired = problem_of(await portal.redeem(token), 410)

    assert expired["title"] == "Sign-in link expired"
    assert expired["reason"] == "expired"
    assert "expired" in expired["detail"]
    assert "ask for a new link" in expired["detail"]
    # A new link works, and the old one stays refused.
    await portal.ask(customer["emails"][0])
    assert (await portal.redeem(await portal.token(customer["id"]))).status_code == 200
    assert (await portal.redeem(token)).status_code == 410


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        ("not a token", 400, "malformed"),
        ("x" * 42, 400, "malformed"),
        ("<script>alert(1)</script>" + "a" * 18, 400, "malformed"),
        ("A" * 43, 404, "unknown"),
    ],
)
async def test_a_malformed_or_unknown_token_is_a_problem(
    portal: Portal, token: str, status: int, reason: str
) -> None:
    refused = problem_of(await portal.redeem(token), status)
    assert refused["reason"] == reason
    missing = await portal.http.post("/api/v1/portal/sign-in/redeem", json={})
    problem_of(missing, 422)
    bad_address = await portal.http.post("/api/v1/portal/sign-in", json={"email": "no-at-sign"})
    problem_of(bad_address, 422)


async def test_a_customer_erased_or_merged_since_the_link_was_sent_is_refused(
    portal: Portal,
) -> None:
    erased, merged, survivor = [await new_customer(portal) for _ in range(3)]
    tokens = {}
    for customer in (erased, merged):
        await portal.ask(customer["emails"][0])
        tokens[customer["id"]] = await portal.token(customer["id"])
    deleted = await portal.http.delete(
        f"/api/v1/customers/{erased['id']}", headers=portal.api.admin
    )
    assert deleted.status_code in (200, 204), deleted.text
    folded = await portal.http.post(
        f"/api/v1/customers/{survivor['id']}/merge",
        json={"source_id": merged["id"]},
        headers=portal.api.agent,
    )
    assert folded.status_code == 200, folded.text

    for token in tokens.values():
        closed = problem_of(await portal.redeem(token), 410)
        assert closed["reason"] == "account_closed"
        assert "closed or merged" in closed["detail"]


async def test_at_most_five_links_per_address_in_fifteen_minutes(portal: Portal) -> None:
    customer = await new_customer(portal)
    email = customer["emails"][0]

    for _ in range(7):
        await portal.ask(email)  # always 202: the answer never tells
        portal.clock.advance(seconds=30)
    assert len(await portal.links(customer["id"])) == 5
    assert len(await portal.requested(customer["id"])) == 5

    portal.clock.advance(minutes=12)  # the first links leave the window
    await portal.ask(email)
    assert len(await portal.links(customer["id"])) == 6


async def test_signing_out_withdraws_the_links_not_used_yet(portal: Portal) -> None:
    customer = await new_customer(portal)
    await portal.ask(customer["emails"][0])
    first = await portal.token(customer["id"])
    bearer = {"Authorization": f"Bearer {(await portal.redeem(first)).json()['access_token']}"}
    await portal.ask(customer["emails"][0])  # e.g. asked for on another device
    pending = await portal.token(customer["id"])

    signed_out = await portal.http.post("/api/v1/portal/sign-out", headers=bearer)

    assert signed_out.status_code == 204
    withdrawn = problem_of(await portal.redeem(pending), 410)
    assert withdrawn["reason"] == "withdrawn"
    assert "signed out" in withdrawn["detail"]
    problem_of(await portal.http.post("/api/v1/portal/sign-out"), 401)
    staff = await portal.http.post("/api/v1/portal/sign-out", headers=portal.api.agent)
    problem_of(staff, 403)


async def test_signing_out_revokes_that_token_at_once_and_no_other(portal: Portal) -> None:
    customer = await new_customer(portal)
    cid, email = customer["id"], customer["emails"][0]
    sessions = []
    for _ in range(2):  # e.g. a laptop and a phone
        await portal.ask(email)
        redeemed = (await portal.redeem(await portal.token(cid))).json()
        sessions.append({"Authorization": f"Bearer {redeemed['access_token']}"})
    laptop, phone = sessions
    jti = portal.api.tokens.verify(laptop["Authorization"][7:]).token_id
    # A customer token minted before tokens had a jti: cannot be named, works until exp.
    claims = {"iss": "rapport", "aud": "rapport", "sub": cid, "roles": ["customer"],
              "customer_id": cid, "exp": datetime.now(UTC) + timedelta(hours=1)}  # fmt: skip
    older = {"Authorization": f"Bearer {jwt.encode(claims, portal.api.tokens.secret, 'HS256')}"}
    me = f"/api/v1/customers/{cid}"

    assert (await portal.http.post("/api/v1/portal/sign-out", headers=laptop)).status_code == 204

    refused = problem_of(await portal.http.get(me, headers=laptop), 401)
    assert refused["detail"] == "this session was signed out"
    assert refused["reason"] == "signed_out"
    assert (await portal.http.get(me, headers=phone)).status_code == 200
    assert (await portal.http.get(me, headers=older)).status_code == 200
    [revoked] = await portal.db["revoked_tokens"].find({"customer_id": cid}).to_list()
    assert revoked["_id"] == jti
    assert revoked["expires_at"] > datetime.now(UTC) + timedelta(hours=11)
    # Removed once the token has expired: a TTL index on expires_at.
    ttl = (await portal.db["revoked_tokens"].index_information())["expires_at_ttl"]
    assert ttl["key"] == [("expires_at", 1)]
    assert ttl["expireAfterSeconds"] == 0
    # Announced with the revocation, through the outbox.
    stored = [json.loads(bytes(d["value"])) async for d in portal.db["outbox"].find()]
    [event] = [e for e in stored if e["type"] == "crm.customer.signed_out"]
    assert event["subject"] == cid
    assert event["data"]["token_id"] == jti
