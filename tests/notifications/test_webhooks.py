"""Webhooks: subscriptions over HTTP with URL checks, deliveries of the triggering
CloudEvent to a real local receiver that verifies them (the Standard Webhooks library and
the documented recipe) and reads them with the CloudEvents SDK, and how failures are
classified."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook, WebhookVerificationError

from services.notifications import rules as r
from services.notifications.channels import ChannelSettings
from services.notifications.dispatcher import Dispatcher
from services.notifications.domain import (
    Channel,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from services.notifications.planning import Notifications
from services.notifications.scheduling import fire_due
from services.notifications.template_store import TemplateStore
from services.notifications.templating import JinjaTemplateRenderer
from services.notifications.webhooks import WebhookDelivery
from services.notifications.webhooks_domain import (
    Subscription,
    cloudevent,
    new_secret,
    sign,
    verify_signature,
)
from services.notifications.webhooks_store import WebhookStore
from shared.events.customers import (
    ContractStatus,
    ContractSummary,
    CustomerErased,
    CustomerRegistered,
    SignInRequested,
)
from shared.events.purchases import PurchaseCompleted
from shared.mongo import Database, MongoClient
from shared.settings import Environment
from tests.notifications.delivery_app import DeliveryApi, delivery_api
from tests.notifications.harness import apply, core, prepare
from tests.service_harness import DrivenClock


class Receiver:
    """A webhook receiver on a free port: ``/ok`` keeps what it gets and answers 204,
    ``/status/<code>`` answers that code, ``/hang`` does not answer until released."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/hang":
                    receiver.release.wait(30)
                    return
                status = 204
                if self.path.startswith("/status/"):
                    status = int(self.path.rsplit("/", 1)[1])
                else:
                    receiver.received.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    try:
        yield found
    finally:
        found.release.set()
        found.server.shutdown()
        found.server.server_close()


@pytest.fixture
async def api(db: Database) -> AsyncIterator[DeliveryApi]:
    async with delivery_api(db, webhook_timeout_seconds=30) as service:
        yield service


