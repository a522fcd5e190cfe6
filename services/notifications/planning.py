"""What a trigger (an event, a due schedule) decides: the notifications context, the
recipients and channels of each rule, and a pending delivery or a suppression for each
(see ``handlers.py`` for the events, ``scheduling.py`` for the schedules)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from services.notifications import rules as r
from services.notifications.batch import Batch
from services.notifications.deliveries_domain import Delivery, DeliveryStatus, delivery_id
from services.notifications.deliveries_store import DeliveryLedger
from services.notifications.directory_domain import Customer
from services.notifications.directory_store import Directory
from services.notifications.domain import Channel, Purpose
from services.notifications.policy import (
    QUIET_HOURS_APPLY_TO,
    Preferences,
    QuietHours,
    Send,
    Situation,
    decide,
    local_day,
)
from services.notifications.ports import HandOff, InboxPort, WebhookPort, subscription_id
from services.notifications.preferences_domain import CustomerPreferences
from services.notifications.preferences_store import PreferenceStore
from services.notifications.rules import Audience, RuleConfig, configured, definition
from services.notifications.rules_store import RuleStore
from services.notifications.scheduling_store import ScheduleStore
from shared.clock import Clock, to_millisecond, utc_now
from shared.events import Event, encode, new_event
from shared.events.base import EventPayload
from shared.events.notifications import NotificationSuppressed
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.mongo import MongoClient, Session
from shared.outbox import Outbox, OutboxRelay
from shared.unit_of_work import UnitOfWork, UnitsOfWork

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
        return to_millisecond(self.clock())

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
    # An e-mail address the event says the message goes to (the one a sign-in link was
    # asked for), rather than the profile's first; and the language it asks for.
    address: str | None = None
    locale: str | None = None


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
    if trigger.address is not None and channel is Channel.EMAIL:
        return [(trigger.address, None)]
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
            requested=definition(trigger.rule).requested,
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
        locale=trigger.locale or (customer.locale if customer else None) or None,
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


def iso(moment: datetime | None) -> str | None:
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
        "purchased_at": iso(purchase.purchased_at),
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
        "returned_at": iso(returned.returned_at),
    }
