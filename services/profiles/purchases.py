"""Purchases and returns: record them in the customer's ledger and keep the figures.

Two entrypoints share these use cases. Systems that speak HTTP post purchases and returns
(``submit_purchase``/``submit_return``); they are stored and announced through the outbox,
so notifications and analytics hear of them. Systems that publish on ``crm.purchases`` are
consumed by the worker (``routes``); their events are stored but never re-published.
Either way the ledger entry, the figures, the timeline entry and (for a customer met for the
first time) the new profile are written in one unit of work, and the purchase or return id
makes a repetition a no-op.

Both entrypoints first *load* what they touch (``load_purchases``, ``load_returns``): the
ledger entries, the profiles named (and those they were merged into), the owners of the
e-mails and external ids, and the figures, with one query per collection for a whole
batch of events. The use cases then read and change those documents in the unit of work,
so a purchase sees what earlier ones of its batch did: two purchases of one customer
both count, a purchase id met twice is recorded once, and a second purchase by a new
e-mail finds the profile the first one created.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from pydantic import ValidationError
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.profiles.domain import ProfileFields, normalise_email, register
from services.profiles.handlers import live_customer, registered_event
from services.profiles.ledger import (
    Addon,
    EntryKind,
    Figures,
    LedgerEntry,
    LineItem,
    Origin,
    PurchaseEntry,
    ReturnEntry,
    ReturnLine,
    complaint_return_id,
    describe,
    format_money,
    priced_from_catalogue,
    purchase_entry_id,
)
from services.profiles.ledger_store import LedgerStore
from services.profiles.store import DUPLICATE_KEY, CustomerStore
from services.profiles.timeline_domain import EntryKind as TimelineKind
from services.profiles.timeline_domain import Happening
from services.profiles.timeline_store import TimelineStore
from shared.auth import ensure_customer_access
from shared.clock import to_millisecond, utc_now
from shared.consumer import RejectEvent
from shared.errors import Conflict, InvalidInput, NotFound, RapportError
from shared.events import Event, new_event
from shared.events.complaints import ComplaintResolved, ResolutionType
from shared.events.purchases import PurchaseCompleted, PurchaseItem, PurchaseReturned
from shared.identity import End, follow
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork, UnitsOfWork

log = logging.getLogger(__name__)

SOURCE = "/rapport/profiles"
PORTAL_CHANNEL = "portal"
HTTP_ATTEMPTS = 3
REFUNDING_RESOLUTIONS = frozenset({ResolutionType.REFUND, ResolutionType.RETURN})
T = TypeVar("T")


@dataclass
class Ledger:
    """What the purchase use cases need: units of work, the stores and the clock."""

    units: UnitsOfWork
    customers: CustomerStore
    store: LedgerStore
    timeline: TimelineStore
    clock: Callable[[], datetime] = utc_now
    addons: tuple[Addon, ...] = ()  # what customers may order themselves (the portal)

    async def commit(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run ``work`` in a unit of work; run it again when a concurrent write got there first.

        A concurrent change of the same documents (the figures, a purchase) makes the
        transaction conflict, and it runs again (the driver does that). A second run after
        a duplicate key sees what the first one raced with: the purchase stored by a
        parallel request, the profile created for the same e-mail.
        """
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            try:
                return await self.units.run(work)
            except (DuplicateKeyError, BulkWriteError) as error:
                if not _duplicate_key(error):
                    raise
                if attempt == HTTP_ATTEMPTS:
                    raise Conflict("the ledger changed concurrently; try again") from None
        raise AssertionError("HTTP_ATTEMPTS must be at least 1")


def _duplicate_key(error: DuplicateKeyError | BulkWriteError) -> bool:
    if isinstance(error, DuplicateKeyError):
        return True
    return any(failed["code"] == DUPLICATE_KEY for failed in error.details["writeErrors"])


# What a batch touches, loaded with one query per collection


async def _load(
    ledger: Ledger,
    uow: UnitOfWork,
    *,
    entry_ids: Iterable[str],
    customer_ids: Iterable[str],
    identity_keys: Iterable[str] = (),
) -> None:
    """Read into ``uow`` the ledger entries, the owners of identity keys, the profiles named
    (by the events and by the entries found, with those they were merged into) and the
    figures of the live ones: one query per collection, one more per merge step."""
    entries = await ledger.store.load(uow, entry_ids)
    owners = await ledger.customers.load_owners(uow, identity_keys)
    named = [*customer_ids, *(entry.customer_id for entry in entries), *owners]
    live = await ledger.customers.load(uow, named)
    await ledger.store.load_figures(uow, live)


