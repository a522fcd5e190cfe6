"""Notifications use cases: from an event (or a due schedule) to recorded decisions.

Every handler runs inside the transaction the ``EventConsumer`` opens for the event, and
records there what it decided about each message: a pending delivery (due now, or
deferred to the end of the customer's quiet hours), or a suppression with its reason
(announced as ``crm.notification.suppressed`` through the outbox). Nothing is sent here:
the dispatcher sends what is due, so a slow channel never blocks the stream worker. An
event delivered again finds its marker and does nothing; and the ledger's key (source
event, rule, channel[, subscription]) keeps even a replayed decision from adding a
second delivery.

Unknown customers: a purchase (or any trigger) for a customer id the directory has not
heard of yet is *deferred*, not dropped: the registration may still be on its way on
``crm.customers`` while the purchase came on ``crm.purchases``. The delivery is recorded
without an address; the dispatcher resolves it when due and, if the customer is still
unknown after ``unknown_customer_grace_seconds``, suppresses it with reason
``unknown customer``. A purchase naming only an e-mail address that no customer has is
sent to that address in the default locale. A purchase naming only an external id that
no customer has is rejected (DLQ with the reason): nobody could ever receive it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from services.notifications import rules as r
from services.notifications.directory import Customer, Directory
from services.notifications.domain import Channel, Purpose
from services.notifications.ports import InboxPort, WebhookPort, subscription_id
from services.notifications.respect import (
    Preferences,
    QuietHours,
    Send,
    Situation,
    decide,
    local_day,
    zone,
)
from services.notifications.rules import Audience, RuleConfig, configured, definition
from services.notifications.schedules import (
    Schedule,
    ScheduleStatus,
    ScheduleStore,
    StaleSchedule,
    birthday_id,
    daily_id,
    following_birthday,
    next_birthday,
    next_daily,
    renewal_due,
    renewal_id,
    wanted_renewals,
)
from services.notifications.store import (
    CustomerPreferences,
    Delivery,
    DeliveryStatus,
    Ledger,
    PreferenceStore,
    RuleStore,
    delivery_id,
)
from shared.background import Periodic
from shared.clock import Clock, utc_now
from shared.consumer import Handler, RejectEvent
from shared.events import Event, new_event
from shared.events.base import EventPayload
from shared.events.complaints import (
    ComplaintClosed,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
)
from shared.events.customers import (
    ConsentChanged,
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerSnapshot,
    CustomerUpdated,
)
from shared.events.insights import ChurnRiskChanged
from shared.events.notifications import NotificationSuppressed
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.mongo import MongoClient, Session, in_transaction
from shared.outbox import Outbox, OutboxRelay

log = logging.getLogger(__name__)

SOURCE = "/rapport/notifications"
SCHEDULE_EVENT_TYPE = "rapport.notifications.schedule"


@dataclass
class Notifications:
    """What the notifications use cases need: stores, outbox, ports, settings and clock."""

    client: MongoClient
    ledger: Ledger
    directory: Directory
    preferences: PreferenceStore
    rule_store: RuleStore
    schedules: ScheduleStore
    outbox: Outbox
    relay: OutboxRelay
    webhooks: WebhookPort | None = None
    inbox: InboxPort | None = None
    rule_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_time_zone: str = "UTC"
    default_locale: str = "en"
    default_quiet_hours: QuietHours | None = None
    marketing_cap: int = 2
    escalation_address: str = "escalations@rapport.local"
    team_addresses: Mapping[str, str] = field(default_factory=dict)
    owner_fallback_address: str = "account-owners@rapport.local"
    portal_url: str = "http://127.0.0.1:8003"
    clock: Clock = utc_now

    def now(self) -> datetime:
        """The clock's time at the store's precision (milliseconds)."""
        moment = self.clock().astimezone(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    async def rule(self, name: str, session: Session | None = None) -> RuleConfig:
        stored = await self.rule_store.overrides(session)
        return configured(name, self.rule_settings.get(name, {}), stored.get(name, {}))

    async def all_rules(self) -> list[RuleConfig]:
        stored = await self.rule_store.overrides()
        return [
            configured(name, self.rule_settings.get(name, {}), stored.get(name, {}))
            for name in r.RULE_NAMES
        ]

    async def preferences_of(
        self, customer_id: str, session: Session | None = None
    ) -> CustomerPreferences:
        """The customer's preferences, with the opt-outs of profiles merged into theirs."""
        merged = await self.directory.merged_from(customer_id, session)
        return await self.preferences.combined([customer_id, *merged], session)

    def time_zone_of(self, customer: Customer | None) -> str:
        return (customer.time_zone if customer else None) or self.default_time_zone


