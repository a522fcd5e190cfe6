"""Schedules: birthday, renewal and daily complaint messages kept in step with the profile,
fired when due (``Scheduler``, a periodic loop with a lease), each decided as a trigger."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time
from typing import Any

from services.notifications import rules as r
from services.notifications.batch import Batch
from services.notifications.directory_domain import Customer
from services.notifications.domain import Purpose
from services.notifications.planning import (
    RESYNC_CHUNK,
    SCHEDULE_EVENT_TYPE,
    Notifications,
    Trigger,
    plan,
)
from services.notifications.policy import (
    zone,
)
from services.notifications.rules import definition
from services.notifications.scheduling_domain import (
    Schedule,
    ScheduleStatus,
    StaleSchedule,
    birthday_id,
    following_birthday,
    next_birthday,
    next_daily,
    renewal_due,
    renewal_id,
    wanted_renewals,
)
from services.notifications.scheduling_store import cancel_write, put_write
from shared.background import Periodic
from shared.unit_of_work import UnitOfWork

# -- schedules -----------------------------------------------------------------------------


async def sync_schedules(
    ctx: Notifications, batch: Batch, customer: Customer, now: datetime
) -> None:
    """Birthday and renewal schedules as the customer's profile now says."""
    time_zone = ctx.time_zone_of(customer)
    birthday_rule = await batch.rule(r.BIRTHDAY_GREETING)
    at = r.local_time(birthday_rule)
    schedule_id = birthday_id(customer.id)
    existing = await batch.schedule_of(customer.id, schedule_id)
    if customer.birthday is None:
        if existing is not None:
            batch.change_schedules(cancel_write({"_id": schedule_id}, "no birthday", now))
    else:
        params = {
            "birthday": customer.birthday.isoformat(),
            "time_zone": time_zone,
            "local_time": at.strftime("%H:%M"),
        }
        if (
            existing is None
            or existing.params != params
            or existing.status is not (ScheduleStatus.ACTIVE)
        ):
            fired = existing.fired if existing else None
            due, year = next_birthday(customer.birthday, at, time_zone, now, fired)
            batch.change_schedules(
                put_write(
                    schedule_id, rule=r.BIRTHDAY_GREETING, customer_id=customer.id,
                    due_at=due, occurrence=year, params=params, now=now,
                )
            )  # fmt: skip
    await _sync_renewals(batch, customer, time_zone, now)


async def _sync_renewals(batch: Batch, customer: Customer, time_zone: str, now: datetime) -> None:
    config = await batch.rule(r.RENEWAL_REMINDER)
    at = r.local_time(config)
    wanted = wanted_renewals(
        ((c.contract_id, c.product, c.ends_on, c.active) for c in customer.contracts),
        r.days_before(config),
    )
    existing = {s.id: s for s in await batch.schedules_of(customer.id, r.RENEWAL_REMINDER)}
    auto_renew = {c.contract_id: c.auto_renew for c in customer.contracts}
    keep: set[str] = set()
    for (contract_id, offset), (product, ends_on) in wanted.items():
        schedule_id = renewal_id(customer.id, contract_id, offset)
        keep.add(schedule_id)
        params = {
            "contract": {
                "contract_id": contract_id,
                "product": product,
                "ends_on": ends_on.isoformat(),
                "days_before": offset,
                "auto_renew": auto_renew.get(contract_id, False),
            },
            "time_zone": time_zone,
            "local_time": at.strftime("%H:%M"),
        }
        current = existing.get(schedule_id)
        occurrence = ends_on.isoformat()
        unchanged = current is not None and current.params == params
        if unchanged and current is not None and current.status is not ScheduleStatus.CANCELLED:
            continue
        if current is not None and current.fired == occurrence:
            continue  # this reminder for this date went out already
        due = renewal_due(ends_on, offset, at, time_zone)
        if due < now:
            if current is not None and current.status is ScheduleStatus.ACTIVE:
                batch.change_schedules(cancel_write({"_id": schedule_id}, "date moved", now))
            continue  # already past when we learned of it: too late to remind
        await batch.schedule_of(customer.id, schedule_id)  # known: new or as read
        batch.change_schedules(
            put_write(
                schedule_id, rule=r.RENEWAL_REMINDER, customer_id=customer.id,
                due_at=due, occurrence=occurrence, params=params, now=now,
            )
        )  # fmt: skip
    for schedule_id in sorted(existing.keys() - keep):
        batch.change_schedules(cancel_write({"_id": schedule_id}, "contract ended", now))