async def load_purchases(
    ledger: Ledger, purchases: Sequence[PurchaseCompleted], uow: UnitOfWork
) -> None:
    """What recording these purchases reads."""
    await _load(
        ledger,
        uow,
        entry_ids=[purchase_entry_id(purchase.purchase_id) for purchase in purchases],
        customer_ids=[purchase.customer_id for purchase in purchases if purchase.customer_id],
        identity_keys=[key for purchase in purchases for key in _keys_to_load(purchase)],
    )


async def load_returns(ledger: Ledger, returns: Sequence[ReturnEntry], uow: UnitOfWork) -> None:
    """What recording these returns or refunds reads."""
    await _load(
        ledger,
        uow,
        entry_ids=[
            entry_id
            for draft in returns
            for entry_id in (draft.entry_id, purchase_entry_id(draft.purchase_id))
        ],
        customer_ids=[draft.customer_id for draft in returns],
    )


# Customers


async def live_customer_id(ledger: Ledger, customer_id: str, uow: UnitOfWork) -> str:
    """The live profile ``customer_id`` stands for: itself, or the survivor of its merge."""
    reached = await follow(customer_id, lambda key: ledger.customers.link(uow, key))
    match reached.end:
        case End.UNKNOWN:
            raise NotFound(f"no customer {customer_id}")
        case End.ERASED:
            raise NotFound(f"customer {customer_id} was erased")
        case End.TOO_LONG:
            raise InvalidInput(f"customer {customer_id} is merged in a chain too long to follow")
    return reached.customer_id


def _external_key(external_id: str) -> tuple[str, str]:
    system, separator, value = external_id.partition(":")
    if not (separator and system and value):
        raise InvalidInput(f"customer_external_id {external_id!r} is not `system:id`")
    return system, value


def _identity_keys(purchase: PurchaseCompleted) -> list[str]:
    """The identity keys a purchase names its buyer by, when not by id, best first."""
    keys = []
    if purchase.customer_external_id:
        system, value = _external_key(purchase.customer_external_id)
        keys.append(f"external:{system}:{value}")
    if purchase.customer_email:
        keys.append(f"email:{normalise_email(purchase.customer_email)}")
    return keys


def _keys_to_load(purchase: PurchaseCompleted) -> list[str]:
    if purchase.customer_id:
        return []
    with suppress(InvalidInput):  # the use case refuses the purchase with the reason
        return _identity_keys(purchase)
    return []


async def find_customer(ledger: Ledger, purchase: PurchaseCompleted, uow: UnitOfWork) -> str | None:
    """The live profile a purchase names by id, external id or e-mail; None if none has it."""
    if purchase.customer_id:
        return await live_customer_id(ledger, purchase.customer_id, uow)
    for key in _identity_keys(purchase):
        owner = await ledger.customers.owner(uow, key)
        if owner is not None:
            return await live_customer_id(ledger, owner, uow)
    return None


async def resolve_customer(
    ledger: Ledger, purchase: PurchaseCompleted, uow: UnitOfWork, now: datetime
) -> tuple[str, bool]:
    """The profile a purchase belongs to, and whether it is new: one is created for an
    e-mail or an external id met the first time."""
    found = await find_customer(ledger, purchase, uow)
    if found is not None:
        return found, False
    external = (
        _external_key(purchase.customer_external_id) if purchase.customer_external_id else None
    )
    email = normalise_email(purchase.customer_email) if purchase.customer_email else None
    try:
        fields = ProfileFields(
            emails=[email] if email else [],
            external_ids={external[0]: external[1]} if external else {},
        )
    except ValidationError as error:
        raise InvalidInput(f"cannot create a profile for this purchase: {error}") from None
    customer = register(fields, now)
    event = registered_event(customer)
    ledger.customers.add(uow, customer)
    uow.emit([event])
    ledger.timeline.add(
        uow,
        entry_id=event.id,
        customer_id=customer.id,
        happening=Happening(
            TimelineKind.PROFILE,
            now,
            f"profile created for purchase {purchase.purchase_id}",
            {"purchase_id": purchase.purchase_id},
        ),
    )
    return customer.id, True


