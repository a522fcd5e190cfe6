"""The dispatcher: sends what is due, in the background, and records the outcome.

Every ``poll_interval`` it takes due pending deliveries from the ledger, claims each with
a version-guarded update (two dispatchers never both hold one; a claim expires after
``lease`` so a crashed dispatcher's work is taken over), renders the template in the
customer's locale, hands the message to the channel's sender with a bounded timeout, and
then, in *one* transaction, marks the delivery sent and adds ``crm.notification.sent`` to
the outbox. The delivery id is stable across attempts and goes to the channel (SMTP
``Message-ID``, the SMS provider's idempotency key, the webhook's delivery id header), so
a receiver can recognise the one case that remains: a crash after the channel accepted a
message and before the ledger recorded it.

A transient failure is retried after an exponential backoff with full jitter (the next
attempt time is stored, so nothing waits in memory and the stream worker never blocks);
after ``max_attempts``, or at once for a permanent failure, the delivery is *failed*:
``crm.notification.failed`` is published, a dead-letter record goes to
``<crm.notifications>.dlq`` with the reason in headers, and the delivery stays listed
(``GET /api/v1/deliveries?status=failed``) until it is redriven
(``POST /api/v1/deliveries/{id}/redrive``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.notifications.directory import Customer
from services.notifications.domain import (
    Channel,
    DeliveryError,
    OutgoingMessage,
    Recipient,
    Sender,
    TemplateRenderer,
)
from services.notifications.handlers import Notifications, owner_address, suppressed_event
from services.notifications.ports import subscription_id
from services.notifications.respect import Situation, Suppress, decide, quiet_hours_deferral
from services.notifications.rules import Audience
from services.notifications.store import WAITING_FOR_CUSTOMER, Delivery, DeliveryStatus
from shared.background import Periodic
from shared.consumer import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_REASON,
    DLQ_SOURCE_TOPIC,
)
from shared.errors import NotFound
from shared.events import Event, new_event
from shared.events.notifications import NotificationFailed, NotificationSent
from shared.mongo import Session, in_transaction
from shared.topics import NOTIFICATIONS

log = logging.getLogger(__name__)

SOURCE = "/rapport/notifications"


@dataclass
class Sent:
    address: str
    locale: str | None


@dataclass
class Failure:
    reason: str
    transient: bool


@dataclass
class Skip:
    """Not sendable now: suppressed for good, or postponed without counting an attempt."""

    reason: str
    postpone_until: datetime | None = None


Outcome = Sent | Failure | Skip


@dataclass
class Dispatcher:
    ctx: Notifications
    renderer: TemplateRenderer
    senders: Mapping[Channel, Sender]
    poll_interval: float = 0.25
    batch_size: int = 50
    concurrency: int = 8
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 5
    backoff_base: float = 2.0
    backoff_cap: float = 600.0
    send_timeout: float = 10.0
    webhook_timeout: float = 5.0
    unknown_customer_grace: timedelta = timedelta(minutes=5)
    random_fraction: Callable[[], float] = random.random
    _owner: str = field(default_factory=lambda: f"dispatcher-{uuid.uuid4()}")
    _loop: Periodic | None = None
    _in_flight: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._loop = Periodic("notifications-dispatcher", self.poll_interval, self._round)
        await self._loop.start()

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()
        for task in self._in_flight:
            task.cancel()  # its claim expires after the lease; then it is tried again
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()

    async def _round(self) -> bool:
        """Start what is due in the free sending slots, without waiting for it to finish: a
        slow channel or receiver holds its own slot, never the other messages. ``True``
        when every slot was filled (more may be due: go again once one frees up)."""
        if len(self._in_flight) >= self.concurrency:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        free = self.concurrency - len(self._in_flight)
        if free <= 0:
            return True  # (a limit of 0 would mean no limit to MongoDB)
        now = self.ctx.now()
        due = await self.ctx.ledger.due(now, min(free, self.batch_size))
        for delivery in due:
            task = asyncio.create_task(self._dispatch_logged(delivery, now))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(due) >= free

    async def run_once(self) -> int:
        """Attempt every delivery due now (up to a batch) and wait for the outcomes;
        returns how many were tried."""
        now = self.ctx.now()
        due = await self.ctx.ledger.due(now, self.batch_size)
        limit = asyncio.Semaphore(self.concurrency)

        async def one(delivery: Delivery) -> None:
            async with limit:
                await self._dispatch_logged(delivery, now)

        await asyncio.gather(*(one(delivery) for delivery in due))
        return len(due)

    async def _dispatch_logged(self, delivery: Delivery, now: datetime) -> None:
        try:
            await self.dispatch(delivery, now)
        except Exception:
            log.exception("delivery %s could not be dispatched", delivery.id)

    async def dispatch(self, delivery: Delivery, now: datetime) -> None:
        claimed = await self.ctx.ledger.claim(delivery, self._owner, now + self.lease, now)
        if claimed is None:
            return  # another dispatcher has it
        outcome = await self.attempt(claimed, now)
        await self.record(claimed, outcome)

    async def attempt(self, delivery: Delivery, now: datetime) -> Outcome:
        customer = await self.ctx.directory.get(delivery.customer_id)
        situation = await self._situation(delivery, customer, now)
        if situation is not None:
            # What changed since the delivery was planned counts: a consent revoked, an
            # opt-out, a complaint opened overnight (the daily cap was counted at planning).
            decision = decide(situation)
            if isinstance(decision, Suppress):
                return Skip(decision.reason)
        if delivery.channel is Channel.WEBHOOK:
            return await self._webhook(delivery, customer)
        address = self._address(delivery, customer, now)
        if isinstance(address, Skip):
            return address
        if situation is not None:
            # A retry, a redrive or a late customer can fall into quiet hours: wait again.
            later, because = quiet_hours_deferral(situation)
            if because is not None:
                return Skip("quiet hours", postpone_until=later)
        recipient = self._recipient(delivery, customer, address)
        sender = self.senders.get(delivery.channel)
        if sender is None:
            return Failure(f"no sender for the {delivery.channel.value} channel", False)
        try:
            rendered = await self.renderer.render(
                delivery.rule, delivery.channel, recipient.locale, self._context(delivery, customer)
            )
        except NotFound as missing:
            return Failure(f"no template: {missing.detail}", False)
        except Exception as error:
            return Failure(f"template failed: {type(error).__name__}: {error}", False)
        message = OutgoingMessage(
            delivery_id=delivery.id,
            channel=delivery.channel,
            rule=delivery.rule,
            address=address,
            recipient=recipient,
            rendered=rendered,
        )
        failure = await self._bounded(sender.send(message), self.send_timeout)
        return failure or Sent(address, rendered.locale)

    def _address(self, delivery: Delivery, customer: Customer | None, now: datetime) -> str | Skip:
        """Where the message goes: as recorded, else as the customer's profile says now."""
        if delivery.address is not None:
            return delivery.address
        staff = delivery.audience is Audience.STAFF
        if customer is not None and customer.registered:
            address = (
                owner_address(self.ctx, customer) if staff else customer.address(delivery.channel)
            )
            return address or Skip(f"no {delivery.channel.value} address")
        if self._may_wait(delivery, now):
            waited = now - delivery.created_at
            retry_in = min(self.unknown_customer_grace - waited, timedelta(seconds=5))
            return Skip(WAITING_FOR_CUSTOMER, postpone_until=now + retry_in)
        return owner_address(self.ctx, None) if staff else Skip("unknown customer")

    async def _situation(
        self, delivery: Delivery, customer: Customer | None, now: datetime
    ) -> Situation | None:
        """What respect needs to know now about a message for a customer (None for staff)."""
        if delivery.audience is not Audience.CUSTOMER:
            return None
        preferences = await self.ctx.preferences_of(delivery.customer_id)
        return Situation(
            channel=delivery.channel,
            purpose=delivery.purpose,
            audience=delivery.audience,
            now=now,
            time_zone=self.ctx.time_zone_of(customer),
            consents=customer.consents if customer else {},
            preferences=preferences.to_domain(),
            default_quiet_hours=self.ctx.default_quiet_hours,
            open_complaints=len(customer.open_complaints) if customer else 0,
            marketing_cap=self.ctx.marketing_cap,
            erased=bool(customer and customer.erased),
        )

    def _may_wait(self, delivery: Delivery, now: datetime) -> bool:
        """A customer not known yet may still register (another topic, another order)."""
        return now - delivery.created_at < self.unknown_customer_grace

    async def _webhook(self, delivery: Delivery, customer: Customer | None) -> Outcome:
        webhooks = self.ctx.webhooks
        if webhooks is None or delivery.subscription_id is None:
            return Failure("webhooks are not configured", False)
        subscriptions = await webhooks.matching(delivery.source_event_type)
        chosen = [s for s in subscriptions if subscription_id(s) == delivery.subscription_id]
        if not chosen:
            return Skip("webhook subscription removed or no longer matching")
        body = {
            "delivery_id": delivery.id,
            "rule": delivery.rule,
            "event_type": delivery.source_event_type,
            "source_event_id": delivery.source_event_id,
            "customer_id": delivery.customer_id,
            "purpose": delivery.purpose.value,
            "data": self._context(delivery, customer),
        }
        failure = await self._bounded(
            webhooks.deliver(chosen[0], body, delivery.id), self.webhook_timeout
        )
        return failure or Sent(delivery.subscription_id, None)

    async def _bounded(self, sending: Any, seconds: float) -> Failure | None:
        try:
            await asyncio.wait_for(sending, seconds)
        except TimeoutError:
            return Failure(f"no answer within {seconds:g} s", True)
        except DeliveryError as error:
            return Failure(error.reason, error.transient)
        except Exception as error:  # an adapter's bug or an unexpected network error
            return Failure(f"{type(error).__name__}: {error}", True)
        return None

    def _recipient(self, delivery: Delivery, customer: Customer | None, address: str) -> Recipient:
        ctx = self.ctx
        if delivery.audience is Audience.STAFF:
            return Recipient(
                customer_id=delivery.customer_id,
                name=None,
                email=address if delivery.channel is Channel.EMAIL else None,
                locale=ctx.default_locale,
                time_zone=ctx.default_time_zone,
            )
        if customer is not None and customer.registered:
            return customer.recipient(ctx.default_locale, ctx.default_time_zone)
        return Recipient(
            customer_id=delivery.customer_id,
            email=address if delivery.channel is Channel.EMAIL else None,
            locale=ctx.default_locale,
            time_zone=ctx.default_time_zone,
        )

    def _context(self, delivery: Delivery, customer: Customer | None) -> dict[str, Any]:
        """The stored facts of the event plus who the customer is now (``catalog.py``)."""
        known = customer if customer is not None and customer.registered else None
        staff = delivery.audience is Audience.STAFF
        time_zone = (
            self.ctx.default_time_zone if staff or known is None else self.ctx.time_zone_of(known)
        )
        return {
            **delivery.context,
            "customer_id": delivery.customer_id,
            "customer_name": (known.full_name if staff else known.name) if known else None,
            "time_zone": time_zone,
        }

    def backoff(self, attempts: int) -> timedelta:
        """Full jitter: uniform in [0, min(cap, base · 2^(attempts-1))]."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(attempts - 1, 0))
        return timedelta(seconds=ceiling * self.random_fraction())

    async def record(self, delivery: Delivery, outcome: Outcome) -> None:
        ctx = self.ctx
        now = ctx.now()
        events: list[Event[Any]] = []
        dead_letter = False
        changes: dict[str, Any] = {"updated_at": now}
        if isinstance(outcome, Sent):
            changes.update(
                status=DeliveryStatus.SENT.value,
                sent_at=now,
                address=outcome.address,
                locale=outcome.locale or delivery.locale,
                attempts=delivery.attempts + 1,
                last_error=None,
            )
            events.append(self._event(NotificationSent, delivery, now, sent_at=now,
                                      locale=outcome.locale or delivery.locale))  # fmt: skip
        elif isinstance(outcome, Skip) and outcome.postpone_until is not None:
            changes.update(due_at=outcome.postpone_until, last_error=outcome.reason)
        elif isinstance(outcome, Skip):
            changes.update(status=DeliveryStatus.SUPPRESSED.value, reason=outcome.reason)
            events.append(
                suppressed_event(delivery.model_copy(update={"reason": outcome.reason}), now)
            )
        else:
            attempts = delivery.attempts + 1
            if outcome.transient and attempts < self.max_attempts:
                changes.update(
                    attempts=attempts,
                    last_error=outcome.reason,
                    due_at=now + self.backoff(attempts),
                )
            else:
                reason = (
                    outcome.reason
                    if not outcome.transient
                    else (f"gave up after {attempts} attempts: {outcome.reason}")
                )
                changes.update(
                    status=DeliveryStatus.FAILED.value,
                    attempts=attempts,
                    last_error=outcome.reason,
                    reason=reason,
                    failed_at=now,
                )
                events.append(self._event(NotificationFailed, delivery, now, reason=reason,
                                          attempts=attempts, failed_at=now))  # fmt: skip
                dead_letter = True

        async def store(session: Session) -> None:
            if not await ctx.ledger.finish(session, delivery, changes):
                return  # the claim was lost (lease expired and another took over)
            await ctx.outbox.add(session, events)
            if dead_letter:
                await self._dead_letter(session, events[-1], str(changes["reason"]))

        await in_transaction(ctx.client, store)
        if events:
            ctx.relay.wake()

    def _event(
        self, kind: type[NotificationSent] | type[NotificationFailed], delivery: Delivery,
        now: datetime, **fields: Any,
    ) -> Event[Any]:  # fmt: skip
        payload = kind.model_validate(
            {
                "notification_id": delivery.id,
                "customer_id": delivery.customer_id,
                "channel": delivery.channel,
                "rule": delivery.rule,
                "source_event_id": delivery.source_event_id,
                "locale": delivery.locale,
                **fields,
            }
        )
        return new_event(payload, source=SOURCE, time=now)

    async def _dead_letter(self, session: Session, failed: Event[Any], reason: str) -> None:
        """A record of the failed delivery on ``<crm.notifications>.dlq``, written with the
        outcome in the same transaction."""
        topic = self.ctx.outbox.topics(NOTIFICATIONS)
        headers = [
            (DLQ_REASON, reason.encode()[:2000]),
            (DLQ_ERROR, b"DeliveryFailed"),
            (DLQ_SOURCE_TOPIC, topic.encode()),
            (DLQ_CONSUMER, b"notifications-dispatcher"),
            (DLQ_ATTEMPTS, str(failed.payload.attempts).encode()),
            (DLQ_FAILED_AT, failed.time.isoformat().encode()),
        ]
        await self.ctx.outbox.add_dead_letter(session, failed, headers)