async def subscribe(api: DeliveryApi, url: str, *patterns: str) -> dict[str, Any]:
    response = await api.http.post(
        "/api/v1/webhooks",
        json={"url": url, "event_types": list(patterns) or ["*"]},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def read_cloudevent(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """What a receiver using the CloudEvents SDK gets from a delivery."""
    assert headers["content-type"] == "application/cloudevents+json"
    return from_http(HTTPMessage(dict(headers), body), JSONFormat())


async def test_a_delivery_is_signed_so_the_receiver_can_verify_it(
    api: DeliveryApi, receiver: Receiver
) -> None:
    created = await subscribe(api, receiver.url("/ok"), "crm.complaint.*")
    assert created["secret"].startswith("whsec_")
    subscription = (await api.webhooks.matching("crm.complaint.opened"))[0]
    delivery_id = f"dlv-{uuid.uuid4().hex}"
    event = cloudevent(
        {"id": str(uuid.uuid4()), "source": "/t", "type": "crm.complaint.opened"},
        {"customer": "Šimić", "amount": "12.50"},
    )
    await api.webhooks.deliver(subscription, event, delivery_id)

    headers, body = next(r for r in receiver.received if r[0]["webhook-id"] == delivery_id)
    assert body == event
    assert read_cloudevent(headers, body).get_data() == {"customer": "Šimić", "amount": "12.50"}
    # The Standard Webhooks library a receiver would use, and the copyable recipe.
    assert Webhook(created["secret"]).verify(body, headers)["type"] == "crm.complaint.opened"
    verify_signature(created["secret"], headers, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(body.replace(b"12.50", b"99.99"), headers)
    with pytest.raises(ValueError, match="no signature"):
        verify_signature(created["secret"], headers, body.replace(b"12.50", b"99.99"))
    with pytest.raises(ValueError, match="no signature"):
        verify_signature(new_secret(), headers, body)
    with pytest.raises(ValueError, match="replay window"):
        verify_signature(created["secret"], headers, body, now=time.time() + 301)


def test_the_signature_is_the_standard_webhooks_one() -> None:
    # Test vector from the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": f"v1,bm9ldHRoZXNpZ25hdHVyZQ== {expected}",
    }
    verify_signature(secret, headers, body, now=1614265330 + 299)
    with pytest.raises(ValueError, match="missing"):
        verify_signature(secret, {}, body, now=1614265330)


async def test_subscriptions_match_event_types_with_wildcards(
    api: DeliveryApi, receiver: Receiver
) -> None:
    complaints = await subscribe(api, receiver.url("/ok"), "crm.complaint.*")
    everything = await subscribe(api, receiver.url("/ok"), "*")
    sent = await subscribe(api, receiver.url("/ok"), "crm.notification.sent")

    def ids(found: list[Subscription]) -> set[str]:
        return {s.id for s in found}

    assert ids(await api.webhooks.matching("crm.complaint.resolved")) == {
        complaints["id"],
        everything["id"],
    }
    assert ids(await api.webhooks.matching("crm.notification.sent")) == {
        sent["id"],
        everything["id"],
    }


@pytest.mark.parametrize(
    ("path", "error", "reason"),
    [
        ("/status/500", TransientDeliveryError, "500"),
        ("/status/503", TransientDeliveryError, "503"),
        ("/status/429", TransientDeliveryError, "429"),
        ("/status/404", PermanentDeliveryError, "404"),
        ("/status/400", PermanentDeliveryError, "400"),
        ("/status/301", PermanentDeliveryError, "301"),
        ("/hang", TransientDeliveryError, "did not answer within 0.5 s"),
    ],
)
async def test_failing_receivers_are_classified(
    api: DeliveryApi, receiver: Receiver, path: str, error: type[Exception], reason: str
) -> None:
    await subscribe(api, receiver.url(path), "crm.*")
    subscription = (await api.webhooks.matching("crm.purchase.completed"))[0]
    # A short time-out only where it is what is tested: answers on a loaded machine are slow.
    timeout = 0.5 if path == "/hang" else 30
    delivery = WebhookDelivery(api.webhooks.store, ChannelSettings(webhook_timeout_seconds=timeout))
    try:
        with pytest.raises(error, match=reason):
            await delivery.deliver(subscription, b"{}", f"dlv-{uuid.uuid4().hex}")
    finally:
        await delivery.close()
    assert (await api.webhooks.store.get(subscription.id)).active


async def test_a_receiver_that_is_gone_switches_its_subscription_off(
    api: DeliveryApi, receiver: Receiver
) -> None:
    created = await subscribe(api, receiver.url("/status/410"), "*")
    subscription = (await api.webhooks.matching("crm.purchase.completed"))[0]
    with pytest.raises(PermanentDeliveryError, match="410"):
        await api.webhooks.deliver(subscription, b"{}", "dlv-gone")
    assert await api.webhooks.matching("crm.purchase.completed") == []
    shown = (await api.http.get(f"/api/v1/webhooks/{created['id']}", headers=api.agent)).json()
    assert shown["active"] is False
    assert "410" in shown["disabled_reason"]
    again = await api.http.patch(
        f"/api/v1/webhooks/{created['id']}", json={"active": True}, headers=api.admin
    )
    assert again.json()["active"] is True


async def test_the_secret_is_shown_once_and_deleting_stops_deliveries(
    api: DeliveryApi, receiver: Receiver
) -> None:
    created = await subscribe(api, receiver.url("/ok"), "*")
    listed = (await api.http.get("/api/v1/webhooks", headers=api.agent)).json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    one = await api.http.get(f"/api/v1/webhooks/{created['id']}", headers=api.agent)
    assert "secret" not in one.json()
    deleted = await api.http.delete(f"/api/v1/webhooks/{created['id']}", headers=api.admin)
    assert deleted.status_code == 204
    assert await api.webhooks.matching("crm.purchase.completed") == []
    gone = await api.http.get(f"/api/v1/webhooks/{created['id']}", headers=api.agent)
    assert gone.status_code == 404


async def test_a_secret_can_be_given(api: DeliveryApi, receiver: Receiver) -> None:
    secret = new_secret()
    response = await api.http.post(
        "/api/v1/webhooks",
        json={"url": receiver.url("/ok"), "event_types": ["*"], "secret": secret},
        headers=api.admin,
    )
    assert response.json()["secret"] == secret
    bad = await api.http.post(
        "/api/v1/webhooks",
        json={"url": receiver.url("/ok"), "event_types": ["*"], "secret": "hunter2"},
        headers=api.admin,
    )
    assert bad.status_code == 422
    assert "whsec_" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "https://"),
        ("https://", "no host"),
        ("not a url", "https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://example.com:99999/hook", "not valid"),
    ],
)
async def test_a_bad_webhook_url_is_a_422(api: DeliveryApi, url: str, reason: str) -> None:
    response = await api.http.post(
        "/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=api.admin
    )
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://example.com", "event_types": []},
        {"url": "https://example.com", "event_types": ["crm.complaint.[ab]"]},
        {"url": "https://example.com", "event_types": ["CRM Complaint"]},
        {"url": "https://example.com"},
    ],
)
async def test_a_bad_event_type_filter_is_a_422(api: DeliveryApi, body: dict[str, Any]) -> None:
    response = await api.http.post("/api/v1/webhooks", json=body, headers=api.admin)
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/rapport", True),
        ("https://93.184.215.14/rapport", True),
        ("http://hooks.example.com/rapport", False),
        ("https://127.0.0.1/rapport", False),
        ("https://10.1.2.3/rapport", False),
        ("https://192.168.1.10/rapport", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://[::1]/rapport", False),
        ("https://localhost/rapport", False),
        ("https://relay.internal/rapport", False),
    ],
)
async def test_production_refuses_plain_http_and_private_addresses(
    db: Database, url: str, allowed: bool
) -> None:
    async with delivery_api(db, environment=Environment.PRODUCTION) as api:
        response = await api.http.post(
            "/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=api.admin
        )
    assert (response.status_code == 201) is allowed, response.text


