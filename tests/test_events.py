"""The CloudEvents envelope, typed payloads, the registry and the published schemas."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from shared.events import CONTRACT_EVENTS, DEFAULT_REGISTRY, InvalidEvent, decode, encode, new_event
from shared.events.base import ERASED_TEXT, EventPayload, Identifier
from shared.events.complaints import ComplaintResolved, ResolutionType
from shared.events.customers import (
    CustomerErased,
    CustomerRegistered,
    InteractionLogged,
    SignInRequested,
)
from shared.events.purchases import PurchaseCompleted
from shared.events.registry import SECRET_EVENT_TYPES, EventRegistry
from shared.events.schemas import DEFAULT_FOLDER, stale_files
from shared.events.schemas import main as schemas_main
from shared.topics import PURCHASES

CONTRACT_TYPES = {
    "crm.customer.registered",
    "crm.customer.updated",
    "crm.customer.merged",
    "crm.customer.erased",
    "crm.customer.consent_changed",
    "crm.interaction.logged",
    "crm.customer.sign_in_requested",
    "crm.customer.signed_out",
    "crm.purchase.completed",
    "crm.purchase.returned",
    "crm.complaint.opened",
    "crm.complaint.acknowledged",
    "crm.complaint.status_changed",
    "crm.complaint.replied",
    "crm.complaint.resolved",
    "crm.complaint.reopened",
    "crm.complaint.closed",
    "crm.complaint.sla_breached",
    "crm.complaint.feedback_received",
    "crm.community.question_asked",
    "crm.community.answer_posted",
    "crm.community.answer_accepted",
    "crm.notification.sent",
    "crm.notification.failed",
    "crm.notification.suppressed",
    "crm.customer.segment_changed",
    "crm.customer.churn_risk_changed",
}


def purchase_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "purchase_id": "p-1",
        "customer_id": "c-42",
        "items": [
            {
                "sku": "TEA-1",
                "name": "Green tea",
                "category": "tea",
                "quantity": 2,
                "unit_price": "4.95",
            }
        ],
        "total_amount": "9.90",
        "currency": "EUR",
        "channel": "web",
    }
    data.update(overrides)
    return data


def structured(data: dict[str, Any], **attributes: Any) -> bytes:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/shop",
        "type": "crm.purchase.completed",
        "subject": data.get("customer_id"),
        "time": "2026-11-22T10:00:00+01:00",
        "datacontenttype": "application/json",
        "data": data,
    }
    envelope.update(attributes)
    return json.dumps({k: v for k, v in envelope.items() if v is not None}).encode()


def test_every_contract_event_type_is_registered() -> None:
    assert set(DEFAULT_REGISTRY.types()) == CONTRACT_TYPES


def test_envelope_round_trip_keeps_attributes_payload_and_money() -> None:
    payload = PurchaseCompleted.model_validate(purchase_data())
    event = new_event(
        payload,
        source="/rapport/tests",
        extensions={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )

    record = encode(event)
    decoded = decode(record.value, record.headers)

    assert decoded == event
    assert record.key == b"c-42"
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    wire = json.loads(record.value)
    assert wire["specversion"] == "1.0"
    assert wire["subject"] == "c-42"
    assert wire["dataschema"] == "urn:rapport:schema:crm.purchase.completed:v1"
    assert wire["time"].endswith("Z")
    assert wire["data"]["total_amount"] == "9.90"  # a decimal string, never a float
    assert decoded.payload.total_amount == Decimal("9.90")  # type: ignore[attr-defined]


def test_binary_mode_from_a_foreign_producer_is_read_too() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"/pos"),
        ("ce_type", b"crm.purchase.completed"),
        ("ce_subject", b"c-42"),
        ("ce_time", b"2026-11-22T09:00:00Z"),
        ("content-type", b"application/json"),
    ]
    decoded = decode(json.dumps(purchase_data()).encode(), headers)
    assert decoded.payload.event_type == "crm.purchase.completed"
    assert decoded.subject == "c-42"


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-22T10:00:00Z",
        "2026-11-22T10:00:00.123456789Z",  # nanoseconds, as Go and Java producers write
        "2026-11-22T10:00:00+05:30",
        "2026-11-22 10:00:00-00:00",
        # What the standard library refuses and dateutil takes, as the SDK's format does.
        "2026-11-22t10:00:00z",
        "2026-11-22T24:00:00Z",
    ],
)
def test_event_times_are_read_as_the_cloudevents_sdk_reads_them(time: str) -> None:
    value = structured(purchase_data(), time=time)
    sdk = ce_kafka.from_structured(ce_kafka.KafkaMessage({}, None, value), JSONFormat())
    decoded = decode(value, [("content-type", b"application/cloudevents+json")])
    assert sdk.get_time() is not None
    assert decoded.time == sdk.get_time()  # the same instant


def test_data_in_base64_is_refused_as_the_sdk_decodes_it() -> None:
    envelope = json.loads(structured(purchase_data()))
    envelope["data_base64"] = base64.b64encode(json.dumps(envelope.pop("data")).encode()).decode()
    with pytest.raises(InvalidEvent, match="data must be a JSON object"):
        decode(json.dumps(envelope).encode(), [("content-type", b"application/cloudevents+json")])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty message"),
        (b"{not json", "not JSON"),
        (b'{"specversion": "1.0", "type": "crm.purchase.completed"}', "not a CloudEvent"),
        (structured(purchase_data(), specversion="0.3"), "not a CloudEvent"),
        (structured(purchase_data(), id="order-7"), "is not a UUID"),
        (structured(purchase_data(), time="2026-11-22T10:00:00"), "time"),
        (structured(purchase_data(), type="crm.purchase.teleported"), "unknown event type"),
        (structured(purchase_data(total_amount=9.9)), "never a number"),
        (structured(purchase_data(currency="euro")), "currency"),
        # More than a store's decimal keeps exactly, a quantity whose sums overflow
        # a 64-bit integer: refused here, not by the database half-way through a batch.
        (structured(purchase_data(total_amount="1" * 35)), "more than 34 significant digits"),
        (structured(purchase_data(total_amount="0." + "1" * 40)), "significant digits"),
        (
            structured(purchase_data(items=[{**purchase_data()["items"][0], "quantity": 10**31}])),
            "less than or equal to 1000000000",
        ),
        (structured(purchase_data(items=[])), "items"),
        (structured(purchase_data(), subject="someone-else"), "is not the event's customer"),
        (
            structured(purchase_data(), dataschema="urn:rapport:schema:crm.purchase.completed:v9"),
            "newer than",
        ),
        (structured(purchase_data(), datacontenttype="text/csv"), "datacontenttype"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as rejected:
        decode(value, [("content-type", b"application/cloudevents+json")])
    assert reason in rejected.value.reason


def test_a_purchase_may_name_its_customer_by_email_only() -> None:
    data = purchase_data(customer_id=None, customer_email="ana@example.hr")
    decoded = decode(structured(data, subject="ana@example.hr"))
    assert decoded.subject == "ana@example.hr"
    with pytest.raises(InvalidEvent, match="names its customer"):
        decode(structured(purchase_data(customer_id=None)))


def test_refund_amount_needs_its_currency() -> None:
    with pytest.raises(ValueError, match="go together"):
        ComplaintResolved(
            complaint_id="k-1",
            customer_id="c-1",
            resolution_type=ResolutionType.REFUND,
            summary="refunded",
            refund_amount=Decimal("5.00"),
            resolved_at=datetime.now(UTC),
        )


class GreetingV2(EventPayload):
    event_type = "test.greeting"
    schema_version = 2
    topic = PURCHASES

    customer_id: Identifier
    full_name: str


def test_older_versions_are_upcast_instead_of_breaking_consumers() -> None:
    registry = EventRegistry.of([GreetingV2])
    registry.register_upcaster(
        "test.greeting",
        1,
        lambda data: {
            "customer_id": data["customer_id"],
            "full_name": f"{data['first']} {data['last']}",
        },
    )
    payload = registry.parse(
        "test.greeting", 1, {"customer_id": "c", "first": "Ana", "last": "Horvat"}
    )
    assert payload == GreetingV2(customer_id="c", full_name="Ana Horvat")
    with pytest.raises(LookupError, match="no upcaster"):
        EventRegistry.of([GreetingV2]).parse("test.greeting", 1, {"customer_id": "c"})


def test_published_schemas_are_fresh() -> None:
    assert stale_files(DEFAULT_FOLDER) == [], "run `make schemas` and commit schemas/events"
    assert len(list(DEFAULT_FOLDER.glob("*.json"))) == len(CONTRACT_EVENTS)


def test_schema_check_fails_on_a_stale_folder(tmp_path: Path) -> None:
    assert schemas_main(["--folder", str(tmp_path)]) == 0
    assert schemas_main(["--folder", str(tmp_path), "--check"]) == 0
    schema = tmp_path / "crm.purchase.completed.v1.json"
    schema.write_text(schema.read_text().replace("total_amount", "total"))
    assert schemas_main(["--folder", str(tmp_path), "--check"]) == 1
    document = json.loads((tmp_path / "crm.complaint.opened.v1.json").read_text())
    assert document["properties"]["type"] == {"const": "crm.complaint.opened"}
    assert "complaint_id" in document["properties"]["data"]["required"]


# Field names that describe or reach a person: a payload carrying one declares it PERSONAL.
PERSONAL_NAMES = {
    "given_name", "family_name", "preferred_name", "emails", "phones", "address", "birthday",
    "customer_email", "customer_external_id", "subject", "description", "summary",
    "comment", "public_comment", "email", "sign_in_url", "title", "body",
}  # fmt: skip


def test_fields_that_name_a_person_are_declared_personal_on_every_contract_event() -> None:
    undeclared = {
        f"{payload.__name__}.{name}"
        for payload in CONTRACT_EVENTS
        for name in payload.model_fields
        if name in PERSONAL_NAMES and name not in payload.personal_fields()
    }
    assert undeclared == set()
    assert CustomerRegistered.personal_fields()[:3] == (
        "given_name",
        "family_name",
        "preferred_name",
    )


def test_a_scrubbed_payload_keeps_its_shape_and_loses_what_identifies_the_person() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    registered = CustomerRegistered(
        customer_id="c-1", given_name="Ana", emails=["ana@example.com"], phones=["+38591111222"],
        birthday="1990-05-01", tags=["vip"], external_ids={"shop": "42"}, locale="hr",
        created_at=now, updated_at=now, version=1,
    )  # fmt: skip
    scrubbed = registered.scrubbed()
    assert scrubbed.model_dump(include={"given_name", "emails", "phones", "birthday", "tags",
                                        "external_ids"}) == {
        "given_name": None, "emails": [], "phones": [], "birthday": None, "tags": [],
        "external_ids": {},
    }  # fmt: skip
    assert (scrubbed.customer_id, scrubbed.locale, scrubbed.version) == ("c-1", "hr", 1)
    # A text the contract requires becomes "[erased]"; one it allows to be absent, None.
    logged = InteractionLogged(
        interaction_id="i-1", customer_id="c-1", kind="call", direction="inbound",
        channel="phone", summary="Ana called about her divorce", occurred_at=now,
    ).scrubbed()  # fmt: skip
    assert (logged.summary, logged.channel, logged.kind) == (ERASED_TEXT, None, "call")
    # Still valid against its own schema, and unchanged when nothing personal is in it.
    InteractionLogged.model_validate(logged.model_dump(mode="json"))
    erased = CustomerErased(customer_id="c-1", erased_at=now)
    assert erased.scrubbed() is erased


def test_a_sign_in_link_is_a_secret_that_an_erasure_blanks() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    requested = SignInRequested(
        customer_id="c-1", email="ana@example.com", locale="hr", expires_at=now,
        sign_in_url="https://portal.example.com/sign-in#token=abc", requested_at=now,
    )  # fmt: skip
    # The only contract type that carries a credential: it never leaves the platform.
    assert {"crm.customer.sign_in_requested"} == SECRET_EVENT_TYPES
    scrubbed = requested.scrubbed()
    assert (scrubbed.email, scrubbed.sign_in_url) == (None, ERASED_TEXT)
    SignInRequested.model_validate(scrubbed.model_dump(mode="json"))