@dataclass(frozen=True)
class Trigger:
    """A rule firing for one customer because of one event (or one schedule occurrence)."""

    rule: str
    source_event_id: str
    source_event_type: str
    customer_id: str
    context: Mapping[str, Any] = field(default_factory=dict)
    fallback_email: str | None = None
    team: str | None = None


def _event(payload: EventPayload, now: datetime) -> Event[Any]:
    return new_event(payload, source=SOURCE, time=now)


def suppressed_event(delivery: Delivery, now: datetime) -> Event[Any]:
    return _event(
        NotificationSuppressed(
            notification_id=delivery.id,
            customer_id=delivery.customer_id,
            channel=delivery.channel,
            rule=delivery.rule,
            source_event_id=delivery.source_event_id,
            locale=delivery.locale,
            reason=delivery.reason or "suppressed",
            suppressed_at=now,
        ),
        now,
    )


def owner_address(ctx: Notifications, customer: Customer | None) -> str:
    owner = customer.account_owner if customer else None
    return owner if owner and "@" in owner else ctx.owner_fallback_address


def _staff_address(ctx: Notifications, trigger: Trigger, customer: Customer | None) -> str | None:
    if trigger.rule == r.CHURN_ALERT_OWNER:
        # Resolved when sent: the profile naming the owner may still be on its way.
        return None
    if trigger.team and trigger.team in ctx.team_addresses:
        return ctx.team_addresses[trigger.team]
    return ctx.escalation_address


async def plan(
    ctx: Notifications, session: Session, trigger: Trigger, now: datetime
) -> list[Delivery]:
    """Decide, per channel of the rule, whether and when the message goes; record it."""
    config = await ctx.rule(trigger.rule, session)
    if not config.enabled:
        return []
    rule = definition(trigger.rule)
    customer = await ctx.directory.get(trigger.customer_id, session)
    customer_id = customer.id if customer is not None else trigger.customer_id
    known = customer is not None and customer.registered
    # The same for every channel of this trigger: read once.
    preferences = (await ctx.preferences_of(customer_id, session)).to_domain()
    marketing_today = 0
    if config.purpose is Purpose.MARKETING:
        start, end = local_day(now, ctx.time_zone_of(customer))
        marketing_today = await ctx.ledger.marketing_messages_between(
            session, customer_id, start, end, excluding=(trigger.source_event_id, trigger.rule)
        )
    recorded: list[Delivery] = []
    for channel in config.channels:
        targets = await _targets(ctx, trigger, rule.audience, channel, customer, known=known)
        for address, subscription in targets:
            delivery = await _decide(
                ctx, session, trigger, config, customer, customer_id, preferences,
                marketing_today, channel, address, subscription, now,
            )  # fmt: skip
            if delivery is not None:
                recorded.append(delivery)
    return recorded


async def _targets(
    ctx: Notifications,
    trigger: Trigger,
    audience: Audience,
    channel: Channel,
    customer: Customer | None,
    *,
    known: bool,
) -> list[tuple[str | None, str | None]]:
    """Where a trigger's message goes on one channel: (address, webhook subscription)."""
    if channel is Channel.WEBHOOK:
        if ctx.webhooks is None:
            return []
        subscriptions = await ctx.webhooks.matching(trigger.source_event_type)
        return [(None, subscription_id(s)) for s in subscriptions]
    if audience is Audience.STAFF:
        return [(_staff_address(ctx, trigger, customer), None)] if channel is Channel.EMAIL else []
    if known:
        assert customer is not None
        # Resolved when sent: the newest address wins.
        return [(None, None)] if customer.address(channel) is not None else []
    if channel is Channel.EMAIL:
        return [(trigger.fallback_email, None)]
    if channel is Channel.IN_APP and trigger.fallback_email is None:
        return [(None, None)]
    return []


