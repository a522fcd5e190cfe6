"""The worker's handlers: erasure, merges, respect decisions recorded with reasons, poison
events dead-lettered; and the core's HTTP API (preferences, rules, the ledger)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifications.planning import Notifications
from services.notifications.preferences_domain import CustomerPreferences
from services.notifications.scheduling import fire_due
from services.notifications.settings import NotificationsSettings
from shared.auth import Role
from shared.events.complaints import ComplaintOpened, ComplaintSlaBreached, SlaSeverity
from shared.events.customers import (
    ConsentChanged,
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
)
from shared.events.insights import ChurnRiskChanged
from shared.events.purchases import PurchaseCompleted
from shared.mongo import Database, MongoClient
from shared.topics import PURCHASES, TopicNames
from tests.kafka_reading import read_topic
from tests.notifications.harness import (
    apply,
    core,
    prepare,
    produce_foreign,
    purchase_cloudevent,
    running,
    service_settings,
)
from tests.service_harness import DrivenClock, eventually

DAYTIME = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 11:00 in Zagreb


def registration(customer_id: str, **fields: Any) -> CustomerRegistered:
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "given_name": "Mateja",
        "family_name": "Novak",
        "emails": [f"{customer_id}@example.si"],
        "locale": "sl",
        "time_zone": "Europe/Ljubljana",
        "created_at": DAYTIME,
        "updated_at": DAYTIME,
        "version": 1,
        **fields,
    }
    return CustomerRegistered(**values)


def purchase(customer_id: str, purchase_id: str = "o-1", **fields: Any) -> PurchaseCompleted:
    return PurchaseCompleted.model_validate(
        {
            "purchase_id": purchase_id,
            "customer_id": customer_id,
            "items": [{"sku": "S", "name": "Kava", "category": "coffee", "quantity": 1,
                       "unit_price": "7.50"}],
            "total_amount": "7.50",
            "currency": "EUR",
            "channel": "store",
            **fields,
        }
    )  # fmt: skip


def churn(customer_id: str) -> ChurnRiskChanged:
    return ChurnRiskChanged.model_validate(
        {"customer_id": customer_id, "previous_level": "low", "level": "high", "score": 0.8,
         "changed_at": DAYTIME}
    )  # fmt: skip


def consent(customer_id: str, channel: str, purpose: str, granted: bool) -> ConsentChanged:
    return ConsentChanged.model_validate(
        {"customer_id": customer_id, "channel": channel, "purpose": purpose,
         "granted": granted, "source": "test", "changed_at": DAYTIME}
    )  # fmt: skip


@pytest.fixture
async def ctx(mongo_client: MongoClient, db: Database) -> Notifications:
    notifications = core(mongo_client, db, DrivenClock(DAYTIME))
    await prepare(notifications)
    return notifications


async def ledger(ctx: Notifications, customer_id: str) -> list[dict[str, Any]]:
    cursor = ctx.ledger.deliveries.find({"customer_id": customer_id}).sort("created_at", 1)
    return [document async for document in cursor]


async def test_the_same_trigger_twice_records_one_delivery_per_channel(
    ctx: Notifications,
) -> None:
    await apply(ctx, registration("c-1"))
    first = await apply(ctx, purchase("c-1"))
    await apply(ctx, purchase("c-1"), event_id=first.id)  # replayed past the consumer's marker
    channels = [d["channel"] for d in await ledger(ctx, "c-1")]
    assert sorted(channels) == ["email", "in_app"]


async def test_erasure_anonymises_the_ledger_and_cancels_what_was_pending(
    ctx: Notifications,
) -> None:
    await apply(ctx, registration("c-gone", birthday="1990-05-05"))
    await apply(ctx, purchase("c-gone", "o-failed"))
    # An earlier message failed with a reason that quotes the address.
    await ctx.ledger.deliveries.update_many(
        {"customer_id": "c-gone"},
        {"$set": {"status": "failed", "reason": "550 <c-gone@example.si> unknown user"}},
    )
    await apply(ctx, purchase("c-gone"))
    await apply(ctx, CustomerErased(customer_id="c-gone", erased_at=DAYTIME))
    entries = await ledger(ctx, "c-gone")
    failed = [entry for entry in entries if entry["status"] == "failed"]
    assert len(failed) == 2
    assert {entry["reason"] for entry in failed} == {
        "delivery failed (the details were erased with the customer)"
    }
    entries = [entry for entry in entries if entry["status"] != "failed"]
    assert entries
    assert all(entry["status"] == "cancelled" for entry in entries)
    everything = await ledger(ctx, "c-gone")
    assert all(entry["address"] is None and entry["context"] == {} for entry in everything)
    customer = await ctx.directory.customers.find_one({"_id": "c-gone"})
    assert customer is not None
    assert "emails" not in customer
    assert "given_name" not in customer
    assert "birthday" not in customer
    schedule = await ctx.schedules.get("birthday_greeting:c-gone")
    assert schedule is not None
    assert schedule.status.value == "cancelled"
    # A purchase arriving after the erasure tells nobody.
    await apply(ctx, purchase("c-gone", "o-2"))
    late = [e for e in await ledger(ctx, "c-gone") if e["context"].get("purchase_id") == "o-2"]
    assert all(entry["status"] == "suppressed" for entry in late)
    assert {entry["reason"] for entry in late} == {"customer erased"}


async def test_a_merge_moves_pending_messages_and_complaint_reports_and_undo_moves_back(
    ctx: Notifications,
) -> None:
    await apply(ctx, registration("c-src"))
    await apply(ctx, registration("c-dst"))
    await apply(
        ctx,
        ComplaintOpened.model_validate(
            {"complaint_id": "k-1", "customer_id": "c-src", "channel": "web",
             "category": "billing", "subject": "Double charge", "description": "twice",
             "priority": "high", "opened_at": DAYTIME}
        ),
    )  # fmt: skip
    merged = {"customer_id": "c-dst", "source_customer_id": "c-src", "merged_at": DAYTIME}
    await apply(ctx, CustomerMerged.model_validate(merged))
    assert {d["customer_id"] for d in await ledger(ctx, "c-dst")} == {"c-dst"}
    assert not [d for d in await ledger(ctx, "c-src") if d["status"] == "pending"]
    report = await ctx.schedules.get("complaint_daily_status:k-1")
    assert report is not None
    assert report.customer_id == "c-dst"
    survivor = await ctx.directory.get("c-src")
    assert survivor is not None
    assert survivor.id == "c-dst"
    assert survivor.open_complaints == ("k-1",)

    await apply(ctx, CustomerMerged.model_validate({**merged, "undone": True}))
    report = await ctx.schedules.get("complaint_daily_status:k-1")
    assert report is not None
    assert report.customer_id == "c-src"
    back = await ctx.directory.get("c-src")
    assert back is not None
    assert back.id == "c-src"


async def test_an_opt_out_made_on_a_merged_away_profile_still_holds(ctx: Notifications) -> None:
    await apply(ctx, registration("c-old"))
    await apply(ctx, registration("c-new"))
    opt_out = CustomerPreferences.model_validate(
        {"opt_outs": [{"channel": "email", "purpose": "transactional"}]}
    )
    await ctx.preferences.put("c-old", opt_out, DAYTIME)
    merged = {"customer_id": "c-new", "source_customer_id": "c-old", "merged_at": DAYTIME}
    await apply(ctx, CustomerMerged.model_validate(merged))

    during = await apply(ctx, purchase("c-new", "o-merged"))
    emails = [d for d in await ledger(ctx, "c-new") if d["source_event_id"] == during.id]
    by_channel = {d["channel"]: d for d in emails}
    assert by_channel["email"]["reason"] == "customer opted out of transactional email"
    assert by_channel["in_app"]["status"] == "pending"

    await apply(ctx, CustomerMerged.model_validate({**merged, "undone": True}))
    after = await apply(ctx, purchase("c-new", "o-apart"))
    [email] = [
        d
        for d in await ledger(ctx, "c-new")
        if d["source_event_id"] == after.id and d["channel"] == "email"
    ]
    assert email["status"] == "pending"


async def test_preferences_show_what_a_merge_brought_until_the_customer_chooses_again(
    settings: NotificationsSettings,
) -> None:
    async with running(settings, DrivenClock(DAYTIME)) as service:
        ctx = service.notifications
        await apply(ctx, registration("c-gone"))
        await apply(ctx, registration("c-kept"))
        no_mail = {"opt_outs": [{"channel": "email", "purpose": "transactional"}]}
        await service.call("PUT", "/customers/c-gone/preferences", json=no_mail)
        merged = {"customer_id": "c-kept", "source_customer_id": "c-gone", "merged_at": DAYTIME}
        await apply(ctx, CustomerMerged.model_validate(merged))

        inherited = await service.call("GET", "/customers/c-kept/preferences")
        assert inherited["opt_outs"] == no_mail["opt_outs"]
        # The merged-away id answers for the survivor.
        assert await service.call("GET", "/customers/c-gone/preferences") == inherited

        # The customer chooses again: that replaces what the merge brought.
        await service.call("PUT", "/customers/c-kept/preferences", json={"opt_outs": []})
        assert (await service.call("GET", "/customers/c-kept/preferences"))["opt_outs"] == []
        await apply(ctx, purchase("c-kept", "o-after-choice"))
        [email] = [d for d in await service.deliveries("c-kept") if d["channel"] == "email"]
        assert email["status"] != "suppressed", email

        # Undone, the merged-away profile has its own choice back.
        await apply(ctx, CustomerMerged.model_validate({**merged, "undone": True}))
        back = await service.call("GET", "/customers/c-gone/preferences")
        assert back["opt_outs"] == no_mail["opt_outs"]


async def test_no_marketing_during_an_open_complaint_and_a_daily_cap(
    mongo_client: MongoClient, db: Database
) -> None:
    ctx = core(mongo_client, db, DrivenClock(DAYTIME))
    ctx.marketing_cap = 1
    await prepare(ctx)
    await apply(ctx, registration("c-m"))
    await apply(ctx, consent("c-m", "email", "marketing", True))
    await apply(
        ctx,
        ComplaintOpened.model_validate(
            {"complaint_id": "k-9", "customer_id": "c-m", "channel": "web", "category": "x",
             "subject": "s", "description": "d", "priority": "low", "opened_at": DAYTIME}
        ),
    )  # fmt: skip
    during = await apply(ctx, churn("c-m"))
    offers = [d for d in await ledger(ctx, "c-m") if d["source_event_id"] == during.id]
    email_offer = next(
        d for d in offers if d["rule"] == "retention_offer" and d["channel"] == "email"
    )
    assert email_offer["reason"] == "no marketing while a complaint is open"

    await ctx.directory.customers.update_one({"_id": "c-m"}, {"$set": {"open_complaints": []}})
    first = await apply(ctx, churn("c-m"))
    second = await apply(ctx, churn("c-m"))
    by_event = {
        d["source_event_id"]: d
        for d in await ledger(ctx, "c-m")
        if d["rule"] == "retention_offer" and d["channel"] == "email"
    }
    assert by_event[first.id]["status"] == "pending"
    assert by_event[second.id]["reason"] == "daily marketing cap of 1 reached"


async def test_an_sla_breach_goes_to_the_team_not_the_customer(ctx: Notifications) -> None:
    ctx.team_addresses = {"escalations": "esc@rapport.test"}
    await apply(ctx, registration("c-sla"))
    breach = ComplaintSlaBreached.model_validate(
        {"complaint_id": "k-2", "customer_id": "c-sla", "clock": "resolution",
         "severity": "breach", "due_at": DAYTIME, "detected_at": DAYTIME, "priority": "urgent",
         "escalated_to": "escalations"}
    )  # fmt: skip
    await apply(ctx, breach)
    warning = breach.model_copy(update={"severity": SlaSeverity.WARNING})
    await apply(ctx, warning)
    escalations = [d for d in await ledger(ctx, "c-sla") if d["rule"] == "sla_escalation"]
    assert [(d["channel"], d["address"], d["audience"]) for d in escalations] == [
        ("email", "esc@rapport.test", "staff")
    ]


async def test_a_birthday_follows_the_time_zone_the_profile_names(ctx: Notifications) -> None:
    await apply(ctx, registration("c-tz", birthday="1980-11-24", time_zone="Asia/Tehran"))
    schedule = await ctx.schedules.get("birthday_greeting:c-tz")
    assert schedule is not None
    assert schedule.due_at == datetime(2026, 11, 24, 5, 30, tzinfo=UTC)  # 09:00 in Tehran
    assert await fire_due(ctx, datetime(2026, 11, 24, 5, 29, tzinfo=UTC)) == 0


# -- over Kafka and HTTP ---------------------------------------------------------------


@pytest.fixture
def settings(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database
) -> NotificationsSettings:
    return service_settings(kafka_bootstrap, mongodb_uri, topics, db, smtp_port=9)


async def test_an_unusable_purchase_is_dead_lettered_with_its_reason_and_the_worker_goes_on(
    settings: NotificationsSettings, topics: TopicNames, kafka_bootstrap: str
) -> None:
    async with running(settings, DrivenClock(DAYTIME)) as service:
        nobody = purchase_cloudevent(
            str(uuid.uuid4()), "shop:404", "o-x", customer_id=None,
            customer_external_id="shop:404",
        )  # fmt: skip
        produce_foreign(kafka_bootstrap, topics(PURCHASES), "shop:404", nobody)
        produce_foreign(kafka_bootstrap, topics(PURCHASES), "x", b"{not json")
        after = purchase_cloudevent(str(uuid.uuid4()), "c-after", "o-after")
        produce_foreign(kafka_bootstrap, topics(PURCHASES), "c-after", after)

        dead = await read_topic(
            kafka_bootstrap,
            topics.dlq(topics(PURCHASES)),
            until=lambda found: len(found) >= 2,
            timeout=60,
        )
        reasons = sorted(dict(record.headers)["dlq-reason"].decode() for record in dead)
        assert any("unknown customer" in reason and "shop:404" in reason for reason in reasons)

        async def went_on() -> bool:
            return bool(await service.deliveries("c-after"))

        await eventually(went_on, message="the worker stopped after the poison events")


async def test_a_customer_manages_their_own_preferences_and_they_are_respected(
    settings: NotificationsSettings,
) -> None:
    async with running(settings, DrivenClock(DAYTIME)) as service:
        mine = service.as_(Role.CUSTOMER, customer_id="c-pref")
        body = {
            "opt_outs": [{"channel": "email", "purpose": "transactional"}],
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        }
        saved = await service.call("PUT", "/customers/c-pref/preferences", mine, json=body)
        assert saved["opt_outs"] == body["opt_outs"]
        other = await service.http.put(
            "/api/v1/customers/c-other/preferences", headers=mine, json=body
        )
        assert other.status_code == 403
        bad = await service.http.put(
            "/api/v1/customers/c-pref/preferences",
            headers=mine,
            json={"quiet_hours": {"start": "25:00", "end": "07:00"}},
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")

        await apply(service.notifications, registration("c-pref"))
        await apply(service.notifications, purchase("c-pref"))
        [email] = await service.deliveries("c-pref", status="suppressed")
        assert email["reason"] == "customer opted out of transactional email"
        own = await service.call("GET", "/deliveries", mine)
        assert {d["customer_id"] for d in own["items"]} == {"c-pref"}
        assert (await service.call("GET", f"/deliveries/{email['id']}", mine))["id"] == email["id"]

        # Another customer's token reads none of it.
        theirs = service.as_(Role.CUSTOMER, customer_id="c-other")
        for path, params in [
            ("/customers/c-pref/preferences", {}),
            (f"/deliveries/{email['id']}", {}),
            ("/deliveries", {"customer_id": "c-pref"}),
        ]:
            response = await service.http.get(f"/api/v1{path}", headers=theirs, params=params)
            assert response.status_code == 403, path
        listed = await service.call("GET", "/deliveries", theirs)
        assert listed["items"] == []


async def test_a_customer_does_not_see_the_internal_messages_about_them(
    settings: NotificationsSettings,
) -> None:
    async with running(settings, DrivenClock(DAYTIME)) as service:
        await apply(service.notifications, registration("c-risk"))
        await apply(service.notifications, churn("c-risk"))
        staff_view = await service.deliveries("c-risk")
        [alert] = [d for d in staff_view if d["rule"] == "churn_alert_owner"]

        mine = service.as_(Role.CUSTOMER, customer_id="c-risk")
        own = await service.call("GET", "/deliveries", mine)
        assert {d["rule"] for d in own["items"]} == {"retention_offer"}
        hidden = await service.http.get(f"/api/v1/deliveries/{alert['id']}", headers=mine)
        assert hidden.status_code == 404


async def test_rules_are_listed_and_only_an_admin_switches_them(
    settings: NotificationsSettings,
) -> None:
    async with running(settings, DrivenClock(DAYTIME)) as service:
        rules = await service.call("GET", "/rules", service.as_(Role.AGENT))
        assert len(rules) == 12
        renewal = next(rule for rule in rules if rule["name"] == "renewal_reminder")
        assert renewal["parameters"]["days_before"] == [30, 7, 1]

        agent = await service.http.put(
            "/api/v1/rules/purchase_thank_you", headers=service.as_(Role.AGENT),
            json={"enabled": False},
        )  # fmt: skip
        assert agent.status_code == 403
        wrong = await service.http.put(
            "/api/v1/rules/renewal_reminder", headers=service.admin,
            json={"parameters": {"days_before": ["soon"]}},
        )  # fmt: skip
        assert wrong.status_code == 422
        changed = await service.call(
            "PUT", "/rules/renewal_reminder", json={"parameters": {"days_before": [14, 2]}}
        )
        assert changed["parameters"]["days_before"] == [14, 2]
        off = await service.call("PUT", "/rules/purchase_thank_you", json={"enabled": False})
        assert off["enabled"] is False

        await apply(service.notifications, registration("c-off"))
        await apply(service.notifications, purchase("c-off"))
        assert await service.deliveries("c-off") == []
        missing = await service.http.get("/api/v1/rules/nope", headers=service.admin)
        assert missing.status_code == 404