async def resync_schedules(ctx: Notifications) -> int:
    """Birthday and renewal schedules worked out again for every known customer (after
    their rule's time or days changed), a chunk of customers per unit of work; returns
    how many customers were looked at."""
    ids = await ctx.directory.live_ids()
    for start in range(0, len(ids), RESYNC_CHUNK):
        chunk = ids[start : start + RESYNC_CHUNK]

        async def work(uow: UnitOfWork, chunk: list[str] = chunk) -> None:
            batch = ctx.batch(uow)
            batch.want(customers=chunk, schedules_of=chunk)
            for customer_id in chunk:
                customer = await batch.customer(customer_id)
                if customer is not None and customer.id == customer_id and not customer.erased:
                    await sync_schedules(ctx, batch, customer, ctx.now())

        await ctx.units().run(work)
    return len(ids)


def _schedule_trigger(schedule: Schedule, now: datetime) -> Trigger:
    context: dict[str, Any] = {}
    if schedule.rule == r.RENEWAL_REMINDER:
        contract = schedule.params.get("contract") or {}
        due_date = date.fromisoformat(str(contract.get("ends_on")))
        local_today = now.astimezone(zone(str(schedule.params.get("time_zone") or "UTC")))
        context = {
            "contract_id": contract.get("contract_id"),
            "product": contract.get("product"),
            "due_date": due_date.isoformat(),
            "days_left": max((due_date - local_today.date()).days, 0),
            "auto_renew": bool(contract.get("auto_renew")),
        }
    elif schedule.rule == r.COMPLAINT_DAILY_STATUS:
        complaint = dict(schedule.params.get("complaint") or {})
        opened = complaint.get("opened_at")
        days_open = (now - datetime.fromisoformat(opened)).days if opened else None
        context = {
            key: complaint.get(key)
            for key in ("complaint_id", "subject", "status", "opened_at", "resolution_due_at",
                        "last_public_comment")
        } | {"days_open": days_open}  # fmt: skip
    return Trigger(
        rule=schedule.rule,
        source_event_id=f"schedule:{schedule.id}:{schedule.occurrence}",
        source_event_type=f"{SCHEDULE_EVENT_TYPE}.{schedule.rule}",
        customer_id=schedule.customer_id,
        context=context,
    )


def _following(schedule: Schedule, now: datetime) -> tuple[datetime | None, str | None]:
    params = schedule.params
    at = time.fromisoformat(str(params.get("local_time", "09:00")))
    time_zone = str(params.get("time_zone") or "UTC")
    if schedule.rule == r.BIRTHDAY_GREETING:
        birthday = date.fromisoformat(str(params["birthday"]))
        return following_birthday(birthday, at, time_zone, schedule.occurrence)
    if schedule.rule == r.COMPLAINT_DAILY_STATUS:
        return next_daily(at, time_zone, max(now, schedule.due_at))
    return None, None  # a renewal reminder fires once per date


async def fire_due(ctx: Notifications, now: datetime | None = None) -> int:
    """Fire every schedule due by ``now``; returns how many occurrences this call fired."""
    moment = (now or ctx.now()).astimezone(UTC)
    fired = 0
    for schedule in await ctx.schedules.due(moment):
        fired += await fire_one(ctx, schedule, moment)
    if fired:
        ctx.wake_dispatcher()
    return fired


async def fire_one(ctx: Notifications, schedule: Schedule, now: datetime) -> int:
    async def work(uow: UnitOfWork) -> int:
        current = await ctx.schedules.get(schedule.id, uow.session)
        if (
            current is None
            or current.version != schedule.version
            or current.status is not ScheduleStatus.ACTIVE
            or current.due_at > now
        ):
            return 0
        trigger = _schedule_trigger(current, now)
        batch = ctx.batch(uow)
        marketing = definition(current.rule).purpose is Purpose.MARKETING
        batch.want(
            customers=[current.customer_id],
            events=[trigger.source_event_id],
            marketing_of=[current.customer_id] if marketing else [],
        )
        if current.rule == r.COMPLAINT_DAILY_STATUS:
            # The schedule carries its own time zone; the customer's may have changed.
            customer = await batch.customer(current.customer_id)
            config = await batch.rule(r.COMPLAINT_DAILY_STATUS)
            params = {
                **current.params,
                "time_zone": ctx.time_zone_of(customer),
                "local_time": r.local_time(config).strftime("%H:%M"),
            }
            current = dataclasses.replace(current, params=params)
        await plan(ctx, batch, trigger, now)
        next_due, next_occurrence = _following(current, now)
        # The schedules are not changed through the batch here: written at once, guarded.
        await ctx.schedules.advance(
            uow.session, current, fired=current.occurrence, next_due=next_due,
            next_occurrence=next_occurrence, now=now,
        )  # fmt: skip
        return 1

    try:
        return await ctx.units().run(work)
    except StaleSchedule:
        return 0  # another scheduler fired it


class Scheduler(Periodic):
    """Runs :func:`fire_due` every ``interval`` seconds in the background."""

    def __init__(self, ctx: Notifications, interval: float) -> None:
        super().__init__("notifications-scheduler", interval, self._round)
        self.ctx = ctx

    async def _round(self) -> bool:
        await fire_due(self.ctx)
        return False