def _offer(config: RuleConfig) -> dict[str, Any]:
    """A marketing rule's configured offer goes into its messages."""
    return {k: v for k, v in config.parameters.items() if k in ("offer", "offer_code")}


async def _decide(
    ctx: Notifications,
    session: Session,
    trigger: Trigger,
    config: RuleConfig,
    customer: Customer | None,
    customer_id: str,
    preferences: Preferences,
    marketing_today: int,
    channel: Channel,
    address: str | None,
    subscription: str | None,
    now: datetime,
) -> Delivery | None:
    decision = decide(
        Situation(
            channel=channel,
            purpose=config.purpose,
            audience=config.audience,
            now=now,
            time_zone=ctx.time_zone_of(customer),
            consents=customer.consents if customer else {},
            preferences=preferences,
            default_quiet_hours=ctx.default_quiet_hours,
            open_complaints=len(customer.open_complaints) if customer else 0,
            marketing_today=marketing_today,
            marketing_cap=ctx.marketing_cap,
            erased=bool(customer and customer.erased),
        )
    )
    delivery = Delivery(
        id=delivery_id(trigger.source_event_id, trigger.rule, channel, subscription),
        source_event_id=trigger.source_event_id,
        source_event_type=trigger.source_event_type,
        rule=trigger.rule,
        channel=channel,
        subscription_id=subscription,
        customer_id=customer_id,
        purpose=config.purpose,
        audience=config.audience,
        status=DeliveryStatus.PENDING if isinstance(decision, Send) else DeliveryStatus.SUPPRESSED,
        address=address,
        locale=(customer.locale if customer else None) or None,
        context={**_offer(config), **trigger.context},
        due_at=decision.at if isinstance(decision, Send) else now,
        deferred_because=decision.deferred_because if isinstance(decision, Send) else None,
        reason=None if isinstance(decision, Send) else decision.reason,
        created_at=now,
        updated_at=now,
    )
    if not await ctx.ledger.record(session, delivery):
        return None  # decided before: the ledger keeps the first decision
    if delivery.status is DeliveryStatus.SUPPRESSED:
        await ctx.outbox.add(session, [suppressed_event(delivery, now)])
    return delivery


# -- what the templates get (flat fields, as ``catalog.py`` lists them per trigger) ---------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def purchase_context(purchase: PurchaseCompleted) -> dict[str, Any]:
    return {
        "purchase_id": purchase.purchase_id,
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "category": item.category,
                "quantity": item.quantity,
                "unit_price": format(item.unit_price, "f"),
            }
            for item in purchase.items
        ],
        "total_amount": format(purchase.total_amount, "f"),
        "currency": purchase.currency,
        "channel": purchase.channel,
        "purchased_at": _iso(purchase.purchased_at),
    }


def return_context(returned: PurchaseReturned) -> dict[str, Any]:
    return {
        "return_id": returned.return_id,
        "purchase_id": returned.purchase_id,
        "items": [
            {
                "sku": item.sku,
                "quantity": item.quantity,
                "unit_price": format(item.unit_price, "f") if item.unit_price else None,
            }
            for item in returned.items
        ],
        "refund_amount": format(returned.refund_amount, "f"),
        "currency": returned.currency,
        "reason": returned.reason,
        "returned_at": _iso(returned.returned_at),
    }


# -- event handlers ------------------------------------------------------------------------


async def _fire(
    ctx: Notifications, session: Session, event: Event[Any], trigger: Trigger
) -> list[Delivery]:
    return await plan(ctx, session, trigger, ctx.now())


def _trigger(event: Event[Any], rule: str, customer_id: str, **extra: Any) -> Trigger:
    return Trigger(
        rule=rule,
        source_event_id=event.id,
        source_event_type=event.type,
        customer_id=customer_id,
        **extra,
    )


