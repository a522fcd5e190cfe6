"""The dispatcher: sends what is due, in the background, in batches, and records outcomes.

It *claims* due pending deliveries a batch at a time, in one transaction (one query finds
the oldest due ones, one update claims them; two dispatchers never both hold one). A claim
is a lease: it moves the delivery's ``due_at`` to its expiry, so if the dispatcher dies the
delivery is due again after ``lease`` and another takes it over. The customers and
preferences of the batch are read together; its deliveries are sent concurrently, at most
``concurrency`` at once (a new batch is claimed while enough still wait for a slot), each
rendered in the customer's locale and handed to the channel's sender with a bounded
timeout. An in-app message is not sent: it is stored in the inbox with its outcome.
Outcomes are recorded in batches: whatever finished while the previous batch was being
recorded goes in *one* transaction (one ``bulk_write`` of the ledger, one of the in-app
messages, one outbox insert of the ``crm.notification.*`` events), so an inbox shows a
message exactly when the ledger says it was sent. The dispatcher looks for due
deliveries every ``poll_interval``, and at once when the event path recorded something
due now (:meth:`Dispatcher.wake`).

What the event path records as due now does not wait for a look at all: the batch writes
a claim of this dispatcher into those deliveries (:meth:`Dispatcher.reserve`), and once its
transaction has committed hands them over (:meth:`Dispatcher.take`): as recorded, or
read back by id when a later event of the batch changed them (a merge, an erasure); they
are then sent like a claimed batch. While more than
``max_in_hand`` deliveries wait in hand, no lease is given: the deliveries stay due and
are claimed later. A delivery whose claim would expire before its send could time out is
not started (past its lease another dispatcher may take it over).

A stop (SIGTERM) does not cancel a send in flight: the dispatcher stops claiming, lets the
sends in flight finish (for at most ``stop_timeout``), records their outcomes and hands
back what it claimed and had not started, so a message the channel accepted is never sent
again because of a stop. The delivery id is
stable across attempts and goes to the channel (SMTP ``Message-ID``, the SMS provider's
idempotency key, the webhook's delivery id header), so a receiver
can recognise the one case that remains: a crash (SIGKILL) after the channel accepted a
message and before the ledger recorded it; only the sends in flight at that moment are
tried again, after the lease, with the same id.

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
import contextlib
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.notifications.batch import Batch
from services.notifications.deliveries_domain import WAITING_FOR_CUSTOMER, Delivery, DeliveryStatus
from services.notifications.deliveries_store import finish
from services.notifications.directory_domain import Customer
from services.notifications.domain import (
    Channel,
    DeliveryError,
    OutgoingMessage,
    Recipient,
    Sender,
    TemplateRenderer,
)
from services.notifications.planning import (
    SCHEDULE_EVENT_TYPE,
    Notifications,
    owner_address,
    suppressed_event,
)
from services.notifications.policy import Situation, Suppress, decide, quiet_hours_deferral
from services.notifications.ports import Lease, subscription_id
from services.notifications.rules import DEFINITIONS, Audience
from services.notifications.webhooks_domain import cloudevent
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
from shared.mongo import Session
from shared.topics import NOTIFICATIONS
from shared.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

SOURCE = "/rapport/notifications"
# A notification CloudEvent's id: a UUID of the occurrence, the same for every subscriber.
_NOTIFICATION_NAMESPACE = uuid.UUID("3d0b5c1e-8f4a-4e8e-9a51-7765626b6f6f")


@dataclass
class Sent:
    address: str
    locale: str | None
    # An in-app message, stored in the inbox when its outcome is recorded.
    stored: OutgoingMessage | None = None


@dataclass
class Failure:
    reason: str
    transient: bool


@dataclass
class Skip:
    """Not sendable now: suppressed for good, or postponed without counting an attempt."""

    reason: str
    postpone_until: datetime | None = None
    # A postponement that is a deferral (quiet hours), shown as ``deferred_because``.
    deferral: bool = False


Outcome = Sent | Failure | Skip


Finished = tuple[Delivery, Outcome]

# After a wake the batch that recorded the deliveries may not have committed yet: look
# again this often for this long rather than wait for the next poll.
EAGER_INTERVAL = 0.02
EAGER_WINDOW = 1.0
RECORD_ATTEMPTS = 5


def _waits_for_customer(changes: Mapping[str, Any]) -> bool:
    return changes.get("last_error") == WAITING_FOR_CUSTOMER


@dataclass
class Dispatcher:
    ctx: Notifications
    renderer: TemplateRenderer
    senders: Mapping[Channel, Sender]
    poll_interval: float = 0.25
    batch_size: int = 200
    concurrency: int = 8
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 5
    backoff_base: float = 2.0
    backoff_cap: float = 600.0
    send_timeout: float = 10.0
    webhook_timeout: float = 5.0
    stop_timeout: float = 15.0
    unknown_customer_grace: timedelta = timedelta(minutes=5)
    max_in_hand: int = 2000
    random_fraction: Callable[[], float] = random.random
    _owner: str = field(default_factory=lambda: f"dispatcher-{uuid.uuid4()}")
    _claims: Iterator[int] = field(default_factory=itertools.count)
    _task: asyncio.Task[None] | None = None
    _sending: set[asyncio.Task[None]] = field(default_factory=set)
    _finished: list[Finished] = field(default_factory=list)
    _recorder: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _freed: asyncio.Event = field(default_factory=asyncio.Event)  # a send gave up its slot
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _slots: asyncio.Semaphore | None = None
    _busy: int = 0  # sends holding a slot
    _unstarted: list[Delivery] = field(default_factory=list)

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._slots = asyncio.Semaphore(self.concurrency)
            self._task = asyncio.create_task(self._run(), name="notifications-dispatcher")

    def wake(self) -> None:
        """Something is due now: look at once rather than at the next poll."""
        self._wake.set()

    def reserve(self, now: datetime) -> Lease | None:
        """A claim for deliveries the event path is about to record as due now (see the
        module's docstring); None while stopped or with ``max_in_hand`` waiting."""
        if self._task is None or self._stopping.is_set():
            return None
        if len(self._sending) >= self.max_in_hand:
            return None
        return Lease(f"{self._owner}:{next(self._claims)}", now + self.lease)

    def take(self, lease: Lease, deliveries: Sequence[Delivery], changed: Sequence[str]) -> None:
        """Send the deliveries recorded under ``lease`` (their transaction committed), and
        those of ``changed`` as they were committed."""
        if not deliveries and not changed:
            return
        task = asyncio.create_task(self._take(lease, list(deliveries), list(changed)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _take(self, lease: Lease, handed: list[Delivery], changed: list[str]) -> None:
        if changed:
            try:
                handed += await self.ctx.ledger.claimed(changed, lease.claim)
            except Exception:  # their claim expires: they are sent after the lease
                log.exception("could not read %d deliveries handed over", len(changed))
        self._spawn(handed, await self._reader_for(handed))

    async def stop(self) -> None:
        """Stop claiming, let the sends in flight finish (at most ``stop_timeout``) and
        record their outcomes; what was claimed and not started yet is handed back. A
        send still running after ``stop_timeout`` is cancelled: its claim expires after the
        lease and it is tried again, with the same delivery id."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        while self._sending:  # (a hand-over read back may add sends: look again)
            _, late = await asyncio.wait(set(self._sending), timeout=max(deadline - loop.time(), 0))
            if late and loop.time() >= deadline:
                for task in late:
                    task.cancel()
                log.warning("%d sends did not finish within %g s of the stop", len(late),
                            self.stop_timeout)  # fmt: skip
                await asyncio.gather(*late, return_exceptions=True)
                break
        self._record_soon()
        if self._recorder is not None:
            await self._recorder
        unstarted, self._unstarted = self._unstarted, []
        try:
            await self.ctx.ledger.release(unstarted, self.ctx.now())
        except Exception:  # their claims expire by themselves
            log.exception("could not hand back %d claimed deliveries", len(unstarted))

    async def _run(self) -> None:
        """Claim a batch whenever fewer than ``concurrency`` claimed deliveries wait for a
        sending slot, so the slots never run dry and a claim serves many sends."""
        loop = asyncio.get_running_loop()
        eager_until = 0.0
        while not self._stopping.is_set():
            self._freed.clear()
            waiting = len(self._sending) - self._busy
            claimed = 0
            if waiting < self.concurrency:
                try:
                    claimed = await self._claim_and_send(self.batch_size)
                except Exception:
                    log.exception("claiming due deliveries failed; trying again")
                if claimed:
                    eager_until = 0.0  # what woke us is visible
                if claimed == self.batch_size:
                    continue  # more may be due
            seconds = self.poll_interval
            if loop.time() < eager_until:
                seconds = min(seconds, EAGER_INTERVAL)
            full = waiting + claimed >= self.concurrency
            if await self._pause(seconds, full=full):
                eager_until = loop.time() + EAGER_WINDOW

    async def _pause(self, seconds: float, *, full: bool) -> bool:
        """Wait for a reason to look again: a wake (True), a send finishing when enough
        are waiting for a slot, a stop, or ``seconds``."""
        # (an event a finishing send sets, not a wait on every send task: with thousands
        # in hand, that wait would cost more than the sends)
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        waiters.append(asyncio.ensure_future((self._freed if full else self._wake).wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if full or not self._wake.is_set():
            return False
        self._wake.clear()
        return True

    async def _claim(self, limit: int) -> tuple[list[Delivery], Batch]:
        """Claim up to ``limit`` due deliveries and read what sending them needs."""
        now = self.ctx.now()
        claim = f"{self._owner}:{next(self._claims)}"
        claimed = await self.ctx.ledger.claim_due(now, limit, claim, now + self.lease)
        return claimed, await self._reader_for(claimed)

    async def _reader_for(self, deliveries: Sequence[Delivery]) -> Batch:
        """What sending ``deliveries`` needs of their customers, read together."""
        return await self._reader_for_customers([delivery.customer_id for delivery in deliveries])

    async def _reader_for_customers(self, customer_ids: Sequence[str]) -> Batch:
        reader = self.ctx.reader()
        if customer_ids:
            reader.want(customers=customer_ids)
            with contextlib.suppress(Exception):  # read again, one by one, when asked
                await reader.ready()
        return reader

    async def _claim_and_send(self, limit: int) -> int:
        claimed, reader = await self._claim(limit)
        self._spawn(claimed, reader)
        return len(claimed)

    def _spawn(self, deliveries: Sequence[Delivery], reader: Batch) -> None:
        for delivery in deliveries:
            task = asyncio.create_task(self._send(delivery, reader))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, delivery: Delivery, reader: Batch) -> None:
        """Send once a slot is free, unless the dispatcher is stopping by then."""
        assert self._slots is not None
        started = False
        try:
            async with self._slots:
                if self._stopping.is_set() or self._expiring(delivery):
                    return
                started = True
                self._busy += 1
                try:
                    outcome = await self._attempt_logged(delivery, reader, self.ctx.now())
                finally:
                    self._busy -= 1
                    self._freed.set()
        finally:
            if not started:
                self._unstarted.append(delivery)
        if outcome is not None:
            self._finished.append((delivery, outcome))
            self._record_soon()

    def _expiring(self, delivery: Delivery) -> bool:
        """Its claim may expire while it is being sent: leave it to the next claim."""
        until = delivery.claimed_until
        if until is None:
            return False
        margin = timedelta(seconds=max(self.send_timeout, self.webhook_timeout) + 1)
        return until - self.ctx.now() < min(margin, self.lease / 2)

    async def _attempt_logged(
        self, delivery: Delivery, reader: Batch, now: datetime
    ) -> Outcome | None:
        try:
            return await self.attempt(delivery, now, reader)
        except Exception:
            # Left claimed: tried again once the claim expires.
            log.exception("delivery %s could not be dispatched", delivery.id)
            return None

    async def run_once(self) -> int:
        """Attempt every delivery due now (up to a batch), wait for the outcomes and record
        them; returns how many were tried."""
        claimed, reader = await self._claim(self.batch_size)
        limit = asyncio.Semaphore(self.concurrency)

        async def one(delivery: Delivery) -> Outcome | None:
            async with limit:
                return await self._attempt_logged(delivery, reader, self.ctx.now())

        outcomes = await asyncio.gather(*(one(delivery) for delivery in claimed))
        await self.record(
            [(d, outcome) for d, outcome in zip(claimed, outcomes, strict=True) if outcome]
        )
        return len(claimed)

    async def attempt(
        self, delivery: Delivery, now: datetime, reader: Batch | None = None
    ) -> Outcome:
        """Try one claimed delivery; ``reader``: what its batch read of the customers."""
        reader = reader or self.ctx.reader()
        customer = await reader.customer(delivery.customer_id)
        situation = await self._situation(delivery, customer, reader, now)
        if situation is not None:
            # What changed since the delivery was planned counts: a consent revoked, an
            # opt-out, a complaint opened overnight (the daily cap was counted at planning).
            decision = decide(situation)
            if isinstance(decision, Suppress):
                return Skip(decision.reason)
        if delivery.channel is Channel.WEBHOOK:
            return await self._webhook(delivery, customer, reader)
        address = self._address(delivery, customer, now)
        if isinstance(address, Skip):
            return address
        if situation is not None:
            # A retry, a redrive or a late customer can fall into quiet hours: wait again.
            later, because = quiet_hours_deferral(situation)
            if because is not None:
                return Skip(because, postpone_until=later, deferral=True)
        recipient = self._recipient(delivery, customer, address)
        in_app = delivery.channel is Channel.IN_APP  # (stored, not sent: see record)
        sender = None if in_app else self.senders.get(delivery.channel)
        if (self.ctx.inbox if in_app else sender) is None:
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
        if in_app:
            return Sent(address, rendered.locale, stored=message)
        assert sender is not None
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
        self, delivery: Delivery, customer: Customer | None, reader: Batch, now: datetime
    ) -> Situation | None:
        """What the policy needs to know now about a message for a customer (None for staff)."""
        if delivery.audience is not Audience.CUSTOMER:
            return None
        preferences = await reader.preferences_of(delivery.customer_id)
        rule = DEFINITIONS.get(delivery.rule)
        return Situation(
            channel=delivery.channel,
            purpose=delivery.purpose,
            audience=delivery.audience,
            requested=rule is not None and rule.requested,
            now=now,
            time_zone=self.ctx.time_zone_of(customer),
            consents=customer.consents if customer else {},
            preferences=preferences.to_domain(),
            default_quiet_hours=self.ctx.default_quiet_hours,
            quiet_hours_apply_to=self.ctx.quiet_hours_apply_to,
            open_complaints=len(customer.open_complaints) if customer else 0,
            marketing_cap=self.ctx.marketing_cap,
            erased=bool(customer and customer.erased),
        )

    def _may_wait(self, delivery: Delivery, now: datetime) -> bool:
        """A customer not known yet may still register (another topic, another order)."""
        return now - delivery.created_at < self.unknown_customer_grace

    async def _webhook(
        self, delivery: Delivery, customer: Customer | None, reader: Batch
    ) -> Outcome:
        webhooks = self.ctx.webhooks
        if webhooks is None or delivery.subscription_id is None:
            return Failure("webhooks are not configured", False)
        subscriptions = await reader.subscriptions(delivery.source_event_type)
        chosen = [s for s in subscriptions if subscription_id(s) == delivery.subscription_id]
        if not chosen:
            return Skip("webhook subscription removed or no longer matching")
        body = self._webhook_body(delivery, customer)
        failure = await self._bounded(
            webhooks.deliver(chosen[0], body, delivery.id), self.webhook_timeout
        )
        return failure or Sent(delivery.subscription_id, None)

    def _webhook_body(self, delivery: Delivery, customer: Customer | None) -> bytes:
        """The triggering CloudEvent as it was kept; for a schedule's message (nothing
        triggered it) a notification CloudEvent of the type the subscription matched."""
        if delivery.cloudevent is not None:
            return delivery.cloudevent.encode()
        scheduled = delivery.source_event_type.startswith(f"{SCHEDULE_EVENT_TYPE}.")
        # A delivery recorded before the triggering event was kept with it says what it can.
        kind = delivery.source_event_type if scheduled else f"rapport.notifications.{delivery.rule}"
        return cloudevent(
            {"id": str(uuid.uuid5(_NOTIFICATION_NAMESPACE, delivery.source_event_id)),
             "source": SOURCE, "type": kind, "subject": delivery.customer_id,
             "time": delivery.created_at},
            self._context(delivery, customer),
        )  # fmt: skip

    async def _bounded(self, sending: Awaitable[None], seconds: float) -> Failure | None:
        # (a deadline on this task, not wait_for's task of its own for every send)
        try:
            async with asyncio.timeout(seconds):
                await sending
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
        # A message the customer asked for is in the language they asked in (the portal's).
        rule = DEFINITIONS.get(delivery.rule)
        asked_in = delivery.locale if rule is not None and rule.requested else None
        if customer is not None and customer.registered:
            recipient = customer.recipient(ctx.default_locale, ctx.default_time_zone)
            return replace(recipient, locale=asked_in) if asked_in else recipient
        return Recipient(
            customer_id=delivery.customer_id,
            email=address if delivery.channel is Channel.EMAIL else None,
            locale=asked_in or ctx.default_locale,
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

    def _record_soon(self) -> None:
        if self._finished and (self._recorder is None or self._recorder.done()):
            self._recorder = asyncio.create_task(self._record_finished())

    async def _record_finished(self) -> None:
        """Record what finished, a batch per transaction, until nothing waits."""
        failures = 0
        while self._finished:
            finished, self._finished = self._finished, []
            try:
                await self.record(finished)
                failures = 0
            except Exception:
                failures += 1
                if failures >= RECORD_ATTEMPTS:
                    # Their claims expire; they are sent again, with the same ids.
                    log.exception("%d outcomes could not be recorded", len(finished))
                    continue
                log.warning("recording %d outcomes failed; trying again", len(finished))
                self._finished = finished + self._finished
                await asyncio.sleep(0.2 * 2**failures)

    async def record(self, finished: Sequence[Finished]) -> None:
        """Record the outcomes of claimed deliveries in one transaction: one read of their
        claims, one ``bulk_write`` of the ledger, one of the in-app messages sent (stored
        in the inbox here), one outbox insert of the events. An outcome whose claim was
        lost (it expired and another dispatcher took the delivery over) or whose delivery
        is no longer pending (its customer was erased meanwhile) is not recorded, and its
        in-app message not stored. A delivery that found its customer unknown is due at
        once if the customer is registered by now (one read of those customers, before)."""
        if not finished:
            return
        now = self.ctx.now()
        deliveries = self.ctx.ledger.deliveries
        planned = [
            (delivery, *self._changes(delivery, outcome, now)) for delivery, outcome in finished
        ]
        known = await self._registered_now(
            [delivery.customer_id for delivery, changes, *_ in planned
             if _waits_for_customer(changes)]
        )  # fmt: skip
        if known:  # registered by now: due at once
            planned = [
                (delivery, {**changes, "due_at": now}, events, dead_letter)
                if _waits_for_customer(changes) and delivery.customer_id in known
                else (delivery, changes, events, dead_letter)
                for delivery, changes, events, dead_letter in planned
            ]

        stored = {
            delivery.id: outcome.stored
            for delivery, outcome in finished
            if isinstance(outcome, Sent) and outcome.stored is not None
        }

        async def work(uow: UnitOfWork) -> None:
            uow.reads += 1
            current = await self.ctx.ledger.claims(
                [delivery.id for delivery, *_ in planned], uow.session
            )
            dead_letters: list[tuple[Event[Any], str]] = []
            in_app: list[OutgoingMessage] = []
            for delivery, changes, events, dead_letter in planned:
                found = current.get(delivery.id)
                if (
                    found is None
                    or found.get("claim") != delivery.claim
                    or found.get("status") != DeliveryStatus.PENDING.value
                ):
                    continue
                uow.write(deliveries, finish(delivery, changes), key=delivery.id)
                uow.emit(events)
                if (message := stored.get(delivery.id)) is not None:
                    in_app.append(message)
                if dead_letter is not None:
                    dead_letters.append((events[-1], dead_letter))
            if in_app and self.ctx.inbox is not None:
                uow.writes += 1
                await self.ctx.inbox.store(in_app, uow.session)
            if dead_letters:
                await uow.flush()  # the failures are announced before their dead letters
                for failed, reason in dead_letters:
                    await self._dead_letter(uow.session, failed, reason)

        await self.ctx.units().run(work)
        if known:  # what was released is due now
            self.wake()

    async def _registered_now(self, waiting: Sequence[str]) -> set[str]:
        """Of the customers a delivery found unknown, those registered by now (read
        together): their registration came while the delivery was claimed (its release
        passes over a claimed delivery), so the delivery is due at once rather than at the
        next look."""
        if not waiting:
            return set()
        reader = await self._reader_for_customers(waiting)
        known = set()
        for customer_id in set(waiting):
            customer = await reader.customer(customer_id)
            if customer is not None and customer.registered:
                known.add(customer_id)
        return known

    def _changes(
        self, delivery: Delivery, outcome: Outcome, now: datetime
    ) -> tuple[dict[str, Any], list[Event[Any]], str | None]:
        """What an outcome changes in the delivery, the events announcing it, and the
        reason of its dead letter (a delivery that failed for good)."""
        events: list[Event[Any]] = []
        # (the claim had moved ``due_at`` to its expiry: every outcome says when it is due)
        changes: dict[str, Any] = {"updated_at": now, "due_at": now}
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
            return changes, events, None
        if isinstance(outcome, Skip) and outcome.deferral:
            changes.update(
                due_at=outcome.postpone_until, deferred_because=outcome.reason, last_error=None
            )
            return changes, events, None
        if isinstance(outcome, Skip) and outcome.postpone_until is not None:
            changes.update(due_at=outcome.postpone_until, last_error=outcome.reason)
            return changes, events, None
        if isinstance(outcome, Skip):
            changes.update(status=DeliveryStatus.SUPPRESSED.value, reason=outcome.reason)
            events.append(
                suppressed_event(delivery.model_copy(update={"reason": outcome.reason}), now)
            )
            return changes, events, None
        attempts = delivery.attempts + 1
        if outcome.transient and attempts < self.max_attempts:
            changes.update(
                attempts=attempts, last_error=outcome.reason, due_at=now + self.backoff(attempts)
            )
            return changes, events, None
        reason = (
            outcome.reason
            if not outcome.transient
            else f"gave up after {attempts} attempts: {outcome.reason}"
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
        return changes, events, reason

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
