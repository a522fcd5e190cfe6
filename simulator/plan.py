"""What the simulator will do, decided up front: pure, deterministic for a seed.

The plan never looks at what the services answer. It names customers and complaints by
their number in the run (``ref``); the runner maps those to the ids the services give.
Live actions come one per tick (the runner paces ticks at ``--rate`` per second), so the
same seed yields the same sequence of actions whatever the rate.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from simulator.catalogue import (
    BY_SKU,
    CONTRACT_PRODUCTS,
    TASTE_FREQUENCY,
    TASTES,
    Product,
    price_in,
)
from simulator.people import REGIONS, Person, person


@dataclass(frozen=True)
class PlanSettings:
    seed: int
    customers: int
    history_days: int
    start: datetime  # the run's start; history is placed before it
    run_id: str  # makes purchase ids new on every run, so a rerun adds to the ledger


@dataclass(frozen=True)
class Consent:
    channel: str
    purpose: str
    granted: bool
    source: str


@dataclass(frozen=True)
class ContractPlan:
    product: str
    start_date: date
    renews_at: date
    auto_renew: bool


@dataclass(frozen=True)
class Customer:
    """A simulated customer: who they are and how they shop."""

    ref: int
    person: Person
    consents: tuple[Consent, ...]
    contract: ContractPlan | None
    mean_interval_days: float
    tastes: tuple[tuple[str, float], ...]
    channel: str
    quiet_days: float | None  # went quiet that long before the start (churn signal)
    joined_days_ago: float
    complaint_weight: float
    return_rate: float
    external_id: str

    @property
    def currency(self) -> str:
        return self.person.region.currency

    def profile(self) -> dict[str, Any]:
        """The body of ``POST /api/v1/customers``."""
        who = self.person
        body: dict[str, Any] = {
            "given_name": who.given_name,
            "family_name": who.family_name,
            "emails": [who.email],
            "address": {
                "street": who.street,
                "city": who.city,
                "postal_code": who.postal_code,
                "country": who.region.country,
            },
            "locale": who.region.locale,
            "time_zone": who.region.time_zone,
            "birthday": who.birthday.isoformat(),
            "tags": ["simulated", *sorted(taste for taste, _ in self.tastes)],
            "external_ids": {"loyalty": self.external_id},
        }
        if who.phone:
            body["phones"] = [who.phone]
        return body


@dataclass(frozen=True)
class Line:
    sku: str
    name: str
    category: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


# Actions


@dataclass(frozen=True)
class RegisterCustomer:
    customer: Customer

    @property
    def customer_ref(self) -> int:
        return self.customer.ref


@dataclass(frozen=True)
class Purchase:
    customer_ref: int
    purchase_id: str
    lines: tuple[Line, ...]
    currency: str
    channel: str
    at: datetime | None  # None: now (a live purchase)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class Return:
    customer_ref: int
    return_id: str
    purchase_id: str
    lines: tuple[Line, ...]
    currency: str
    reason: str
    at: datetime | None

    @property
    def refund(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class OpenComplaint:
    complaint_ref: int
    customer_ref: int
    channel: str
    category: str
    subject: str
    description: str
    priority: str
    purchase_id: str | None


class Step(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting_on_customer"
    COMMENT = "comment"
    RESOLVE = "resolve"
    FEEDBACK = "feedback"
    REOPEN = "reopen"
    CLOSE = "close"


@dataclass(frozen=True)
class ComplaintStep:
    complaint_ref: int
    customer_ref: int
    step: Step
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class SetConsent:
    customer_ref: int
    consent: Consent


@dataclass(frozen=True)
class LogInteraction:
    customer_ref: int
    body: dict[str, Any]


Action = (
    RegisterCustomer
    | Purchase
    | Return
    | OpenComplaint
    | ComplaintStep
    | SetConsent
    | LogInteraction
)


# Texts


_COMPLAINTS: tuple[tuple[str, str, str], ...] = (
    ("product", "Item arrived damaged", "The box was crushed and the item inside is broken."),
    ("product", "Does not work as described", "It stopped working after two days of normal use."),
    ("delivery", "Delivery is late", "The order was promised for Tuesday and has not arrived."),
    ("delivery", "Wrong item delivered", "I received a different product than I ordered."),
    ("billing", "Charged twice", "My card statement shows the same purchase twice."),
    ("billing", "Promotion not applied", "The advertised discount was not applied at checkout."),
    ("service", "Unfriendly staff", "The staff in the store were dismissive when I asked."),
    ("service", "Nobody called back", "I was promised a call back three days ago."),
    ("warranty", "Warranty claim refused", "The repair under warranty was refused without reason."),
)
_RETURN_REASONS = ("changed my mind", "wrong size", "defective", "better price elsewhere", "gift")
_FEEDBACK_COMMENTS = {
    1: "Very disappointed, I will shop elsewhere.",
    2: "It took far too long.",
    3: "Solved in the end, but it was slow.",
    4: "Good, thank you.",
    5: "Excellent service, thank you!",
}
_INTERACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("call", "inbound", "hotline", "Asked about the opening hours over the holidays."),
    ("call", "outbound", "hotline", "Called to confirm the delivery address."),
    ("chat", "inbound", "web-chat", "Asked whether the product is in stock."),
    ("email", "inbound", "support-mail", "Asked for a copy of the invoice."),
    ("visit", "inbound", "store:zagreb-1", "Came to the store to try the headphones."),
    ("visit", "inbound", "store:praha-2", "Picked up an order in the store."),
)


class Plan:
    """The run's customers, their history and the endless sequence of live actions."""

    def __init__(self, settings: PlanSettings) -> None:
        self.settings = settings

    def _rng(self, *parts: object) -> random.Random:
        # A string seed is hashed with SHA-512: the same on every run and machine.
        key = ":".join(str(part) for part in (self.settings.seed, *parts))
        return random.Random(key)  # noqa: S311 - simulation, not security

    # Customers

    def customer(self, ref: int) -> Customer:
        """Customer ``ref`` of this seed; the same whenever it is asked for."""
        rng = self._rng("customer", ref)
        # The first customers visit every region once, so a small run still shows them all.
        if ref < len(REGIONS):
            region = REGIONS[ref]
        else:
            region = rng.choices(REGIONS, weights=[r.weight for r in REGIONS])[0]
        who = person(ref, region, rng)
        consents = [Consent("email", "transactional", rng.random() < 0.92, "signup form")]
        consents.append(Consent("email", "marketing", rng.random() < 0.45, "signup form"))
        if who.phone:
            consents.append(Consent("sms", "marketing", rng.random() < 0.2, "signup form"))
        contract = None
        today = self.settings.start.date()
        if rng.random() < 0.25:
            started = today - timedelta(days=rng.randint(60, 700))
            contract = ContractPlan(
                product=rng.choice(CONTRACT_PRODUCTS),
                start_date=started,
                renews_at=today + timedelta(days=rng.randint(1, 60)),
                auto_renew=rng.random() < 0.6,
            )
        mean = min(45.0, max(1.5, math.exp(rng.gauss(math.log(7), 0.7))))
        kinds = [taste for taste in TASTES if taste != "gadgets"]
        chosen = rng.sample(kinds, rng.randint(2, 3))
        if rng.random() < 0.25:
            chosen.append("gadgets")
        tastes = tuple((taste, round(rng.uniform(0.5, 1.5), 3)) for taste in chosen)
        history = self.settings.history_days
        quiet = None
        if rng.random() < 0.15:
            quiet = mean * rng.uniform(2.5, 5)
        if rng.random() < 0.1:
            joined = rng.uniform(0, min(3, history)) if history else 0.0
        else:
            joined = rng.uniform(0.3, 1.0) * history
        if quiet is not None and history:
            # A customer known for a while who then stopped: the break shows in the history.
            quiet = min(quiet, 0.6 * history)
            mean = min(mean, quiet / 2.5)
            joined = float(history)
        return Customer(
            ref=ref,
            person=who,
            consents=tuple(consents),
            contract=contract,
            mean_interval_days=round(mean, 3),
            tastes=tastes,
            channel=rng.choices(("web", "store", "app"), weights=(45, 40, 15))[0],
            quiet_days=None if quiet is None else round(quiet, 3),
            joined_days_ago=round(joined, 3),
            complaint_weight=round(math.exp(rng.gauss(0, 0.6)), 3),
            return_rate=round(rng.uniform(0, 0.15), 3),
            external_id=f"SIM{self.settings.seed}-{ref:06d}",
        )

    def setup(self) -> list[RegisterCustomer]:
        return [RegisterCustomer(self.customer(ref)) for ref in range(self.settings.customers)]

    # Baskets

    def basket(self, customer: Customer, rng: random.Random) -> tuple[Line, ...]:
        """A basket in the customer's taste: an anchor product and what goes with it."""
        tastes = [taste for taste, _ in customer.tastes]
        weights = [weight * TASTE_FREQUENCY[taste] for taste, weight in customer.tastes]
        picked: dict[str, int] = {}
        for round_ in range(2):
            if round_ and rng.random() > 0.4:
                break
            anchor = BY_SKU[rng.choice(TASTES[rng.choices(tastes, weights=weights)[0]])]
            picked.setdefault(anchor.sku, rng.randint(1, anchor.max_quantity))
            for sku, chance in anchor.companions:
                if rng.random() < chance:
                    picked.setdefault(sku, rng.randint(1, BY_SKU[sku].max_quantity))
        return tuple(
            _line(BY_SKU[sku], quantity, customer.currency) for sku, quantity in picked.items()
        )

    # History

    def history(self, refs: Iterable[int]) -> list[Purchase | Return]:
        """Purchases and returns of customers ``refs`` before the start, oldest first.

        Each customer's history depends only on the seed and the customer, so it can be
        given for the customers that are new to the stack and left out for the others.
        """
        days = self.settings.history_days
        start = self.settings.start
        events: list[Purchase | Return] = []
        if days <= 0:
            return events
        for ref in refs:
            customer = self.customer(ref)
            rng = self._rng("history", ref)
            stop = start - timedelta(days=customer.quiet_days or 0)
            when = start - timedelta(days=customer.joined_days_ago)
            number = 0
            # The first purchase comes somewhere within a rhythm of joining, then at rhythm.
            gap = customer.mean_interval_days * rng.random()
            while True:
                when += timedelta(days=gap)
                gap = customer.mean_interval_days * rng.lognormvariate(0, 0.35)
                if when >= stop:
                    break
                # Shops are open in the daytime: move the purchase to 08:00-20:00 UTC.
                when = when.replace(hour=rng.randint(8, 19), minute=rng.randint(0, 59))
                if when >= stop:
                    break
                number += 1
                purchase = Purchase(
                    customer_ref=ref,
                    purchase_id=f"{self.settings.run_id}-h{ref}-{number}",
                    lines=self.basket(customer, rng),
                    currency=customer.currency,
                    channel=customer.channel,
                    at=when,
                )
                events.append(purchase)
                if rng.random() < customer.return_rate:
                    returned_at = when + timedelta(days=rng.uniform(1, 10))
                    if returned_at < start:
                        events.append(
                            _return_of(
                                purchase,
                                f"{self.settings.run_id}-hr{ref}-{number}",
                                rng,
                                returned_at,
                            )
                        )
        events.sort(key=lambda event: (event.at or start, event.customer_ref))
        return events

    # Live

    def live(self) -> Iterator[Action]:
        """One action per tick, for ever (the runner stops taking them)."""
        return _Live(self).actions()