async def purchase_completed(ctx: Notifications, event: Event[Any], session: Session) -> None:
    purchase = event.payload
    assert isinstance(purchase, PurchaseCompleted)
    customer_id, fallback = await _purchaser(ctx, purchase, session)
    await _fire(
        ctx, session, event,
        _trigger(event, r.PURCHASE_THANK_YOU, customer_id, context=purchase_context(purchase),
                 fallback_email=fallback),
    )  # fmt: skip


async def _purchaser(
    ctx: Notifications, purchase: PurchaseCompleted, session: Session
) -> tuple[str, str | None]:
    """Who bought: (customer id, an e-mail to write to when the customer is unknown)."""
    if purchase.customer_id:
        return purchase.customer_id, None
    if purchase.customer_email:
        found = await ctx.directory.find_by_email(str(purchase.customer_email), session)
        if found is not None:
            return found.id, None
        return f"email:{str(purchase.customer_email).lower()}", str(purchase.customer_email)
    assert purchase.customer_external_id is not None  # the payload's validator ensures one
    found = await ctx.directory.find_by_external_id(purchase.customer_external_id, session)
    if found is None:
        raise RejectEvent(
            f"unknown customer: no customer has external id {purchase.customer_external_id}"
            " and the purchase names no address"
        )
    return found.id, None


async def purchase_returned(ctx: Notifications, event: Event[Any], session: Session) -> None:
    returned = event.payload
    assert isinstance(returned, PurchaseReturned)
    await _fire(
        ctx, session, event,
        _trigger(event, r.RETURN_CONFIRMATION, returned.customer_id,
                 context=return_context(returned)),
    )  # fmt: skip


async def _complaint_facts(
    ctx: Notifications, session: Session, complaint_id: str
) -> dict[str, Any]:
    """What the service remembers of a complaint (kept with its daily status schedule)."""
    stored = await ctx.schedules.get(daily_id(complaint_id), session)
    facts = dict(stored.params.get("complaint") or {}) if stored else {}
    facts["complaint_id"] = complaint_id
    return facts


async def complaint_opened(ctx: Notifications, event: Event[Any], session: Session) -> None:
    opened = event.payload
    assert isinstance(opened, ComplaintOpened)
    complaint = {
        "complaint_id": opened.complaint_id,
        "subject": opened.subject,
        "category": opened.category,
        "priority": opened.priority.value,
        "first_response_due_at": _iso(opened.first_response_due_at),
        "resolution_due_at": _iso(opened.resolution_due_at),
        "opened_at": _iso(opened.opened_at),
    }
    await ctx.directory.complaint_opened(session, opened.customer_id, opened.complaint_id)
    await _fire(
        ctx, session, event,
        _trigger(event, r.COMPLAINT_ACKNOWLEDGEMENT, opened.customer_id, context=complaint),
    )  # fmt: skip
    await start_daily_status(ctx, session, opened.customer_id, {**complaint, "status": "open"})


async def start_daily_status(
    ctx: Notifications, session: Session, customer_id: str, complaint: Mapping[str, Any]
) -> None:
    now = ctx.now()
    customer = await ctx.directory.get(customer_id, session)
    target = customer.id if customer else customer_id
    config = await ctx.rule(r.COMPLAINT_DAILY_STATUS, session)
    at = r.local_time(config)
    time_zone = ctx.time_zone_of(customer)
    due, day = next_daily(at, time_zone, now)
    params = {
        "complaint": dict(complaint),
        "time_zone": time_zone,
        "local_time": at.strftime("%H:%M"),
    }
    await ctx.schedules.put(
        session, daily_id(str(complaint["complaint_id"])), rule=r.COMPLAINT_DAILY_STATUS,
        customer_id=target, due_at=due, occurrence=day, params=params, now=now,
    )  # fmt: skip