async def test_production_allows_listed_hosts(db: Database) -> None:
    async with delivery_api(
        db, environment=Environment.PRODUCTION, webhook_allowed_hosts=["10.1.2.3"]
    ) as api:
        response = await api.http.post(
            "/api/v1/webhooks",
            json={"url": "http://10.1.2.3/hook", "event_types": ["*"]},
            headers=api.admin,
        )
    assert response.status_code == 201


async def test_production_refuses_to_deliver_to_a_name_that_now_resolves_privately(
    db: Database,
) -> None:
    settings = ChannelSettings(environment=Environment.PRODUCTION)
    async with delivery_api(db) as api:
        delivery = WebhookDelivery(api.webhooks.store, settings)
        await subscribe(api, "https://localhost.example.invalid/", "*")
        subscription = (await delivery.matching("x"))[0]
        subscription = subscription.model_copy(update={"url": "https://localhost:9/hook"})
        with pytest.raises(PermanentDeliveryError, match="private address"):
            await delivery.deliver(subscription, b"{}", "dlv-private")
        await delivery.close()


async def test_production_connects_to_the_address_it_checked(db: Database) -> None:
    """No second lookup that a rebinding name could answer with a private address: the
    connection goes to the checked address, with the name in Host and TLS."""
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.215.14"] if len(lookups) == 1 else ["127.0.0.1"]

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    settings = ChannelSettings(environment=Environment.PRODUCTION)
    async with delivery_api(db) as api:
        client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        delivery = WebhookDelivery(api.webhooks.store, settings, client=client, resolver=rebinding)
        created = await subscribe(api, "https://hooks.example.com:8443/in?x=1", "*")
        subscription = await api.webhooks.store.get(created["id"])
        await delivery.deliver(subscription, b"{}", "dlv-pinned")
        [request] = seen
        assert str(request.url) == "https://93.184.215.14:8443/in?x=1"
        assert request.headers["host"] == "hooks.example.com:8443"
        assert request.extensions["sni_hostname"] == "hooks.example.com"

        with pytest.raises(PermanentDeliveryError, match=r"private address 127\.0\.0\.1"):
            await delivery.deliver(subscription, b"{}", "dlv-rebound")
        assert len(seen) == 1  # nothing was sent to the private address
        await delivery.close()