def _line(product: Product, quantity: int, currency: str) -> Line:
    return Line(
        sku=product.sku,
        name=product.name,
        category=product.category,
        quantity=quantity,
        unit_price=price_in(product, currency),
    )


def _return_of(
    purchase: Purchase, return_id: str, rng: random.Random, at: datetime | None
) -> Return:
    line = rng.choice(purchase.lines)
    quantity = rng.randint(1, line.quantity)
    returned = Line(line.sku, line.name, line.category, quantity, line.unit_price)
    return Return(
        customer_ref=purchase.customer_ref,
        return_id=return_id,
        purchase_id=purchase.purchase_id,
        lines=(returned,),
        currency=purchase.currency,
        reason=rng.choice(_RETURN_REASONS),
        at=at,
    )


@dataclass
class _Live:
    """The state the live sequence keeps: who buys, what may be returned or complained of."""

    plan: Plan
    tick: int = 0
    next_ref: int = 0
    next_purchase: int = 0
    next_complaint: int = 0
    customers: list[Customer] = field(default_factory=list)
    quiet: set[int] = field(default_factory=set)
    open_purchases: dict[int, list[tuple[int, Purchase]]] = field(default_factory=dict)
    steps: list[tuple[int, int, ComplaintStep]] = field(default_factory=list)
    sequence: int = 0
    rng: random.Random = field(init=False)

    def actions(self) -> Iterator[Action]:
        settings = self.plan.settings
        self.rng = self.plan._rng("live")
        self.customers = [self.plan.customer(ref) for ref in range(settings.customers)]
        self.next_ref = settings.customers
        self.quiet = {c.ref for c in self.customers if c.quiet_days is not None}
        while True:
            self.tick += 1
            if self.steps and self.steps[0][0] <= self.tick:
                yield heapq.heappop(self.steps)[2]
                continue
            yield self._next()

    def _next(self) -> Action:
        rng = self.rng
        kind = rng.choices(
            ("purchase", "return", "complaint", "customer", "consent", "interaction"),
            weights=(70, 5, 7, 3, 3, 4),
        )[0]
        if kind == "return" and (action := self._return()) is not None:
            return action
        if kind == "complaint" and (complaint := self._complaint()) is not None:
            return complaint
        if kind == "customer":
            customer = self.plan.customer(self.next_ref)
            self.next_ref += 1
            self.customers.append(customer)
            return RegisterCustomer(customer)
        if kind == "consent":
            customer = rng.choice(self.customers)
            channel = "sms" if customer.person.phone and rng.random() < 0.3 else "email"
            granted = rng.random() < 0.5
            source = rng.choice(("preference centre", "unsubscribe link", "call centre"))
            return SetConsent(customer.ref, Consent(channel, "marketing", granted, source))
        if kind == "interaction":
            customer = rng.choice(self.customers)
            interaction_kind, direction, channel, summary = rng.choice(_INTERACTIONS)
            body = {
                "kind": interaction_kind,
                "direction": direction,
                "channel": channel,
                "summary": summary,
                "agent_id": rng.choice(("ana", "marko", "petra", "jan", "sara")),
            }
            return LogInteraction(customer.ref, body)
        return self._purchase()

    def _purchase(self) -> Purchase:
        rng = self.rng
        buyers = [c for c in self.customers if c.ref not in self.quiet] or self.customers
        customer = rng.choices(buyers, weights=[1 / c.mean_interval_days for c in buyers])[0]
        self.next_purchase += 1
        purchase = Purchase(
            customer_ref=customer.ref,
            purchase_id=f"{self.plan.settings.run_id}-p{self.next_purchase}",
            lines=self.plan.basket(customer, rng),
            currency=customer.currency,
            channel=customer.channel,
            at=None,
        )
        self.open_purchases.setdefault(customer.ref, []).append((self.tick, purchase))
        return purchase

    def _take_purchase(self, customer_ref: int, min_age: int) -> Purchase | None:
        """A purchase old enough to have reached the ledger, never returned or disputed."""
        candidates = [
            (i, purchase)
            for i, (tick, purchase) in enumerate(self.open_purchases.get(customer_ref, []))
            if self.tick - tick >= min_age
        ]
        if not candidates:
            return None
        index, purchase = self.rng.choice(candidates)
        del self.open_purchases[customer_ref][index]
        return purchase

    def _return(self) -> Return | None:
        owners = [ref for ref, bought in self.open_purchases.items() if bought]
        if not owners:
            return None
        purchase = self._take_purchase(self.rng.choice(owners), min_age=5)
        if purchase is None:
            return None
        return_id = f"{self.plan.settings.run_id}-r{purchase.purchase_id.rsplit('-p', 1)[-1]}"
        return _return_of(purchase, return_id, self.rng, None)

    def _complaint(self) -> OpenComplaint | None:
        rng = self.rng
        customer = rng.choices(
            self.customers, weights=[c.complaint_weight for c in self.customers]
        )[0]
        purchase = self._take_purchase(customer.ref, min_age=10) if rng.random() < 0.75 else None
        category, subject, description = rng.choice(_COMPLAINTS)
        self.next_complaint += 1
        complaint = OpenComplaint(
            complaint_ref=self.next_complaint,
            customer_ref=customer.ref,
            channel=rng.choice(("phone", "email", "web", "store", "social")),
            category=category,
            subject=subject,
            description=description,
            priority=rng.choices(("low", "normal", "high", "urgent"), weights=(15, 60, 20, 5))[0],
            purchase_id=purchase.purchase_id if purchase else None,
        )
        # One in a few unhappy customers stops buying after complaining.
        if rng.random() < 0.3:
            self.quiet.add(customer.ref)
        self._schedule(complaint, purchase)
        return complaint

    def _schedule(self, complaint: OpenComplaint, purchase: Purchase | None) -> None:
        """The complaint's life, as steps due some ticks from now."""
        rng = self.rng
        script: list[tuple[Step, dict[str, Any] | None]] = []
        fate = rng.choices(("ignored", "stalled", "waiting", "resolved"), weights=(8, 8, 8, 76))[0]
        if fate == "ignored":
            return
        script.append((Step.ACKNOWLEDGE, None))
        script.append((Step.IN_PROGRESS, None))
        if fate == "waiting" or (fate == "resolved" and rng.random() < 0.25):
            comment = "Could you send us a photo of the receipt, please?"
            waiting = {"status": "waiting_on_customer", "public_comment": comment}
            script.append((Step.WAITING, waiting))
            if fate == "resolved":
                script.append((Step.IN_PROGRESS, None))
        if fate == "resolved":
            if rng.random() < 0.3:
                note = {"text": "Checked with the warehouse.", "visibility": "internal"}
                script.append((Step.COMMENT, note))
            reopened = rng.random() < 0.12
            resolution = _resolution(rng, purchase, refund=not reopened)
            script.append((Step.RESOLVE, resolution))
            satisfied = resolution["resolution_type"] in ("refund", "return", "replacement")
            if rng.random() < 0.7:
                script.append((Step.FEEDBACK, _feedback(rng, 1 if reopened else None, satisfied)))
            if reopened:
                script.append((Step.REOPEN, {"reason": "The problem is back."}))
                script.append((Step.IN_PROGRESS, None))
                script.append((Step.RESOLVE, _resolution(rng, purchase, refund=True)))
                if rng.random() < 0.6:
                    script.append((Step.FEEDBACK, _feedback(rng, None, True)))
            if rng.random() < 0.25:
                script.append((Step.CLOSE, None))
        due = self.tick
        for step, body in script:
            due += rng.randint(4, 50)
            self.sequence += 1
            action = ComplaintStep(complaint.complaint_ref, complaint.customer_ref, step, body)
            heapq.heappush(self.steps, (due, self.sequence, action))