async def complaint_status_changed(ctx: Notifications, event: Event[Any], session: Session) -> None:
    changed = event.payload
    assert isinstance(changed, ComplaintStatusChanged)
    remembered = {"params.complaint.status": changed.to_status.value}
    if changed.public_comment:
        remembered["params.complaint.last_public_comment"] = changed.public_comment
    await ctx.schedules.schedules.update_one(
        {"_id": daily_id(changed.complaint_id)}, {"$set": remembered}, session=session
    )
    if not r.triggered_by(event.type, changed.model_dump(mode="json")):
        return
    facts = await _complaint_facts(ctx, session, changed.complaint_id)
    context = {
        "complaint_id": changed.complaint_id,
        "subject": facts.get("subject"),
        "from_status": changed.from_status.value,
        "to_status": changed.to_status.value,
        "public_comment": changed.public_comment,
        "changed_at": _iso(changed.changed_at),
    }
    await _fire(
        ctx, session, event,
        _trigger(event, r.COMPLAINT_PROGRESS, changed.customer_id, context=context),
    )  # fmt: skip


async def complaint_resolved(ctx: Notifications, event: Event[Any], session: Session) -> None:
    resolved = event.payload
    assert isinstance(resolved, ComplaintResolved)
    facts = await _complaint_facts(ctx, session, resolved.complaint_id)
    await _complaint_ended(ctx, session, resolved.complaint_id, "resolved")
    feedback_url = f"{ctx.portal_url.rstrip('/')}/complaints/{resolved.complaint_id}/feedback"
    context = {
        "complaint_id": resolved.complaint_id,
        "subject": facts.get("subject"),
        "resolution_type": resolved.resolution_type.value,
        "summary": resolved.summary,
        "refund_amount": (
            format(resolved.refund_amount, "f") if resolved.refund_amount is not None else None
        ),
        "currency": resolved.currency,
        "purchase_id": resolved.purchase_id,
        "resolved_at": _iso(resolved.resolved_at),
        "feedback_url": feedback_url,
    }
    await _fire(
        ctx, session, event,
        _trigger(event, r.COMPLAINT_RESOLVED, resolved.customer_id, context=context),
    )  # fmt: skip


async def _complaint_ended(
    ctx: Notifications, session: Session, complaint_id: str, why: str
) -> None:
    await ctx.directory.complaint_ended(session, complaint_id)
    await ctx.schedules.cancel(session, {"_id": daily_id(complaint_id)}, why, ctx.now())


async def complaint_closed(ctx: Notifications, event: Event[Any], session: Session) -> None:
    closed = event.payload
    assert isinstance(closed, ComplaintClosed)
    await _complaint_ended(ctx, session, closed.complaint_id, "closed")


async def complaint_reopened(ctx: Notifications, event: Event[Any], session: Session) -> None:
    reopened = event.payload
    assert isinstance(reopened, ComplaintReopened)
    await ctx.directory.complaint_opened(session, reopened.customer_id, reopened.complaint_id)
    facts = await _complaint_facts(ctx, session, reopened.complaint_id)
    facts["status"] = "reopened"
    await start_daily_status(ctx, session, reopened.customer_id, facts)


async def sla_breached(ctx: Notifications, event: Event[Any], session: Session) -> None:
    breach = event.payload
    assert isinstance(breach, ComplaintSlaBreached)
    facts = await _complaint_facts(ctx, session, breach.complaint_id)
    context = {
        "complaint_id": breach.complaint_id,
        "subject": facts.get("subject"),
        "clock": breach.clock.value,
        "severity": breach.severity.value,
        "due_at": _iso(breach.due_at),
        "detected_at": _iso(breach.detected_at),
        "priority": breach.priority.value,
        "escalated_to": breach.escalated_to,
    }
    for rule in r.triggered_by(event.type, breach.model_dump(mode="json")):
        await _fire(
            ctx, session, event,
            _trigger(event, rule, breach.customer_id, context=context, team=breach.escalated_to),
        )  # fmt: skip


async def churn_risk_changed(ctx: Notifications, event: Event[Any], session: Session) -> None:
    churn = event.payload
    assert isinstance(churn, ChurnRiskChanged)
    context = {
        "level": churn.level.value,
        "previous_level": churn.previous_level.value if churn.previous_level else None,
        "score": churn.score,
        "reasons": list(churn.reasons),
        "changed_at": _iso(churn.changed_at),
    }
    for rule in r.triggered_by(event.type, churn.model_dump(mode="json")):
        await _fire(ctx, session, event, _trigger(event, rule, churn.customer_id, context=context))