# Purchases


def _purchase_entry(
    purchase: PurchaseCompleted,
    customer_id: str,
    occurred_at: datetime,
    now: datetime,
    origin: Origin,
) -> PurchaseEntry:
    return PurchaseEntry(
        purchase_id=purchase.purchase_id,
        customer_id=customer_id,
        occurred_at=to_millisecond(occurred_at),
        recorded_at=to_millisecond(now),
        currency=purchase.currency,
        amount=purchase.total_amount,
        channel=purchase.channel,
        items=tuple(LineItem.model_validate(item, from_attributes=True) for item in purchase.items),
        origin=origin,
    )


async def _record(
    ledger: Ledger,
    uow: UnitOfWork,
    entry: LedgerEntry,
    change: Callable[[Figures], Figures],
    *,
    new_customer: bool = False,
) -> None:
    """The ledger entry, the figures it changes and its timeline entry, together."""
    before = (
        Figures(customer_id=entry.customer_id)
        if new_customer  # nothing to read: the profile was created in this unit of work
        else await ledger.store.figures_in(uow, entry.customer_id)
    )
    ledger.store.add(uow, entry)
    ledger.store.put_figures(uow, change(before))
    ledger.timeline.add(
        uow,
        entry_id=entry.entry_id,
        customer_id=entry.customer_id,
        happening=Happening(
            TimelineKind.PURCHASE if entry.kind is EntryKind.PURCHASE else TimelineKind.RETURN,
            entry.occurred_at,
            entry.summary(),
            describe(entry),
        ),
    )


async def _store_purchase(
    ledger: Ledger,
    uow: UnitOfWork,
    purchase: PurchaseCompleted,
    *,
    occurred_at: datetime,
    origin: Origin,
) -> tuple[PurchaseEntry, bool]:
    """Record ``purchase`` unless its id is known; returns the stored entry and whether new."""
    now = ledger.clock()
    existing = await ledger.store.purchase(uow, purchase.purchase_id)
    if existing is not None:
        candidate = _purchase_entry(purchase, existing.customer_id, occurred_at, now, origin)
        same = existing.same_terms(candidate, compare_time=purchase.purchased_at is not None)
        if same and origin is Origin.HTTP:
            # The same buyer, however named: by id, e-mail or external id, or merged since.
            buyer = await _maybe_live(ledger, existing.customer_id, uow)
            same = buyer is not None and buyer == await _maybe_found(ledger, purchase, uow)
        if origin is Origin.HTTP and not same:
            raise Conflict(
                f"purchase {purchase.purchase_id} is already recorded with different content",
                purchase_id=purchase.purchase_id,
            )
        if not same:
            log.warning("purchase %s delivered again with different content", purchase.purchase_id)
        return existing, False
    customer_id, created = await resolve_customer(ledger, purchase, uow, now)
    entry = _purchase_entry(purchase, customer_id, occurred_at, now, origin)
    await _record(
        ledger, uow, entry, lambda figures: figures.with_purchase(entry), new_customer=created
    )
    if origin is Origin.HTTP:
        announced = purchase.model_copy(
            update={"customer_id": customer_id, "purchased_at": entry.occurred_at}
        )
        uow.emit([new_event(announced, source=SOURCE)])
    return entry, True


async def submit_purchase(
    ledger: Ledger, purchase: PurchaseCompleted
) -> tuple[PurchaseEntry, bool]:
    """A purchase posted over HTTP; a repetition with the same content returns the stored one."""
    occurred_at = purchase.purchased_at or ledger.clock()

    async def work(uow: UnitOfWork) -> tuple[PurchaseEntry, bool]:
        await load_purchases(ledger, [purchase], uow)
        return await _store_purchase(
            ledger, uow, purchase, occurred_at=occurred_at, origin=Origin.HTTP
        )

    return await ledger.commit(work)