class Endless(httpx.AsyncByteStream):
    """An answer body that never ends."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536


async def test_a_receiver_that_answers_without_end_is_read_only_as_far_as_needed(
    api: DeliveryApi,
) -> None:
    created = await subscribe(api, "https://hooks.example.com/in", "*")
    subscription = await api.webhooks.store.get(created["id"])
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(503, stream=Endless()))
    )
    delivery = WebhookDelivery(
        api.webhooks.store, ChannelSettings(webhook_timeout_seconds=30), client=client
    )
    try:
        with pytest.raises(TransientDeliveryError, match=r"answered 503: x{200}$"):
            await delivery.deliver(subscription, b"{}", "dlv-endless")
    finally:
        await delivery.close()


async def test_only_admins_manage_webhooks(api: DeliveryApi) -> None:
    body = {"url": "https://example.com/hook", "event_types": ["*"]}
    agent = await api.http.post("/api/v1/webhooks", json=body, headers=api.agent)
    assert agent.status_code == 403
    customer = await api.http.get("/api/v1/webhooks", headers=api.customer("c-1"))
    assert customer.status_code == 403


async def test_a_test_delivery_tells_the_integrator_how_their_receiver_answered(
    api: DeliveryApi, receiver: Receiver
) -> None:
    good = await subscribe(api, receiver.url("/ok"), "crm.*")
    response = await api.http.post(f"/api/v1/webhooks/{good['id']}/test", headers=api.admin)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["delivered"] is True
    headers, body = next(
        r for r in receiver.received if r[0]["webhook-id"] == answer["delivery_id"]
    )
    Webhook(good["secret"]).verify(body, headers)
    test_event = read_cloudevent(headers, body)
    assert test_event.get_type() == "rapport.webhook.test"
    assert test_event.get_data() == {"subscription_id": good["id"]}
    uuid.UUID(test_event.get_id())

    failing = await subscribe(api, receiver.url("/status/503"), "crm.*")
    response = await api.http.post(f"/api/v1/webhooks/{failing['id']}/test", headers=api.admin)
    assert response.json()["delivered"] is False
    assert response.json()["retryable"] is True
    assert "503" in response.json()["error"]
    missing = await api.http.post("/api/v1/webhooks/wh_nope/test", headers=api.admin)
    assert missing.status_code == 404


async def test_the_api_documents_how_to_verify_a_delivery(api: DeliveryApi) -> None:
    document = (await api.http.get("/openapi.json")).json()
    described = document["paths"]["/api/v1/webhooks"]["post"]["description"]
    for recipe in ("webhook-timestamp", "HMAC-SHA256", "whsec_", "300 s"):
        assert recipe in described


# -- what the dispatcher sends ------------------------------------------------------------

NOON = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
ZAGREB = ZoneInfo("Europe/Zagreb")


class Nowhere:
    """E-mail and in-app messages go nowhere in these tests: the webhook is what counts."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def send(self, message: OutgoingMessage) -> None:
        return None


@pytest.fixture
async def ctx(mongo_client: MongoClient, db: Database) -> AsyncIterator[Notifications]:
    notifications = core(mongo_client, db, DrivenClock(NOON))
    await prepare(notifications)
    webhooks = WebhookDelivery(WebhookStore(db), ChannelSettings(webhook_timeout_seconds=30))
    await webhooks.ensure_indexes()
    notifications.webhooks = webhooks
    yield notifications
    await webhooks.close()


async def subscribed(ctx: Notifications, url: str, *patterns: str) -> Subscription:
    subscription = Subscription(
        id=f"wh_{uuid.uuid4().hex}", url=url, event_types=list(patterns), created_at=NOON,
        secret=new_secret(),
    )  # fmt: skip
    assert isinstance(ctx.webhooks, WebhookDelivery)
    await ctx.webhooks.store.insert(subscription)
    return subscription


def dispatcher(ctx: Notifications, db: Database) -> Dispatcher:
    senders = {channel: Nowhere(channel) for channel in (Channel.EMAIL, Channel.IN_APP)}
    return Dispatcher(ctx, JinjaTemplateRenderer(TemplateStore(db)), senders)


def registration(customer_id: str, **fields: Any) -> CustomerRegistered:
    return CustomerRegistered.model_validate(
        {"customer_id": customer_id, "given_name": "Ivana", "locale": "hr",
         "emails": [f"{customer_id}@example.hr"], "time_zone": "Europe/Zagreb",
         "created_at": NOON, "updated_at": NOON, "version": 1, **fields}
    )  # fmt: skip


