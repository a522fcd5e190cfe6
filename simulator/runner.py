"""Carries out a plan against a running Rapport, through its public interfaces only.

Profiles, consents, contracts, interactions and complaints go through the HTTP APIs with
a bearer token; purchases and returns are what shops and tills send, so they are published
as CloudEvents on ``crm.purchases`` with any Kafka client (or posted to the profiles API
with ``purchases_via="http"``). Every failed call is counted and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import httpx

from shared.events import new_event
from shared.events.envelope import KafkaRecord, encode
from shared.events.purchases import PurchaseCompleted, PurchaseItem, PurchaseReturned, ReturnedItem
from shared.kafka import AiokafkaPublisher
from shared.topics import PURCHASES, TopicNames
from simulator.plan import (
    Action,
    ComplaintStep,
    Customer,
    LogInteraction,
    OpenComplaint,
    Plan,
    PlanSettings,
    Purchase,
    RegisterCustomer,
    Return,
    SetConsent,
    Step,
)

PurchasesVia = Literal["kafka", "http"]
_HISTORY_BATCH = 200
_MAX_IN_FLIGHT = 64
_DRAIN_SECONDS = 15.0


@dataclass(frozen=True)
class SimulatorConfig:
    profiles_url: str = "http://127.0.0.1:8001"
    complaints_url: str = "http://127.0.0.1:8002"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    token: str = ""
    rate: float = 5.0  # live actions per second
    duration: float | None = 300.0  # seconds of live traffic; None: until stopped
    customers: int = 200
    seed: int = 42
    history_days: int = 30
    purchases_via: PurchasesVia = "kafka"
    concurrency: int = 8
    run_id: str = ""  # empty: derived from the clock, so reruns add new purchases

    def plan_settings(self, start: datetime) -> PlanSettings:
        run_id = self.run_id or f"sim{self.seed}-{int(start.timestamp()):x}"
        return PlanSettings(
            seed=self.seed,
            customers=self.customers,
            history_days=self.history_days,
            start=start,
            run_id=run_id,
        )


@dataclass
class Stats:
    """What the run did so far; the progress display and the summary read it."""

    planned_customers: int = 0
    duration: float | None = None
    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    live_started: float | None = None
    finished: float | None = None
    customers_created: int = 0
    customers_reused: int = 0
    consents: int = 0
    contracts: int = 0
    interactions: int = 0
    purchases: int = 0
    history_purchases: int = 0
    returns: int = 0
    history_returns: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)
    complaints_opened: int = 0
    complaint_states: dict[int, str] = field(default_factory=dict)
    feedback: int = 0
    refunds: int = 0
    reopened: int = 0
    actions: int = 0
    skipped: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None

    @property
    def customers(self) -> int:
        return self.customers_created + self.customers_reused

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def by_state(self) -> Counter[str]:
        return Counter(self.complaint_states.values())

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def live_elapsed(self) -> float:
        if self.live_started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.live_started

    def remaining(self) -> float | None:
        if self.duration is None:
            return None
        return max(0.0, self.duration - self.live_elapsed())

    def error(self, key: str, message: str) -> None:
        self.errors[key] += 1
        self.error_examples.setdefault(key, message[:300])
        self.last_error = f"{key}: {message}"[:300]


class SimulatorError(RuntimeError):
    """The run cannot start: a service is unreachable or refuses the token."""


class _Failed(Exception):
    """A call failed; it is already counted."""


class Simulator:
    """Runs one simulation: customers, history, then live traffic until told to stop."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.stats = Stats(planned_customers=config.customers, duration=config.duration)
        self._stopping = asyncio.Event()
        self._stop_requested = threading.Event()  # also before the run's loop exists
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = clock
        self._customer_ids: dict[int, str] = {}
        self._created: set[int] = set()
        self._complaint_ids: dict[int, str] = {}
        self._broken_complaints: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._purchases_topic = TopicNames(config.topic_prefix)(PURCHASES)
        self._publisher: AiokafkaPublisher | None = None
        self._profiles: httpx.AsyncClient | None = None
        self._complaints: httpx.AsyncClient | None = None

    # Running

    def request_stop(self) -> None:
        """Stop after the calls in flight; safe from a signal handler or another thread."""
        self._stop_requested.set()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stopping.set()
        else:
            loop.call_soon_threadsafe(self._stopping.set)

    def _should_stop(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> Stats:
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():
            self._stopping.set()
        config = self.config
        headers = {"Authorization": f"Bearer {config.token}"}
        timeout = httpx.Timeout(30.0)
        plan = Plan(config.plan_settings(self._clock()))
        async with contextlib.AsyncExitStack() as stack:
            self._profiles = await stack.enter_async_context(
                httpx.AsyncClient(base_url=config.profiles_url, headers=headers, timeout=timeout)
            )
            self._complaints = await stack.enter_async_context(
                httpx.AsyncClient(base_url=config.complaints_url, headers=headers, timeout=timeout)
            )
            self.stats.phase = "checking the services and the token"
            for name, client in (("profiles", self._profiles), ("complaints", self._complaints)):
                await _check_access(name, client)
            if config.purchases_via == "kafka":
                self.stats.phase = "connecting to Kafka"
                publisher = AiokafkaPublisher(
                    [s.strip() for s in config.kafka_bootstrap.split(",") if s.strip()],
                    client_id="rapport-simulator",
                )
                await publisher.start()
                self._publisher = publisher
                stack.push_async_callback(publisher.stop)
            try:
                await self._setup(plan)
                if not self._should_stop():
                    await self._history(plan)
                if not self._should_stop():
                    await self._live(plan)
            finally:
                self.stats.finished = time.monotonic()
                self.stats.phase = "stopped" if self._should_stop() else "finished"
        return self.stats

    async def _setup(self, plan: Plan) -> None:
        self.stats.phase = "registering customers"
        semaphore = asyncio.Semaphore(self.config.concurrency)

        async def register(action: RegisterCustomer) -> None:
            async with semaphore:
                if not self._should_stop():
                    await self._guarded(action)

        await asyncio.gather(*(register(action) for action in plan.setup()))

    async def _history(self, plan: Plan) -> None:
        days = self.config.history_days
        if days <= 0:
            return
        self.stats.phase = f"publishing {days} days of history"
        # Only customers new to the stack get a past: a rerun does not double it.
        new = sorted(self._created)
        events = [e for e in plan.history(new) if e.customer_ref in self._customer_ids]
        if self._publisher is None:
            semaphore = asyncio.Semaphore(self.config.concurrency)

            async def post(event: Purchase | Return) -> None:
                # Tasks take the semaphore, then their customer's lock, in the order made:
                # a customer's purchase is posted before its return.
                async with semaphore:
                    if not self._should_stop():
                        await self._guarded(event)

            await asyncio.gather(*(post(event) for event in events))
            return
        for start in range(0, len(events), _HISTORY_BATCH):
            if self._should_stop():
                return
            batch = events[start : start + _HISTORY_BATCH]
            records = [(self._purchases_topic, self._record(event)) for event in batch]
            try:
                await self._publisher.publish(records)
            except Exception as error:  # the broker's errors are many; count, go on
                self.stats.error(f"kafka {self._purchases_topic}", repr(error))
                continue
            for event in batch:
                self._count_sale(event, history=True)

    async def _live(self, plan: Plan) -> None:
        config = self.config
        self.stats.phase = "live traffic"
        self.stats.live_started = time.monotonic()
        interval = 1.0 / config.rate
        in_flight: set[asyncio.Task[None]] = set()
        semaphore = asyncio.Semaphore(config.concurrency)

        async def perform(action: Action) -> None:
            async with semaphore:
                await self._guarded(action)

        for tick, action in enumerate(plan.live()):
            due = self.stats.live_started + tick * interval
            if config.duration is not None and due - self.stats.live_started >= config.duration:
                break
            wait = due - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=wait)
            if self._should_stop():
                break
            while len(in_flight) >= _MAX_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(perform(action))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        self.stats.phase = "finishing calls in flight"
        if in_flight:
            await asyncio.wait(in_flight, timeout=_DRAIN_SECONDS)

    # Actions

    async def _guarded(self, action: Action) -> None:
        """Do ``action`` in order with the other actions on its customer; never raise."""
        ref = action.customer_ref
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            self.stats.actions += 1
            if not isinstance(action, RegisterCustomer) and ref not in self._customer_ids:
                self.stats.skipped += 1
                return
            try:
                await self._perform(action)
            except _Failed:
                if isinstance(action, OpenComplaint | ComplaintStep):
                    self._broken_complaints.add(action.complaint_ref)
            except Exception as error:  # a bug here must not end the run either
                self.stats.error(type(action).__name__, repr(error))

    async def _perform(self, action: Action) -> None:
        if isinstance(action, RegisterCustomer):
            await self._register(action.customer)
        elif isinstance(action, Purchase | Return):
            await self._sell(action)
        elif isinstance(action, OpenComplaint):
            await self._open_complaint(action)
        elif isinstance(action, ComplaintStep):
            await self._complaint_step(action)
        elif isinstance(action, SetConsent):
            consent = action.consent
            await self._set_consent(
                self._customer_ids[action.customer_ref],
                consent.channel,
                consent.purpose,
                consent.granted,
                consent.source,
            )
        elif isinstance(action, LogInteraction):
            customer_id = self._customer_ids[action.customer_ref]
            await self._call(
                self._profiles_client,
                "POST",
                f"/api/v1/customers/{customer_id}/interactions",
                "/customers/{id}/interactions",
                action.body,
            )
            self.stats.interactions += 1

    async def _register(self, customer: Customer) -> None:
        profiles = self._profiles_client
        response = await self._call(
            profiles, "POST", "/api/v1/customers", "/customers", customer.profile(), accept=(409,)
        )
        if response.status_code == 409:
            # Known from an earlier run with this seed: carry on with that profile.
            found = await self._call(
                profiles,
                "GET",
                "/api/v1/customers",
                "/customers?email=",
                params={"email": customer.person.email},
            )
            items = found.json().get("items") or []
            if not items:
                self.stats.error("POST /customers 409", response.text[:200])
                raise _Failed
            self._customer_ids[customer.ref] = str(items[0]["id"])
            self.stats.customers_reused += 1
            return
        customer_id = str(response.json()["id"])
        self._customer_ids[customer.ref] = customer_id
        self._created.add(customer.ref)
        self.stats.customers_created += 1
        for consent in customer.consents:
            await self._set_consent(
                customer_id, consent.channel, consent.purpose, consent.granted, consent.source
            )
        if customer.contract is not None:
            contract = customer.contract
            await self._call(
                profiles,
                "POST",
                f"/api/v1/customers/{customer_id}/contracts",
                "/customers/{id}/contracts",
                {
                    "product": contract.product,
                    "start_date": contract.start_date.isoformat(),
                    "renews_at": contract.renews_at.isoformat(),
                    "auto_renew": contract.auto_renew,
                },
            )
            self.stats.contracts += 1

    async def _set_consent(
        self, customer_id: str, channel: str, purpose: str, granted: bool, source: str
    ) -> None:
        await self._call(
            self._profiles_client,
            "PUT",
            f"/api/v1/customers/{customer_id}/consents/{channel}/{purpose}",
            "/customers/{id}/consents/{channel}/{purpose}",
            {"granted": granted, "source": source},
        )
        self.stats.consents += 1

    async def _sell(self, sale: Purchase | Return) -> None:
        if self._publisher is not None:
            try:
                await self._publisher.publish([(self._purchases_topic, self._record(sale))])
            except Exception as error:  # the broker's errors are many; count, go on
                self.stats.error(f"kafka {self._purchases_topic}", repr(error))
                raise _Failed from None
        else:
            payload = self._payload(sale)
            path = "/purchases" if isinstance(sale, Purchase) else "/returns"
            body = payload.model_dump(mode="json")
            await self._call(self._profiles_client, "POST", f"/api/v1{path}", path, body)
        self._count_sale(sale, history=sale.at is not None)

    def _count_sale(self, sale: Purchase | Return, *, history: bool) -> None:
        stats = self.stats
        if isinstance(sale, Purchase):
            stats.revenue[sale.currency] = stats.revenue.get(sale.currency, Decimal(0)) + sale.total
            if history:
                stats.history_purchases += 1
            else:
                stats.purchases += 1
        elif history:
            stats.history_returns += 1
        else:
            stats.returns += 1

    def _payload(self, sale: Purchase | Return) -> PurchaseCompleted | PurchaseReturned:
        customer_id = self._customer_ids[sale.customer_ref]
        when = sale.at or self._clock()
        if isinstance(sale, Purchase):
            return PurchaseCompleted(
                purchase_id=sale.purchase_id,
                customer_id=customer_id,
                items=[
                    PurchaseItem(
                        sku=line.sku,
                        name=line.name,
                        category=line.category,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                    )
                    for line in sale.lines
                ],
                total_amount=sale.total,
                currency=sale.currency,
                channel=sale.channel,
                purchased_at=when,
            )
        return PurchaseReturned(
            return_id=sale.return_id,
            purchase_id=sale.purchase_id,
            customer_id=customer_id,
            items=[
                ReturnedItem(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price)
                for line in sale.lines
            ],
            refund_amount=sale.refund,
            currency=sale.currency,
            reason=sale.reason,
            returned_at=when,
        )

    def _record(self, sale: Purchase | Return) -> KafkaRecord:
        payload = self._payload(sale)
        channel = sale.channel if isinstance(sale, Purchase) else "returns-desk"
        when = sale.at or self._clock()
        return encode(new_event(payload, source=f"urn:rapport-simulator:{channel}", time=when))

    async def _open_complaint(self, action: OpenComplaint) -> None:
        body: dict[str, Any] = {
            "customer_id": self._customer_ids[action.customer_ref],
            "channel": action.channel,
            "category": action.category,
            "subject": action.subject,
            "description": action.description,
            "priority": action.priority,
        }
        if action.purchase_id is not None:
            body["related_purchase_id"] = action.purchase_id
        response = await self._call(
            self._complaints_client, "POST", "/api/v1/complaints", "/complaints", body
        )
        complaint = response.json()
        self._complaint_ids[action.complaint_ref] = str(complaint["id"])
        self.stats.complaints_opened += 1
        self.stats.complaint_states[action.complaint_ref] = str(complaint["status"])

    async def _complaint_step(self, action: ComplaintStep) -> None:
        complaint_id = self._complaint_ids.get(action.complaint_ref)
        if complaint_id is None or action.complaint_ref in self._broken_complaints:
            self.stats.skipped += 1
            return
        step = action.step
        route = {
            Step.ACKNOWLEDGE: "acknowledge",
            Step.IN_PROGRESS: "status",
            Step.WAITING: "status",
            Step.COMMENT: "comments",
            Step.RESOLVE: "resolve",
            Step.FEEDBACK: "feedback",
            Step.REOPEN: "reopen",
            Step.CLOSE: "close",
        }[step]
        body = action.body
        if step is Step.IN_PROGRESS:
            body = {"status": "in_progress"}
        response = await self._call(
            self._complaints_client,
            "POST",
            f"/api/v1/complaints/{complaint_id}/{route}",
            f"/complaints/{{id}}/{route}",
            body,
        )
        self.stats.complaint_states[action.complaint_ref] = str(response.json()["status"])
        if step is Step.FEEDBACK:
            self.stats.feedback += 1
        elif step is Step.REOPEN:
            self.stats.reopened += 1
        elif step is Step.RESOLVE and body and body.get("refund_amount"):
            self.stats.refunds += 1

    # HTTP

    @property
    def _profiles_client(self) -> httpx.AsyncClient:
        assert self._profiles is not None
        return self._profiles

    @property
    def _complaints_client(self) -> httpx.AsyncClient:
        assert self._complaints is not None
        return self._complaints

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        label: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        accept: Sequence[int] = (),
    ) -> httpx.Response:
        """One API call; a 4xx/5xx or a network error is counted and raises ``_Failed``."""
        service = "profiles" if client is self._profiles else "complaints"
        try:
            response = await client.request(method, path, json=body, params=params)
        except httpx.HTTPError as error:
            self.stats.error(f"{service} {method} {label}", repr(error))
            raise _Failed from None
        if response.status_code >= 400 and response.status_code not in accept:
            detail = response.text[:200]
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(response.json().get("detail") or detail)
            self.stats.error(f"{service} {method} {label} {response.status_code}", detail)
            raise _Failed
        return response


async def _check_access(name: str, client: httpx.AsyncClient) -> None:
    try:
        response = await client.get("/api/v1/me")
    except httpx.HTTPError as error:
        raise SimulatorError(f"{name} at {client.base_url} is not reachable: {error!r}") from None
    if response.status_code in (401, 403):
        raise SimulatorError(
            f"{name} refuses the token ({response.status_code}): use the admin token"
        )
    if response.status_code != 200:
        raise SimulatorError(f"{name} answered {response.status_code} to /api/v1/me")
    roles = set(response.json().get("roles") or [])
    if not roles & {"admin", "agent"}:
        raise SimulatorError(f"the token has roles {sorted(roles)}; an admin or agent is needed")


def revenue_text(revenue: dict[str, Decimal]) -> str:
    parts = [f"{amount:,.2f} {currency}" for currency, amount in sorted(revenue.items())]
    return ", ".join(parts) or "-"
