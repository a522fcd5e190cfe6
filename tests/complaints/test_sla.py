"""SLA clocks: business time, pauses, warnings and breaches announced exactly once,
escalation, and configuration that recomputes deadlines."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from services.complaints.handlers import check_deadlines
from services.complaints.settings import ComplaintsSettings
from shared.topics import COMPLAINTS, TopicNames
from tests.complaints.conftest import MONDAY_MORNING, Api, running
from tests.complaints.test_complaints import open_one
from tests.kafka_reading import read_topic
from tests.service_harness import DrivenClock, eventually


async def sla_events(kafka_bootstrap: str, topics: TopicNames, count: int | None) -> list[Any]:
    """The SLA announcements on the topic: at least ``count``, or all there are (None)."""

    def alerts(records: list[Any]) -> list[Any]:
        events = [json.loads(record.value) for record in records]
        return [e["data"] for e in events if e["type"] == "crm.complaint.sla_breached"]

    if count is None:
        return alerts(await read_topic(kafka_bootstrap, topics(COMPLAINTS)))
    records = await read_topic(
        kafka_bootstrap, topics(COMPLAINTS), until=lambda records: len(alerts(records)) >= count
    )
    return alerts(records)


async def test_waiting_on_the_customer_pauses_the_resolution_clock(api: Api) -> None:
    complaint = await open_one(api)  # Monday 10:00 Zagreb, normal: 40 h to resolve
    path = f"/complaints/{complaint['id']}"
    await api.call("POST", f"{path}/acknowledge")
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    api.clock.advance(hours=2)
    waiting = await api.call("POST", f"{path}/status", json={"status": "waiting_on_customer"})
    assert waiting["resolution_due_at"] is None
    assert waiting["sla"]["resolution"]["running"] is False
    assert waiting["sla"]["resolution"]["used_minutes"] == 120

    api.clock.advance(days=3)  # Thursday 12:00; none of this counts
    own = api.customer("cus_ana")
    answered = await api.call("POST", f"{path}/comments", headers=own, json={"text": "Photo!"})
    # The customer's reply hands the complaint back and the clock runs again: 38 h left.
    assert answered["status"] == "in_progress"
    assert answered["resolution_due_at"] == "2026-12-03T09:00:00Z"  # Thursday 10:00 Zagreb
    # The first-response clock stopped at the acknowledgement, met.
    assert answered["sla"]["first_response"]["met_at"] == "2026-11-23T09:00:00Z"


async def test_warning_and_breach_each_published_once_across_a_restart(
    api: Api,
    complaints_settings: ComplaintsSettings,
    kafka_bootstrap: str,
    topics: TopicNames,
) -> None:
    complaint = await open_one(api, priority="high")  # 4 h to a first response
    assert complaint["first_response_due_at"] == "2026-11-23T13:00:00Z"

    api.clock.advance(hours=3, minutes=15)  # past 80 % of 4 h
    assert await check_deadlines(api.complaints, api.clock()) == 1
    assert await check_deadlines(api.complaints, api.clock()) == 0
    at_risk = await api.call("GET", "/complaints", params={"sla": "at_risk"})
    assert [c["id"] for c in at_risk["items"]] == [complaint["id"]]

    api.clock.advance(minutes=50)  # past the deadline
    # Two watchers (say, two replicas) race for the same deadline: one announcement.
    results = await asyncio.gather(
        check_deadlines(api.complaints, api.clock()),
        check_deadlines(api.complaints, api.clock()),
    )
    assert sorted(results) == [0, 1]

    # A restarted service, its background watcher running, finds nothing left to announce.
    restarted = complaints_settings.model_copy(update={"sla_check_interval_seconds": 0.05})
    async with running(restarted, DrivenClock(api.clock())) as again:
        await asyncio.sleep(0.5)
        assert await check_deadlines(again.complaints, again.clock.advance(minutes=5)) == 0

    async def all_published() -> bool:
        return await api.complaints.relay.pending_count() == 0

    await eventually(all_published, timeout=30)
    alerts = await sla_events(kafka_bootstrap, topics, None)  # everything there is
    assert [(a["clock"], a["severity"]) for a in alerts] == [
        ("first_response", "warning"),
        ("first_response", "breach"),
    ]
    breach = alerts[1]
    assert breach["due_at"] == "2026-11-23T13:00:00Z"
    # The breach escalated: priority raised, the escalation team assigned.
    assert breach["priority"] == "urgent"
    assert breach["escalated_to"] == "escalations"
    escalated = await api.call("GET", f"/complaints/{complaint['id']}")
    assert escalated["priority"] == "urgent"
    assert escalated["assigned_team"] == "escalations"
    assert escalated["escalated"] is True
    assert escalated["sla"]["first_response"]["breached_at"] is not None
    breached = await api.call("GET", "/complaints", params={"sla": "breached"})
    assert [c["id"] for c in breached["items"]] == [complaint["id"]]
    kinds = [h["kind"] for h in await api.call("GET", f"/complaints/{complaint['id']}/history")]
    assert kinds == ["opened", "sla_warning", "sla_breach", "escalated"]


async def test_the_background_watcher_announces_a_breach_without_being_asked(
    complaints_settings: ComplaintsSettings, kafka_bootstrap: str, topics: TopicNames
) -> None:
    settings = complaints_settings.model_copy(update={"sla_check_interval_seconds": 0.05})
    async with running(settings, DrivenClock(MONDAY_MORNING)) as api:
        complaint = await open_one(api, priority="urgent")
        api.clock.advance(hours=2)

        async def breached() -> bool:
            found = await api.call("GET", f"/complaints/{complaint['id']}")
            return bool(found["sla"]["first_response"]["breached_at"])

        await eventually(breached, timeout=30, message="the watcher never noticed the breach")
    alerts = await sla_events(kafka_bootstrap, topics, 2)
    assert [(a["severity"], a["priority"]) for a in alerts] == [
        ("warning", "urgent"),
        ("breach", "urgent"),
    ]


async def test_a_met_or_paused_clock_never_breaches(api: Api) -> None:
    complaint = await open_one(api, priority="urgent")  # 1 h / 8 h
    path = f"/complaints/{complaint['id']}"
    await api.call("POST", f"{path}/acknowledge")
    await api.call("POST", f"{path}/status", json={"status": "in_progress"})
    await api.call("POST", f"{path}/status", json={"status": "waiting_on_customer"})
    api.clock.advance(days=30)
    assert await check_deadlines(api.complaints, api.clock()) == 0
    assert (await api.call("GET", path))["escalated"] is False


async def test_changing_the_calendar_recomputes_open_deadlines(api: Api) -> None:
    complaint = await open_one(api)  # first response due Tuesday 10:00
    calendar = await api.call("GET", "/sla/calendars/default")
    assert calendar["time_zone"] == "Europe/Zagreb"

    updated = await api.call(
        "PUT",
        "/sla/calendars/default",
        headers=api.admin,
        json={**calendar, "holidays": ["2026-11-24"]},
    )
    assert updated["recomputed"] == 1
    moved = await api.call("GET", f"/complaints/{complaint['id']}")
    assert moved["first_response_due_at"] == "2026-11-25T09:00:00Z"  # Tuesday is a holiday

    refused = await api.http.put(
        "/api/v1/sla/calendars/default", json={**calendar}, headers=api.agent
    )
    assert refused.status_code == 403
    broken = await api.http.put(
        "/api/v1/sla/calendars/default",
        json={"time_zone": "Europe/Zagreb", "week": {}},
        headers=api.admin,
    )
    assert broken.status_code == 422


async def test_policies_per_priority_and_category(api: Api) -> None:
    await api.call(
        "PUT",
        "/sla/policies/high/billing",
        headers=api.admin,
        json={"first_response_minutes": 30, "resolution_minutes": 120},
    )
    await api.call(
        "PUT",
        "/sla/calendars/around-the-clock",
        headers=api.admin,
        json={
            "time_zone": "UTC",
            "week": {
                day: [{"start": "00:00", "end": "23:59:59.999999"}]
                for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
        },
    )
    await api.call(
        "PUT",
        "/sla/policies/low",
        headers=api.admin,
        json={
            "first_response_minutes": 60,
            "resolution_minutes": 600,
            "calendar": "around-the-clock",
        },
    )
    unknown = await api.http.put(
        "/api/v1/sla/policies/normal",
        headers=api.admin,
        json={"first_response_minutes": 1, "resolution_minutes": 2, "calendar": "nope"},
    )
    assert unknown.status_code == 422
    missing = await api.http.get("/api/v1/sla/calendars/nope", headers=api.agent)
    assert missing.status_code == 404
    billing = await open_one(api, priority="high", category="billing")
    assert billing["first_response_due_at"] == "2026-11-23T09:30:00Z"
    delivery = await open_one(api, priority="high")
    assert delivery["first_response_due_at"] == "2026-11-23T13:00:00Z"
    api.clock.now = datetime.fromisoformat("2026-11-21T20:00:00+00:00")  # a Saturday night
    weekend = await open_one(api, priority="low")
    assert weekend["first_response_due_at"] == "2026-11-21T21:00:00Z"
    policies = await api.call("GET", "/sla/policies")
    assert {(p["priority"], p["category"]) for p in policies} == {
        ("high", "billing"),
        ("low", None),
        ("urgent", None),
        ("high", None),
        ("normal", None),
    }