def _resolution(rng: random.Random, purchase: Purchase | None, *, refund: bool) -> dict[str, Any]:
    if purchase is not None and refund and rng.random() < 0.55:
        kind = rng.choice(("refund", "refund", "return"))
        share = rng.choice((Decimal(1), Decimal("0.5"), Decimal("0.2")))
        amount = (purchase.total * share).quantize(Decimal("0.01"))
        return {
            "resolution_type": kind,
            "summary": "Refunded the purchase" if share == 1 else "Partial refund as a gesture",
            "refund_amount": format(amount, "f"),
            "currency": purchase.currency,
            "purchase_id": purchase.purchase_id,
        }
    kind = rng.choice(("explanation", "replacement", "repair", "goodwill_credit"))
    summaries = {
        "explanation": "Explained the terms and what happened.",
        "replacement": "Sent a replacement.",
        "repair": "Repaired under warranty.",
        "goodwill_credit": "Added a goodwill voucher to the account.",
    }
    return {"resolution_type": kind, "summary": summaries[kind]}


def _feedback(rng: random.Random, csat: int | None, satisfied: bool) -> dict[str, Any]:
    if csat is None:
        weights = (2, 3, 10, 35, 50) if satisfied else (12, 18, 30, 25, 15)
        csat = rng.choices((1, 2, 3, 4, 5), weights=weights)[0]
    body: dict[str, Any] = {"csat": csat}
    if rng.random() < 0.8:
        low, high = {1: (0, 3), 2: (2, 5), 3: (5, 7), 4: (7, 9), 5: (9, 10)}[csat]
        body["nps"] = rng.randint(low, high)
    if rng.random() < 0.4:
        body["comment"] = _FEEDBACK_COMMENTS[csat]
    return body
