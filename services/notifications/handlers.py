"""Notifications use cases: from an event (or a due schedule) to recorded decisions.

Events are applied a batch at a time, in the one unit of work the ``EventConsumer`` opens
for the batch: each route's load step says what its events need (``batch.Batch``), the
batch reads it with one query per collection, and the handlers decide in memory, in the
order of the events (a purchase sees the registration earlier in its batch), recording
what they decided about each message: a pending delivery (due now, or deferred to the end
of the customer's quiet hours), or a suppression with its reason (announced as
``crm.notification.suppressed`` through the outbox). Everything is written at commit, one
``bulk_write`` per collection. Nothing is sent here: the dispatcher sends what is due (and
is woken when a batch recorded something due at once), so a slow channel never blocks the
stream worker. An event delivered again finds its marker and does nothing; and the
ledger's key (the message's subject or source event, rule, channel[, subscription]) keeps
even a replayed decision from adding a second delivery. A message about a business object
(a purchase, a return, a complaint's public reply) is keyed on that object's id, not on the
event's: the same purchase sent again under a new CloudEvent id, in the same batch or a
later one, finds the thank-you already decided and adds nothing.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from services.notifications import rules as r
from services.notifications.batch import Batch
from services.notifications.directory import (
    Customer,
    Directory,
    complaint_ended_write,
    complaint_opened_write,
    consent_write,
    customer_from,
    erasure_write,
    merge_writes,
    snapshot_write,
)
from services.notifications.domain import Channel, Purpose
from services.notifications.policy import (
    QUIET_HOURS_APPLY_TO,
    Preferences,
    QuietHours,
    Send,
    Situation,
    decide,
    local_day,
    zone,
)
from services.notifications.ports import HandOff, InboxPort, WebhookPort, subscription_id
from services.notifications.rules import Audience, RuleConfig, configured, definition
from services.notifications.schedules import (
    Schedule,
    ScheduleStatus,
    ScheduleStore,
    StaleSchedule,
    birthday_id,
    cancel_write,
    daily_id,
    following_birthday,
    forget_write,
    move_write,
    next_birthday,
    next_daily,
    put_write,
    reactivate_write,
    remember_comment,
    remember_status,
    renewal_due,
    renewal_id,
    wanted_renewals,
)
from services.notifications.store import (
    CustomerPreferences,
    Delivery,
    DeliveryLedger,
    DeliveryStatus,
    PreferenceStore,
    RuleStore,
    anonymise,
    cancel_pending,
    delivery_id,
    move_pending,
    release_waiting,
)
from shared.background import Periodic
from shared.clock import Clock, utc_now
from shared.consumer import RejectEvent
from shared.events import Event, encode, new_event
from shared.events.base import EventPayload
from shared.events.complaints import (
    ComplaintClosed,
    ComplaintEvent,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintReplied,
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
from shared.mongo import MongoClient, Session
from shared.outbox import Outbox, OutboxRelay
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork, UnitsOfWork

log = logging.getLogger(__name__)

SOURCE = "/rapport/notifications"
SCHEDULE_EVENT_TYPE = "rapport.notifications.schedule"
RESYNC_CHUNK = 200  # customers whose schedules one unit of work works out again


def _nobody() -> None:
    return None


@dataclass
class Notifications:
    """What the notifications use cases need: stores, outbox, ports, settings and clock."""

    client: MongoClient
    ledger: DeliveryLedger
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
    quiet_hours_apply_to: frozenset[tuple[Channel, Purpose]] = QUIET_HOURS_APPLY_TO
    marketing_cap: int = 2
    escalation_address: str = "escalations@rapport.local"
    team_addresses: Mapping[str, str] = field(default_factory=dict)
    owner_fallback_address: str = "account-owners@rapport.local"
    portal_url: str = "http://127.0.0.1:8003"
    clock: Clock = utc_now
    # Called when a batch recorded a delivery due at once (bootstrap: the dispatcher's wake).
    wake_dispatcher: Callable[[], None] = _nobody
    # Takes what a batch records as due now, once it committed (bootstrap: the dispatcher).
    hand_off: HandOff | None = None
    _batches: WeakKeyDictionary[UnitOfWork, Batch] = field(
        default_factory=WeakKeyDictionary, repr=False
    )

    def now(self) -> datetime:
        """The clock's time at the store's precision (milliseconds)."""
        moment = self.clock().astimezone(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def batch(self, uow: UnitOfWork) -> Batch:
        """What ``uow`` (a batch of events, a schedule firing) knows and changes."""
        found = self._batches.get(uow)
        if found is None:
            found = self._batches[uow] = self.reader(uow)
        return found

    def reader(self, uow: UnitOfWork | None = None) -> Batch:
        """A fresh view of the state; without a unit of work it only reads."""
        return Batch(
            directory=self.directory,
            preferences=self.preferences,
            ledger=self.ledger,
            schedules=self.schedules,
            rule_store=self.rule_store,
            webhooks=self.webhooks,
            rule_settings=self.rule_settings,
            clock=self.now,
            uow=uow,
            hand_off=self.hand_off if uow is not None else None,
        )

    def units(self) -> UnitsOfWork:
        return UnitsOfWork(self.client, self.outbox, self.relay)

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
    # The business object the message is about (``purchase_subject``, ...); None: the event.
    subject: str | None = None
    # The triggering event, which a webhook delivers as it is; None for a schedule.
    event: Event[Any] | None = None


def purchase_subject(purchase_id: str) -> str:
    return f"purchase:{purchase_id}"


def return_subject(return_id: str) -> str:
    return f"return:{return_id}"


def reply_subject(comment_id: str) -> str:
    return f"complaint-reply:{comment_id}"


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


async def plan(ctx: Notifications, batch: Batch, trigger: Trigger, now: datetime) -> list[Delivery]:
    """Decide, per channel of the rule, whether and when the message goes; record it."""
    config = await batch.rule(trigger.rule)
    if not config.enabled:
        return []
    rule = definition(trigger.rule)
    customer = await batch.customer(trigger.customer_id)
    customer_id = customer.id if customer is not None else trigger.customer_id
    known = customer is not None and customer.registered
    # The same for every channel of this trigger: looked up once.
    preferences = (await batch.preferences_of(customer_id)).to_domain()
    marketing_today = 0
    if config.purpose is Purpose.MARKETING:
        start, end = local_day(now, ctx.time_zone_of(customer))
        marketing_today = await batch.marketing_between(
            customer_id, start, end, excluding=(trigger.source_event_id, trigger.rule)
        )
    recorded: list[Delivery] = []
    for channel in config.channels:
        targets = await _targets(ctx, batch, trigger, rule.audience, channel, customer, known=known)
        for address, subscription in targets:
            delivery = await _decide(
                ctx, batch, trigger, config, customer, customer_id, preferences,
                marketing_today, channel, address, subscription, now,
            )  # fmt: skip
            if delivery is not None:
                recorded.append(delivery)
    return recorded


async def _targets(
    ctx: Notifications,
    batch: Batch,
    trigger: Trigger,
    audience: Audience,
    channel: Channel,
    customer: Customer | None,
    *,
    known: bool,
) -> list[tuple[str | None, str | None]]:
    """Where a trigger's message goes on one channel: (address, webhook subscription)."""
    if channel is Channel.WEBHOOK:
        subscriptions = await batch.subscriptions(trigger.source_event_type)
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


