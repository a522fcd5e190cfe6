"""Scheduled triggers fire once at the right local time, across restarts and with two
schedulers, and follow the profile (injected clock, real MongoDB)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.notifications import rules as r
from services.notifications.domain import Channel, Purpose
from services.notifications.planning import Notifications
from services.notifications.scheduling import fire_due, resync_schedules
from services.notifications.scheduling_domain import next_birthday
from shared.events.complaints import ComplaintClosed, ComplaintOpened
from shared.events.customers import (
    ConsentChanged,
    ContractStatus,
    ContractSummary,
    CustomerErased,
    CustomerRegistered,
    CustomerUpdated,
)
from shared.mongo import Database, MongoClient
from tests.notifications.harness import apply, core, prepare
from tests.service_harness import DrivenClock

ZAGREB = ZoneInfo("Europe/Zagreb")
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZAGREB).astimezone(UTC)


def registered(customer_id: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "given_name": "Ivana",
        "emails": [f"{customer_id}@example.com"],
        "locale": "hr",
        "time_zone": "Europe/Zagreb",
        "created_at": START,
        "updated_at": START,
        "version": version,
        **fields,
    }


@pytest.fixture
def clock() -> DrivenClock:
    return DrivenClock(START)


@pytest.fixture
async def ctx(mongo_client: MongoClient, db: Database, clock: DrivenClock) -> Notifications:
    notifications = core(mongo_client, db, clock)
    await prepare(notifications)
    return notifications


async def sent_for(ctx: Notifications, rule: str) -> list[dict[str, Any]]:
    cursor = ctx.ledger.deliveries.find({"rule": rule}).sort("created_at", 1)
    return [document async for document in cursor]


async def allow_marketing_email(ctx: Notifications, customer_id: str) -> None:
    await apply(
        ctx,
        ConsentChanged(
            customer_id=customer_id, channel=Channel.EMAIL, purpose=Purpose.MARKETING,
            granted=True, source="test", changed_at=START,
        ),
    )  # fmt: skip


async def test_birthday_fires_once_at_nine_local_across_a_restart(
    ctx: Notifications, mongo_client: MongoClient, db: Database, clock: DrivenClock
) -> None:
    await apply(ctx, CustomerRegistered(**registered("c-bday", birthday=date(1990, 11, 25))))
    await allow_marketing_email(ctx, "c-bday")

    assert await fire_due(ctx, clock.set(local(2026, 11, 25, 8, 59))) == 0
    assert await fire_due(ctx, clock.set(local(2026, 11, 25, 9, 0))) == 1
    greetings = await sent_for(ctx, r.BIRTHDAY_GREETING)
    email = [d for d in greetings if d["channel"] == "email"]
    assert len(email) == 1
    assert email[0]["status"] == "pending"
    assert email[0]["due_at"] == local(2026, 11, 25, 9, 0)

    # Later that day, and in a restarted process: nothing more.
    assert await fire_due(ctx, clock.set(local(2026, 11, 25, 18, 0))) == 0
    restarted = core(mongo_client, db, clock)
    assert await fire_due(restarted, clock.now) == 0
    assert len(await sent_for(ctx, r.BIRTHDAY_GREETING)) == len(greetings)

    # A year later, once again.
    assert await fire_due(restarted, clock.set(local(2027, 11, 25, 9, 0))) == 1
    email_after = [d for d in await sent_for(ctx, r.BIRTHDAY_GREETING) if d["channel"] == "email"]
    assert len(email_after) == 2


async def test_two_schedulers_fire_a_birthday_once(
    ctx: Notifications, mongo_client: MongoClient, db: Database, clock: DrivenClock
) -> None:
    await apply(ctx, CustomerRegistered(**registered("c-twice", birthday=date(1985, 11, 22))))
    await allow_marketing_email(ctx, "c-twice")
    other = core(mongo_client, db, clock)
    due = clock.set(local(2026, 11, 22, 9, 5))
    results = await asyncio.gather(fire_due(ctx, due), fire_due(other, due))
    assert sum(results) == 1
    email = [d for d in await sent_for(ctx, r.BIRTHDAY_GREETING) if d["channel"] == "email"]
    assert len(email) == 1


async def test_a_scheduler_that_was_down_at_nine_fires_late_rather_than_never(
    ctx: Notifications, clock: DrivenClock
) -> None:
    await apply(ctx, CustomerRegistered(**registered("c-late", birthday=date(1990, 11, 25))))
    await allow_marketing_email(ctx, "c-late")
    assert await fire_due(ctx, clock.set(local(2026, 11, 25, 15, 0))) == 1


async def test_renewal_reminders_30_7_and_1_days_before(
    ctx: Notifications, clock: DrivenClock
) -> None:
    contract = ContractSummary(
        contract_id="ins-1", product="Home insurance", status=ContractStatus.ACTIVE,
        renews_at=date(2027, 1, 10), auto_renew=False,
    )  # fmt: skip
    await apply(ctx, CustomerRegistered(**registered("c-renew", contracts=[contract])))

    fired_days = []
    day = local(2026, 11, 21, 9, 0)
    while day < local(2027, 1, 11, 0, 0):
        for moment in (day, day + timedelta(hours=6)):
            if await fire_due(ctx, clock.set(moment)):
                fired_days.append(moment.astimezone(ZAGREB).date())
        day += timedelta(days=1)
    assert fired_days == [date(2026, 12, 11), date(2027, 1, 3), date(2027, 1, 9)]
    email = [d for d in await sent_for(ctx, r.RENEWAL_REMINDER) if d["channel"] == "email"]
    assert [d["context"]["days_left"] for d in email] == [30, 7, 1]
    assert all(d["due_at"].astimezone(ZAGREB).hour == 9 for d in email)


async def test_schedules_follow_profile_changes_and_erasure(
    ctx: Notifications, clock: DrivenClock
) -> None:
    await apply(ctx, CustomerRegistered(**registered("c-move", birthday=date(1990, 12, 1))))
    await allow_marketing_email(ctx, "c-move")
    await apply(
        ctx,
        CustomerUpdated(**registered("c-move", version=2, birthday=date(1990, 12, 5)),
                        changed_fields=["birthday"]),
    )  # fmt: skip
    assert await fire_due(ctx, clock.set(local(2026, 12, 1, 10, 0))) == 0
    assert await fire_due(ctx, clock.set(local(2026, 12, 5, 9, 0))) == 1

    # An older snapshot arriving late changes nothing.
    await apply(ctx, CustomerUpdated(**registered("c-move", version=1, birthday=date(1990, 1, 1))))
    schedule = await ctx.schedules.get("birthday_greeting:c-move")
    assert schedule is not None
    assert schedule.params["birthday"] == "1990-12-05"

    await apply(ctx, CustomerErased(customer_id="c-move", erased_at=clock.now))
    assert await fire_due(ctx, clock.set(local(2027, 12, 5, 9, 0))) == 0
    schedule = await ctx.schedules.get("birthday_greeting:c-move")
    assert schedule is not None
    assert schedule.params == {}


async def test_a_daily_status_report_while_a_complaint_stays_open(
    ctx: Notifications, clock: DrivenClock
) -> None:
    await apply(ctx, CustomerRegistered(**registered("c-cmp")))
    clock.set(local(2026, 11, 23, 10, 0))
    await apply(
        ctx,
        ComplaintOpened(
            complaint_id="cmp-1", customer_id="c-cmp", channel="web", category="delivery",
            subject="Late parcel", description="It did not come", priority="normal",
            opened_at=clock.now,
        ),
    )  # fmt: skip
    assert await fire_due(ctx, clock.set(local(2026, 11, 23, 23, 0))) == 0
    assert await fire_due(ctx, clock.set(local(2026, 11, 24, 9, 0))) == 1
    assert await fire_due(ctx, clock.set(local(2026, 11, 24, 12, 0))) == 0
    assert await fire_due(ctx, clock.set(local(2026, 11, 25, 9, 0))) == 1
    reports = [d for d in await sent_for(ctx, r.COMPLAINT_DAILY_STATUS) if d["channel"] == "email"]
    assert [d["context"]["subject"] for d in reports] == ["Late parcel", "Late parcel"]

    await apply(
        ctx, ComplaintClosed(complaint_id="cmp-1", customer_id="c-cmp", closed_at=clock.now)
    )
    assert await fire_due(ctx, clock.set(local(2026, 11, 26, 9, 0))) == 0


def test_a_29_february_birthday_is_greeted_on_the_28th_in_common_years() -> None:
    due, year = next_birthday(
        date(2000, 2, 29), datetime(2000, 1, 1, 9).time(), "Europe/Zagreb",
        datetime(2027, 1, 1, tzinfo=UTC), None,
    )  # fmt: skip
    assert (due, year) == (local(2027, 2, 28, 9, 0), "2027")


async def test_new_reminder_days_move_the_pending_schedules(
    ctx: Notifications, clock: DrivenClock
) -> None:
    contract = ContractSummary(
        contract_id="sub-1", product="Streaming", status=ContractStatus.ACTIVE,
        renews_at=date(2027, 1, 10), auto_renew=True,
    )  # fmt: skip
    await apply(ctx, CustomerRegistered(**registered("c-days", contracts=[contract])))
    await ctx.rule_store.put(
        r.RENEWAL_REMINDER, {"parameters": {"days_before": [14], "local_time": "10:30"}}
    )
    assert await resync_schedules(ctx) == 1
    reminders = await ctx.schedules.of_customer("c-days", rule=r.RENEWAL_REMINDER)
    active = [s for s in reminders if s.status.value == "active"]
    assert [s.due_at for s in active] == [local(2026, 12, 27, 10, 30)]
    assert await fire_due(ctx, clock.set(local(2026, 12, 11, 9, 0))) == 0  # 30 days: gone
    assert await fire_due(ctx, clock.set(local(2026, 12, 27, 10, 30))) == 1
    [email] = [d for d in await sent_for(ctx, r.RENEWAL_REMINDER) if d["channel"] == "email"]
    assert email["context"]["days_left"] == 14
    assert email["context"]["auto_renew"] is True