async def customer_snapshot(ctx: Notifications, event: Event[Any], session: Session) -> None:
    snapshot = event.payload
    assert isinstance(snapshot, CustomerSnapshot)
    before, after = await ctx.directory.apply_snapshot(session, snapshot)
    if after is not None and not after.erased:
        await sync_schedules(ctx, session, after, ctx.now())
        if before is None or not before.registered:
            await ctx.ledger.release_waiting(session, after.id, ctx.now())


async def consent_changed(ctx: Notifications, event: Event[Any], session: Session) -> None:
    consent = event.payload
    assert isinstance(consent, ConsentChanged)
    await ctx.directory.record_consent(
        session, consent.customer_id, consent.channel, consent.purpose, consent.granted
    )


async def customer_merged(ctx: Notifications, event: Event[Any], session: Session) -> None:
    merged = event.payload
    assert isinstance(merged, CustomerMerged)
    source, target, undo = merged.source_customer_id, merged.customer_id, merged.undone
    now = ctx.now()
    await ctx.directory.record_merge(session, source, target, undone=undo)
    await ctx.ledger.move_pending(session, source, target, undo=undo)
    daily = {"rule": r.COMPLAINT_DAILY_STATUS}
    personal = {"rule": {"$in": [r.BIRTHDAY_GREETING, r.RENEWAL_REMINDER]}}
    if undo:
        # The source's own birthday and contracts come back; its complaints go back too.
        await ctx.schedules.reactivate(session, {"customer_id": source, **personal}, "merged", now)
        await ctx.schedules.move(session, {"moved_from": source, **daily}, source, None)
    else:
        # The survivor's profile (updated by profiles) carries what the source had.
        await ctx.schedules.cancel(session, {"customer_id": source, **personal}, "merged", now)
        await ctx.schedules.move(session, {"customer_id": source, **daily}, target, source)
    if ctx.inbox is not None:
        await ctx.inbox.move_customer(source, target, undo=undo, session=session)


async def customer_erased(ctx: Notifications, event: Event[Any], session: Session) -> None:
    erased = event.payload
    assert isinstance(erased, CustomerErased)
    now = ctx.now()
    await ctx.directory.mark_erased(session, erased.customer_id, erased.erased_at)
    await ctx.ledger.cancel_pending(session, erased.customer_id, "customer erased", now)
    await ctx.ledger.anonymise(session, erased.customer_id, now)
    await ctx.schedules.forget_customer(session, erased.customer_id, now)
    await ctx.preferences.forget(session, erased.customer_id)
    await ctx.outbox.forget(session, [erased.customer_id], lambda payload: payload)
    if ctx.inbox is not None:
        await ctx.inbox.erase_customer(erased.customer_id, session=session)


def event_handlers(ctx: Notifications) -> dict[str, Handler]:
    """Event type to handler, each bound to the service's context."""
    table: dict[str, Callable[[Notifications, Event[Any], Session], Any]] = {
        PurchaseCompleted.event_type: purchase_completed,
        PurchaseReturned.event_type: purchase_returned,
        ComplaintOpened.event_type: complaint_opened,
        ComplaintStatusChanged.event_type: complaint_status_changed,
        ComplaintResolved.event_type: complaint_resolved,
        ComplaintClosed.event_type: complaint_closed,
        ComplaintReopened.event_type: complaint_reopened,
        ComplaintSlaBreached.event_type: sla_breached,
        ChurnRiskChanged.event_type: churn_risk_changed,
        CustomerRegistered.event_type: customer_snapshot,
        CustomerUpdated.event_type: customer_snapshot,
        ConsentChanged.event_type: consent_changed,
        CustomerMerged.event_type: customer_merged,
        CustomerErased.event_type: customer_erased,
    }

    def bind(handler: Callable[[Notifications, Event[Any], Session], Any]) -> Handler:
        async def handle(event: Event[Any], session: Session) -> None:
            await handler(ctx, event, session)

        return handle

    return {event_type: bind(handler) for event_type, handler in table.items()}