def _awaits_profile(
    customer: Customer | None, config: RuleConfig, address: str | None, subscription: str | None
) -> bool:
    """A customer message for a customer not registered yet, to an address only the profile
    will give (not a buyer's fallback e-mail, not a webhook subscription)."""
    return (
        config.audience is Audience.CUSTOMER
        and not (customer is not None and customer.registered)
        and address is None
        and subscription is None
    )


def _offer(config: RuleConfig) -> dict[str, Any]:
    """A marketing rule's configured offer goes into its messages."""
    return {k: v for k, v in config.parameters.items() if k in ("offer", "offer_code")}


async def _decide(
    ctx: Notifications,
    batch: Batch,
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
            quiet_hours_apply_to=ctx.quiet_hours_apply_to,
            open_complaints=len(customer.open_complaints) if customer else 0,
            marketing_today=marketing_today,
            marketing_cap=ctx.marketing_cap,
            erased=bool(customer and customer.erased),
        )
    )
    due_at = decision.at if isinstance(decision, Send) else now
    deferred = decision.deferred_because if isinstance(decision, Send) else None
    if isinstance(decision, Send) and _awaits_profile(customer, config, address, subscription):
        # Not decided blind: the quiet hours, zone, locale and address are the profile's,
        # which may be on its way. The dispatcher waits for it (bounded by the unknown
        # customer grace, then a suppression), the registration releases it, and the policy
        # is judged again then (see ``dispatcher.attempt``).
        due_at, deferred = now, None
    delivery = Delivery(
        id=delivery_id(
            trigger.subject or trigger.source_event_id, trigger.rule, channel, subscription
        ),
        source_event_id=trigger.source_event_id,
        source_event_type=trigger.source_event_type,
        subject=trigger.subject,
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
        cloudevent=_cloudevent(trigger) if channel is Channel.WEBHOOK else None,
        due_at=due_at,
        deferred_because=deferred,
        reason=None if isinstance(decision, Send) else decision.reason,
        created_at=now,
        updated_at=now,
    )
    if not await batch.record(delivery):
        return None  # decided before: the ledger keeps the first decision
    if delivery.status is DeliveryStatus.SUPPRESSED:
        batch.emit([suppressed_event(delivery, now)])
    return delivery