async def test_the_body_is_the_triggering_event_itself(
    ctx: Notifications, db: Database, receiver: Receiver
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    subscription = await subscribed(ctx, receiver.url("/ok"), "crm.purchase.*")
    await apply(ctx, registration(customer_id))
    purchase = PurchaseCompleted.model_validate(
        {"purchase_id": f"o-{customer_id}", "customer_id": customer_id, "total_amount": "9.80",
         "currency": "EUR", "channel": "web",
         "items": [{"sku": "TEA-1", "name": "Zeleni čaj", "category": "tea", "quantity": 2,
                    "unit_price": "4.90"}]}
    )  # fmt: skip
    triggering = await apply(ctx, purchase)
    await dispatcher(ctx, db).run_once()

    [delivery] = await ctx.ledger.deliveries.find({"channel": "webhook"}).to_list()
    assert delivery["status"] == "sent", delivery
    headers, body = next(r for r in receiver.received if r[0]["webhook-id"] == delivery["_id"])
    Webhook(subscription.secret).verify(body, headers)
    event = read_cloudevent(headers, body)
    assert event.get_id() == triggering.id
    assert event.get_type() == "crm.purchase.completed"
    assert event.get_source() == triggering.source
    assert event.get_subject() == customer_id
    assert event.get_time() == triggering.time
    data = event.get_data()
    assert data == purchase.model_dump(mode="json")
    assert isinstance(data, dict)
    assert data["total_amount"] == "9.80"  # money stays a decimal string

    # The kept copy of the event goes with the customer's other personal data.
    await apply(ctx, CustomerErased(customer_id=customer_id, erased_at=NOON))
    erased = await ctx.ledger.deliveries.find_one({"_id": delivery["_id"]})
    assert erased is not None
    assert erased["cloudevent"] is None


async def test_a_scheduled_message_is_a_notification_cloudevent(
    ctx: Notifications, db: Database, receiver: Receiver
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    pattern = f"rapport.notifications.schedule.{r.RENEWAL_REMINDER}"
    subscription = await subscribed(ctx, receiver.url("/ok"), pattern)
    await ctx.rule_store.put(r.RENEWAL_REMINDER, {"channels": ["webhook"]})
    contract = ContractSummary(
        contract_id="ins-1", product="Home insurance", status=ContractStatus.ACTIVE,
        renews_at=date(2027, 1, 10), auto_renew=False,
    )  # fmt: skip
    await apply(ctx, registration(customer_id, contracts=[contract]))
    assert isinstance(ctx.clock, DrivenClock)
    fired_at = datetime(2026, 12, 11, 9, 0, tzinfo=ZAGREB).astimezone(UTC)
    assert await fire_due(ctx, ctx.clock.set(fired_at)) == 1
    await dispatcher(ctx, db).run_once()

    [delivery] = await ctx.ledger.deliveries.find({"channel": "webhook"}).to_list()
    assert delivery["status"] == "sent", delivery
    headers, body = next(r for r in receiver.received if r[0]["webhook-id"] == delivery["_id"])
    Webhook(subscription.secret).verify(body, headers)
    event = read_cloudevent(headers, body)
    assert event.get_type() == pattern
    assert event.get_source() == "/rapport/notifications"
    assert event.get_subject() == customer_id
    assert event.get_time() == fired_at
    uuid.UUID(event.get_id())
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["contract_id"] == "ins-1"
    assert data["days_left"] == 30
    assert data["customer_name"] == "Ivana"


async def test_a_sign_in_link_never_reaches_a_webhook_whatever_its_filter(
    ctx: Notifications, db: Database, receiver: Receiver
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    subscriptions = [
        await subscribed(ctx, receiver.url("/ok"), pattern)
        for pattern in ("crm.customer.*", "*", "crm.customer.sign_in_requested")
    ]
    # No filter matches it, whichever rule the event fires (the link's own is e-mail only).
    assert not any(s.matches("crm.customer.sign_in_requested") for s in subscriptions)
    assert all(s.matches("crm.customer.registered") for s in subscriptions[:2])
    await apply(ctx, registration(customer_id))
    link = SignInRequested(
        customer_id=customer_id, email=f"{customer_id}@example.hr",
        sign_in_url=f"https://portal.example.com/sign-in#token={uuid.uuid4().hex}",
        expires_at=NOON + timedelta(minutes=15), requested_at=NOON, locale="hr",
    )  # fmt: skip
    requested = await apply(ctx, link)
    # What the same subscriptions do receive: a purchase, through "*".
    purchase = PurchaseCompleted.model_validate(
        {"purchase_id": f"o-{customer_id}", "customer_id": customer_id, "total_amount": "4.90",
         "currency": "EUR", "channel": "web",
         "items": [{"sku": "TEA-1", "name": "Zeleni čaj", "category": "tea", "quantity": 1,
                    "unit_price": "4.90"}]}
    )  # fmt: skip
    bought = await apply(ctx, purchase)
    await dispatcher(ctx, db).run_once()

    deliveries = await ctx.ledger.deliveries.find({"customer_id": customer_id}).to_list()
    for_link = [d for d in deliveries if d["source_event_id"] == requested.id]
    assert [(d["rule"], d["channel"], d["status"]) for d in for_link] == [
        ("sign_in_link", "email", "sent")
    ]
    webhooks = {d["_id"]: d for d in deliveries if d["channel"] == "webhook"}
    assert {d["source_event_id"] for d in webhooks.values()} == {bought.id}
    assert all(d["status"] == "sent" for d in webhooks.values())
    bodies = [body for headers, body in receiver.received if headers["webhook-id"] in webhooks]
    assert len(bodies) == 1
    assert all(link.sign_in_url.encode() not in body for _, body in receiver.received)