# -- schedules -----------------------------------------------------------------------------


async def sync_schedules(
    ctx: Notifications, session: Session, customer: Customer, now: datetime
) -> None:
    """Birthday and renewal schedules as the customer's profile now says."""
    time_zone = ctx.time_zone_of(customer)
    birthday_rule = await ctx.rule(r.BIRTHDAY_GREETING, session)
    at = r.local_time(birthday_rule)
    schedule_id = birthday_id(customer.id)
    existing = await ctx.schedules.get(schedule_id, session)
    if customer.birthday is None:
        if existing is not None:
            await ctx.schedules.cancel(session, {"_id": schedule_id}, "no birthday", now)
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
            await ctx.schedules.put(
                session, schedule_id, rule=r.BIRTHDAY_GREETING, customer_id=customer.id,
                due_at=due, occurrence=year, params=params, now=now,
            )  # fmt: skip
    await _sync_renewals(ctx, session, customer, time_zone, now)


async def _sync_renewals(
    ctx: Notifications, session: Session, customer: Customer, time_zone: str, now: datetime
) -> None:
    config = await ctx.rule(r.RENEWAL_REMINDER, session)
    at = r.local_time(config)
    wanted = wanted_renewals(
        ((c.contract_id, c.product, c.ends_on, c.active) for c in customer.contracts),
        r.days_before(config),
    )
    existing = {
        s.id: s for s in await ctx.schedules.of_customer(customer.id, session, r.RENEWAL_REMINDER)
    }
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
                await ctx.schedules.cancel(session, {"_id": schedule_id}, "date moved", now)
            continue  # already past when we learned of it: too late to remind
        await ctx.schedules.put(
            session, schedule_id, rule=r.RENEWAL_REMINDER, customer_id=customer.id,
            due_at=due, occurrence=occurrence, params=params, now=now,
        )  # fmt: skip
    for schedule_id in existing.keys() - keep:
        await ctx.schedules.cancel(session, {"_id": schedule_id}, "contract ended", now)


async def resync_schedules(ctx: Notifications) -> int:
    """Birthday and renewal schedules worked out again for every known customer (after
    their rule's time or days changed); returns how many customers were looked at."""
    cursor = ctx.directory.customers.find(
        {"version": {"$gte": 1}, "erased": {"$ne": True}, "merged_into": None}, {"_id": 1}
    )
    ids = [document["_id"] async for document in cursor]
    for customer_id in ids:

        async def work(session: Session, customer_id: str = customer_id) -> None:
            customer = await ctx.directory.get(customer_id, session)
            if customer is not None and customer.id == customer_id and not customer.erased:
                await sync_schedules(ctx, session, customer, ctx.now())

        await in_transaction(ctx.client, work)
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
        ctx.relay.wake()
    return fired


async def fire_one(ctx: Notifications, schedule: Schedule, now: datetime) -> int:
    async def work(session: Session) -> int:
        current = await ctx.schedules.get(schedule.id, session)
        if (
            current is None
            or current.version != schedule.version
            or current.status is not ScheduleStatus.ACTIVE
            or current.due_at > now
        ):
            return 0
        if current.rule == r.COMPLAINT_DAILY_STATUS:
            # The schedule carries its own time zone; the customer's may have changed.
            customer = await ctx.directory.get(current.customer_id, session)
            config = await ctx.rule(r.COMPLAINT_DAILY_STATUS, session)
            params = {
                **current.params,
                "time_zone": ctx.time_zone_of(customer),
                "local_time": r.local_time(config).strftime("%H:%M"),
            }
            current = dataclasses.replace(current, params=params)
        await plan(ctx, session, _schedule_trigger(current, now), now)
        next_due, next_occurrence = _following(current, now)
        await ctx.schedules.advance(
            session, current, fired=current.occurrence, next_due=next_due,
            next_occurrence=next_occurrence, now=now,
        )  # fmt: skip
        return 1

    try:
        return await in_transaction(ctx.client, work)
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