def _cloudevent(trigger: Trigger) -> str | None:
    """A webhook's body: the triggering event in structured JSON, as Rapport publishes it."""
    return encode(trigger.event).value.decode() if trigger.event is not None else None


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


# -- what a batch's events need (each route's load step) -----------------------------------

C = TypeVar("C", bound=ComplaintEvent)
S = TypeVar("S", bound=CustomerSnapshot)


async def _load_purchases(
    ctx: Notifications, events: Sequence[Event[PurchaseCompleted]], uow: UnitOfWork
) -> None:
    purchases = [event.payload for event in events]
    ctx.batch(uow).want(
        customers=[p.customer_id for p in purchases if p.customer_id],
        emails=[str(p.customer_email) for p in purchases if not p.customer_id and p.customer_email],
        external_ids=[
            p.customer_external_id
            for p in purchases
            if not p.customer_id and not p.customer_email and p.customer_external_id
        ],
        subjects=[purchase_subject(p.purchase_id) for p in purchases],
    )


async def _load_returns(
    ctx: Notifications, events: Sequence[Event[PurchaseReturned]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        subjects=[return_subject(event.payload.return_id) for event in events],
    )


async def _load_replies(
    ctx: Notifications, events: Sequence[Event[ComplaintReplied]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        subjects=[reply_subject(event.payload.comment_id) for event in events],
        schedules=[daily_id(event.payload.complaint_id) for event in events],
    )


async def _load_complaints(ctx: Notifications, events: Sequence[Event[C]], uow: UnitOfWork) -> None:
    ctx.batch(uow).want(
        customers=[event.payload.customer_id for event in events],
        events=[event.id for event in events],
        schedules=[daily_id(event.payload.complaint_id) for event in events],
    )


async def _load_churn(
    ctx: Notifications, events: Sequence[Event[ChurnRiskChanged]], uow: UnitOfWork
) -> None:
    customers = [event.payload.customer_id for event in events]
    ctx.batch(uow).want(
        customers=customers, events=[event.id for event in events], marketing_of=customers
    )


async def _load_snapshots(ctx: Notifications, events: Sequence[Event[S]], uow: UnitOfWork) -> None:
    customers = [event.payload.customer_id for event in events]
    ctx.batch(uow).want(customers=customers, schedules_of=customers)


async def _load_consents(
    ctx: Notifications, events: Sequence[Event[ConsentChanged]], uow: UnitOfWork
) -> None:
    ctx.batch(uow).want(customers=[event.payload.customer_id for event in events])


async def _load_merges(
    ctx: Notifications, events: Sequence[Event[CustomerMerged]], uow: UnitOfWork
) -> None:
    sources = [event.payload.source_customer_id for event in events]
    both = [*sources, *(event.payload.customer_id for event in events)]
    ctx.batch(uow).want(customers=both, schedules_of=both, moved_from=sources)


async def _load_erasures(
    ctx: Notifications, events: Sequence[Event[CustomerErased]], uow: UnitOfWork
) -> None:
    customers = [event.payload.customer_id for event in events]
    ctx.batch(uow).want(customers=customers, schedules_of=customers)


# -- event handlers ------------------------------------------------------------------------

routes: Routes[Notifications] = Routes()


def _trigger(event: Event[Any], rule: str, customer_id: str, **extra: Any) -> Trigger:
    return Trigger(
        rule=rule,
        source_event_id=event.id,
        source_event_type=event.type,
        customer_id=customer_id,
        event=event,
        **extra,
    )


@routes.on(PurchaseCompleted, load=_load_purchases)
async def purchase_completed(
    ctx: Notifications, event: Event[PurchaseCompleted], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    purchase = event.payload
    customer_id, fallback = await _purchaser(batch, purchase)
    trigger = _trigger(
        event, r.PURCHASE_THANK_YOU, customer_id,
        context=purchase_context(purchase), fallback_email=fallback,
        subject=purchase_subject(purchase.purchase_id),
    )  # fmt: skip
    await plan(ctx, batch, trigger, ctx.now())


async def _purchaser(batch: Batch, purchase: PurchaseCompleted) -> tuple[str, str | None]:
    """Who bought: (customer id, an e-mail to write to when the customer is unknown)."""
    if purchase.customer_id:
        return purchase.customer_id, None
    if purchase.customer_email:
        found = await batch.find_by_email(str(purchase.customer_email))
        if found is not None:
            return found.id, None
        return f"email:{str(purchase.customer_email).lower()}", str(purchase.customer_email)
    assert purchase.customer_external_id is not None  # the payload's validator ensures one
    found = await batch.find_by_external_id(purchase.customer_external_id)
    if found is None:
        raise RejectEvent(
            f"unknown customer: no customer has external id {purchase.customer_external_id}"
            " and the purchase names no address"
        )
    return found.id, None


@routes.on(PurchaseReturned, load=_load_returns)
async def purchase_returned(
    ctx: Notifications, event: Event[PurchaseReturned], uow: UnitOfWork
) -> None:
    returned = event.payload
    trigger = _trigger(
        event, r.RETURN_CONFIRMATION, returned.customer_id, context=return_context(returned),
        subject=return_subject(returned.return_id),
    )  # fmt: skip
    await plan(ctx, ctx.batch(uow), trigger, ctx.now())


async def _complaint_facts(batch: Batch, complaint_id: str) -> dict[str, Any]:
    """What the service remembers of a complaint (kept with its daily status schedule)."""
    stored = await batch.schedule(daily_id(complaint_id))
    facts = dict(stored.params.get("complaint") or {}) if stored else {}
    facts["complaint_id"] = complaint_id
    return facts


async def _complaint_opened(batch: Batch, customer_id: str, complaint_id: str) -> None:
    """The complaint counts as open for the customer (the survivor, after a merge)."""
    customer = await batch.customer(customer_id)
    target = customer.id if customer is not None else customer_id
    await batch.customer_document(target)
    batch.change_customers(complaint_opened_write(target, complaint_id))


@routes.on(ComplaintOpened, load=_load_complaints)
async def complaint_opened(
    ctx: Notifications, event: Event[ComplaintOpened], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    opened = event.payload
    complaint = {
        "complaint_id": opened.complaint_id,
        "subject": opened.subject,
        "category": opened.category,
        "priority": opened.priority.value,
        "first_response_due_at": _iso(opened.first_response_due_at),
        "resolution_due_at": _iso(opened.resolution_due_at),
        "opened_at": _iso(opened.opened_at),
    }
    await _complaint_opened(batch, opened.customer_id, opened.complaint_id)
    trigger = _trigger(event, r.COMPLAINT_ACKNOWLEDGEMENT, opened.customer_id, context=complaint)
    await plan(ctx, batch, trigger, ctx.now())
    await start_daily_status(ctx, batch, opened.customer_id, {**complaint, "status": "open"})


async def start_daily_status(
    ctx: Notifications, batch: Batch, customer_id: str, complaint: Mapping[str, Any]
) -> None:
    now = ctx.now()
    customer = await batch.customer(customer_id)
    target = customer.id if customer else customer_id
    config = await batch.rule(r.COMPLAINT_DAILY_STATUS)
    at = r.local_time(config)
    time_zone = ctx.time_zone_of(customer)
    due, day = next_daily(at, time_zone, now)
    params = {
        "complaint": dict(complaint),
        "time_zone": time_zone,
        "local_time": at.strftime("%H:%M"),
    }
    schedule_id = daily_id(str(complaint["complaint_id"]))
    await batch.schedule(schedule_id)
    batch.change_schedules(
        put_write(
            schedule_id, rule=r.COMPLAINT_DAILY_STATUS, customer_id=target, due_at=due,
            occurrence=day, params=params, now=now,
        )
    )  # fmt: skip


@routes.on(ComplaintStatusChanged, load=_load_complaints)
async def complaint_status_changed(
    ctx: Notifications, event: Event[ComplaintStatusChanged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    changed = event.payload
    await batch.schedule(daily_id(changed.complaint_id))
    batch.change_schedules(
        remember_status(changed.complaint_id, changed.to_status.value, changed.public_comment)
    )
    if not r.triggered_by(event.type, changed.model_dump(mode="json")):
        return
    facts = await _complaint_facts(batch, changed.complaint_id)
    context = {
        "complaint_id": changed.complaint_id,
        "subject": facts.get("subject"),
        "from_status": changed.from_status.value,
        "to_status": changed.to_status.value,
        "public_comment": changed.public_comment,
        "changed_at": _iso(changed.changed_at),
    }
    trigger = _trigger(event, r.COMPLAINT_PROGRESS, changed.customer_id, context=context)
    await plan(ctx, batch, trigger, ctx.now())


@routes.on(ComplaintReplied, load=_load_replies)
async def complaint_replied(
    ctx: Notifications, event: Event[ComplaintReplied], uow: UnitOfWork
) -> None:
    """A staff member's public reply reaches the customer as a progress message (the same
    rule, preferences and consent as a status change with a public comment); complaints
    publishes no event for an internal note."""
    batch = ctx.batch(uow)
    replied = event.payload
    await batch.schedule(daily_id(replied.complaint_id))
    batch.change_schedules(remember_comment(replied.complaint_id, replied.public_comment))
    facts = await _complaint_facts(batch, replied.complaint_id)
    status = facts.get("status")
    context = {
        "complaint_id": replied.complaint_id,
        "subject": facts.get("subject"),
        "from_status": status,
        "to_status": status,  # a reply alone leaves the status as it was (None: not known)
        "public_comment": replied.public_comment,
        "changed_at": _iso(replied.replied_at),
    }
    for rule in r.triggered_by(event.type, replied.model_dump(mode="json")):
        trigger = _trigger(
            event, rule, replied.customer_id, context=context,
            subject=reply_subject(replied.comment_id),
        )  # fmt: skip
        await plan(ctx, batch, trigger, ctx.now())


@routes.on(ComplaintResolved, load=_load_complaints)
async def complaint_resolved(
    ctx: Notifications, event: Event[ComplaintResolved], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    resolved = event.payload
    facts = await _complaint_facts(batch, resolved.complaint_id)
    await _complaint_ended(ctx, batch, resolved.complaint_id, "resolved")
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
    trigger = _trigger(event, r.COMPLAINT_RESOLVED, resolved.customer_id, context=context)
    await plan(ctx, batch, trigger, ctx.now())


async def _complaint_ended(ctx: Notifications, batch: Batch, complaint_id: str, why: str) -> None:
    batch.change_customers(complaint_ended_write(complaint_id))
    await batch.schedule(daily_id(complaint_id))
    batch.change_schedules(cancel_write({"_id": daily_id(complaint_id)}, why, ctx.now()))


@routes.on(ComplaintClosed, load=_load_complaints)
async def complaint_closed(
    ctx: Notifications, event: Event[ComplaintClosed], uow: UnitOfWork
) -> None:
    await _complaint_ended(ctx, ctx.batch(uow), event.payload.complaint_id, "closed")


@routes.on(ComplaintReopened, load=_load_complaints)
async def complaint_reopened(
    ctx: Notifications, event: Event[ComplaintReopened], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    reopened = event.payload
    await _complaint_opened(batch, reopened.customer_id, reopened.complaint_id)
    facts = await _complaint_facts(batch, reopened.complaint_id)
    facts["status"] = "reopened"
    await start_daily_status(ctx, batch, reopened.customer_id, facts)


@routes.on(ComplaintSlaBreached, load=_load_complaints)
async def sla_breached(
    ctx: Notifications, event: Event[ComplaintSlaBreached], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    breach = event.payload
    facts = await _complaint_facts(batch, breach.complaint_id)
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
        trigger = _trigger(
            event, rule, breach.customer_id, context=context, team=breach.escalated_to
        )
        await plan(ctx, batch, trigger, ctx.now())


@routes.on(ChurnRiskChanged, load=_load_churn)
async def churn_risk_changed(
    ctx: Notifications, event: Event[ChurnRiskChanged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    churn = event.payload
    context = {
        "level": churn.level.value,
        "previous_level": churn.previous_level.value if churn.previous_level else None,
        "score": churn.score,
        "reasons": list(churn.reasons),
        "changed_at": _iso(churn.changed_at),
    }
    for rule in r.triggered_by(event.type, churn.model_dump(mode="json")):
        trigger = _trigger(event, rule, churn.customer_id, context=context)
        await plan(ctx, batch, trigger, ctx.now())


@routes.on(CustomerRegistered, CustomerUpdated, load=_load_snapshots)
async def customer_snapshot(
    ctx: Notifications, event: Event[CustomerSnapshot], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    snapshot = event.payload
    stored = await batch.customer_document(snapshot.customer_id)
    write = snapshot_write(stored, snapshot)
    if write is None:
        return  # older than what is known, or the customer was erased
    batch.change_customers(write)
    after = await batch.customer_document(snapshot.customer_id)
    assert after is not None
    customer = customer_from(after)
    now = ctx.now()
    await sync_schedules(ctx, batch, customer, now)
    if stored is None or not customer_from(stored).registered:
        batch.change_deliveries(*release_waiting(customer.id, now))


@routes.on(ConsentChanged, load=_load_consents)
async def consent_changed(
    ctx: Notifications, event: Event[ConsentChanged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    consent = event.payload
    stored = await batch.customer_document(consent.customer_id)
    write = consent_write(
        stored, consent.customer_id, consent.channel, consent.purpose, consent.granted
    )
    if write is not None:
        batch.change_customers(write)


@routes.on(CustomerMerged, load=_load_merges)
async def customer_merged(
    ctx: Notifications, event: Event[CustomerMerged], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    merged = event.payload
    source, target, undo = merged.source_customer_id, merged.customer_id, merged.undone
    now = ctx.now()
    batch.want(schedules_of=[source, target], moved_from=[source])
    await batch.ready()
    source_document = await batch.customer_document(source)
    await batch.customer_document(target)
    batch.change_customers(*merge_writes(source_document, source, target, undone=undo))
    batch.change_deliveries(*move_pending(source, target, undo=undo))
    daily = {"rule": r.COMPLAINT_DAILY_STATUS}
    personal = {"rule": {"$in": [r.BIRTHDAY_GREETING, r.RENEWAL_REMINDER]}}
    if undo:
        # The source's own birthday and contracts come back; its complaints go back too.
        batch.change_schedules(
            reactivate_write({"customer_id": source, **personal}, "merged", now),
            move_write({"moved_from": source, **daily}, source, None),
        )
    else:
        # The survivor's profile (updated by profiles) carries what the source had.
        batch.change_schedules(
            cancel_write({"customer_id": source, **personal}, "merged", now),
            move_write({"customer_id": source, **daily}, target, source),
        )
    if ctx.inbox is not None:
        await ctx.inbox.move_customer(source, target, undo=undo, session=batch.session)


@routes.on(CustomerErased, load=_load_erasures)
async def customer_erased(
    ctx: Notifications, event: Event[CustomerErased], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    erased = event.payload
    customer_id, now = erased.customer_id, ctx.now()
    batch.want(schedules_of=[customer_id])
    await batch.ready()
    await batch.customer_document(customer_id)
    batch.change_customers(erasure_write(customer_id, erased.erased_at))
    batch.change_deliveries(
        *cancel_pending(customer_id, "customer erased", now), *anonymise(customer_id, now)
    )
    batch.change_schedules(forget_write(customer_id, now))
    batch.forget_preferences(customer_id)
    await ctx.outbox.forget(uow.session, [customer_id], lambda payload: payload)
    if ctx.inbox is not None:
        await ctx.inbox.erase_customer(customer_id, session=uow.session)


@routes.after_batch
async def _wake_the_dispatcher(
    ctx: Notifications, events: Sequence[Event[Any]], uow: UnitOfWork
) -> None:
    """What the batch recorded as due now goes out without waiting for the next poll."""
    if ctx.batch(uow).due_now:
        ctx.wake_dispatcher()


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
    cursor = ctx.directory.customers.find(
        {"version": {"$gte": 1}, "erased": {"$ne": True}, "merged_into": None}, {"_id": 1}
    )
    ids = [document["_id"] async for document in cursor]
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