async def place_order(
    ledger: Ledger,
    customer_id: str,
    order_id: str,
    items: Sequence[PurchaseItem],
    currency: str,
    *,
    by_customer: bool,
) -> tuple[PurchaseEntry, bool]:
    """An order placed in the portal: a purchase in channel ``portal``, recorded and announced
    as ``crm.purchase.completed`` like any purchase posted over HTTP. A customer orders only
    listed add-ons at their listed prices; staff may order anything."""
    lines = [LineItem.model_validate(item, from_attributes=True) for item in items]
    if by_customer:
        lines = priced_from_catalogue(lines, currency, ledger.addons)
    total = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
    purchase = PurchaseCompleted.model_validate(
        {
            "purchase_id": order_id,
            "customer_id": customer_id,
            "items": [line.model_dump() for line in lines],
            "total_amount": total,
            "currency": currency,
            "channel": PORTAL_CHANNEL,
        }
    )
    return await submit_purchase(ledger, purchase)


# Returns and refunds


async def _store_return(
    ledger: Ledger,
    uow: UnitOfWork,
    draft: ReturnEntry,
    *,
    strict: bool,
    time_given: bool,
    requester: str | None = None,
) -> tuple[ReturnEntry, bool]:
    """Record a return or refund of a known purchase within what is left to refund."""
    existing = await ledger.store.return_(uow, draft.return_id)
    if existing is not None:
        same = existing.same_terms(draft, compare_time=time_given)
        if same and strict:
            buyer = await _maybe_live(ledger, existing.customer_id, uow)
            same = buyer is not None and buyer == await _maybe_live(ledger, draft.customer_id, uow)
        if strict and not same:
            raise Conflict(
                f"return {draft.return_id} is already recorded with different content",
                return_id=draft.return_id,
            )
        if not same:
            log.warning("return %s delivered again with different content", draft.return_id)
        return existing, False
    purchase = await ledger.store.purchase(uow, draft.purchase_id)
    if purchase is None:
        raise NotFound(f"no purchase {draft.purchase_id} in the ledger")
    owner = await live_customer_id(ledger, purchase.customer_id, uow)
    if requester is not None:  # a customer token: its own purchases only, nobody else's id
        ensure_customer_access(
            owner,
            staff=False,
            own_customer_id=await _maybe_live(ledger, requester, uow),
            what="purchases",
        )
    if await _maybe_live(ledger, draft.customer_id, uow) != owner:
        raise InvalidInput(
            f"purchase {purchase.purchase_id} belongs to customer {owner}, "
            f"not to {draft.customer_id}"
        )
    entry = draft.model_copy(update={"customer_id": owner})
    after = purchase.after_return(entry)
    if requester is not None:
        _customer_return(purchase, entry)
    ledger.store.update_purchase(uow, after)
    await _record(ledger, uow, entry, lambda figures: figures.with_return(entry, purchase))
    return entry, True


def _customer_return(purchase: PurchaseEntry, entry: ReturnEntry) -> None:
    """A customer brings goods back for what they cost, never asks for money alone."""
    if not entry.items:
        raise InvalidInput("a customer's return names the items brought back")
    value = purchase.value_of(entry.quantities())
    if entry.amount != value:
        raise InvalidInput(
            f"the refund for these items is {format_money(value, purchase.currency)}, "
            f"not {format_money(entry.amount, entry.currency)}"
        )


async def _maybe_live(ledger: Ledger, customer_id: str, uow: UnitOfWork) -> str | None:
    try:
        return await live_customer_id(ledger, customer_id, uow)
    except (NotFound, InvalidInput):
        return None


async def _maybe_found(ledger: Ledger, purchase: PurchaseCompleted, uow: UnitOfWork) -> str | None:
    try:
        return await find_customer(ledger, purchase, uow)
    except (NotFound, InvalidInput):
        return None


def _return_entry(
    returned: PurchaseReturned, occurred_at: datetime, now: datetime, origin: Origin
) -> ReturnEntry:
    return ReturnEntry(
        return_id=returned.return_id,
        purchase_id=returned.purchase_id,
        customer_id=returned.customer_id,
        occurred_at=to_millisecond(occurred_at),
        recorded_at=to_millisecond(now),
        currency=returned.currency,
        amount=returned.refund_amount,
        items=tuple(ReturnLine.model_validate(item.model_dump()) for item in returned.items),
        reason=returned.reason,
        origin=origin,
    )


async def submit_return(
    ledger: Ledger, returned: PurchaseReturned, *, requester: str | None = None
) -> tuple[ReturnEntry, bool]:
    """A return posted over HTTP, announced as ``crm.purchase.returned``; ``requester`` is
    the customer whose token posted it (then it must be its own purchase, goods only)."""
    now = ledger.clock()
    draft = _return_entry(returned, returned.returned_at or now, now, Origin.HTTP)

    async def work(uow: UnitOfWork) -> tuple[ReturnEntry, bool]:
        await load_returns(ledger, [draft], uow)
        entry, created = await _store_return(
            ledger,
            uow,
            draft,
            strict=True,
            time_given=returned.returned_at is not None,
            requester=requester,
        )
        if created:
            announced = returned.model_copy(
                update={"customer_id": entry.customer_id, "returned_at": entry.occurred_at}
            )
            uow.emit([new_event(announced, source=SOURCE)])
        return entry, created

    return await ledger.commit(work)


def refund_of(resolved: ComplaintResolved, now: datetime) -> ReturnEntry | None:
    """The ledger refund a complaint resolution grants, if it grants one."""
    if (
        resolved.resolution_type not in REFUNDING_RESOLUTIONS
        or resolved.refund_amount is None
        or resolved.currency is None
        or resolved.purchase_id is None
    ):
        return None
    return ReturnEntry(
        kind=EntryKind.REFUND,
        return_id=complaint_return_id(resolved.complaint_id),
        purchase_id=resolved.purchase_id,
        customer_id=resolved.customer_id,
        occurred_at=to_millisecond(resolved.resolved_at),
        recorded_at=to_millisecond(now),
        currency=resolved.currency,
        amount=resolved.refund_amount,
        reason=resolved.summary[:500],
        origin=Origin.COMPLAINT,
        complaint_id=resolved.complaint_id,
    )


# Worker


@contextmanager
def _rejecting() -> Iterator[None]:
    """A rule an event breaks will not heal by retrying: dead-letter it with the reason."""
    try:
        yield
    except RapportError as error:
        raise RejectEvent(error.detail) from error


def _kafka_return(ledger: Ledger, event: Event[PurchaseReturned]) -> ReturnEntry:
    returned = event.payload
    return _return_entry(returned, returned.returned_at or event.time, ledger.clock(), Origin.KAFKA)


routes: Routes[Ledger] = Routes()


async def _load_purchase_events(
    ledger: Ledger, events: Sequence[Event[PurchaseCompleted]], uow: UnitOfWork
) -> None:
    await load_purchases(ledger, [event.payload for event in events], uow)


@routes.on(PurchaseCompleted, load=_load_purchase_events)
async def purchase_completed(
    ledger: Ledger, event: Event[PurchaseCompleted], uow: UnitOfWork
) -> None:
    """A purchase from any Kafka client: stored once, never re-published."""
    purchase = event.payload
    with _rejecting():
        await _store_purchase(
            ledger,
            uow,
            purchase,
            occurred_at=purchase.purchased_at or event.time,
            origin=Origin.KAFKA,
        )


async def _load_return_events(
    ledger: Ledger, events: Sequence[Event[PurchaseReturned]], uow: UnitOfWork
) -> None:
    await load_returns(ledger, [_kafka_return(ledger, event) for event in events], uow)


@routes.on(PurchaseReturned, load=_load_return_events)
async def purchase_returned(
    ledger: Ledger, event: Event[PurchaseReturned], uow: UnitOfWork
) -> None:
    with _rejecting():
        await _store_return(
            ledger, uow, _kafka_return(ledger, event), strict=False, time_given=True
        )


async def _load_refund_events(
    ledger: Ledger, events: Sequence[Event[ComplaintResolved]], uow: UnitOfWork
) -> None:
    now = ledger.clock()
    refunds = [refund_of(event.payload, now) for event in events]
    await load_returns(ledger, [refund for refund in refunds if refund is not None], uow)


@routes.on(ComplaintResolved, load=_load_refund_events)
async def complaint_resolved(
    ledger: Ledger, event: Event[ComplaintResolved], uow: UnitOfWork
) -> None:
    """A refunding resolution is a ledger refund."""
    refund = refund_of(event.payload, ledger.clock())
    if refund is None:
        return
    with _rejecting():
        await _store_return(ledger, uow, refund, strict=False, time_given=True)


# Reads


async def ledger_page(
    ledger: Ledger, customer_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[LedgerEntry]:
    await live_customer(ledger.customers, customer_id)
    return await ledger.store.page(customer_id, after, limit)


async def figures_of(ledger: Ledger, customer_id: str) -> Figures:
    await live_customer(ledger.customers, customer_id)
    return await ledger.store.figures_of(customer_id)
