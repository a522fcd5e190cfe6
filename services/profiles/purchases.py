"""Purchases and returns: record them in the customer's ledger and keep the figures.

Two entrypoints share these use cases. Systems that speak HTTP post purchases and returns
(``submit_purchase``/``submit_return``); they are stored and announced through the outbox,
so notifications and analytics hear of them. Systems that publish on ``crm.purchases`` are
consumed by the worker (``handlers``); their events are stored but never re-published.
Either way the ledger entry, the figures, the timeline entry and (for a customer met for the
first time) the new profile are written in one transaction, and the purchase or return id
makes a repetition a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from services.profiles.domain import CustomerStatus, ProfileFields, normalise_email, register
from services.profiles.handlers import live_customer, registered_event
from services.profiles.ledger import (
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
    to_millisecond,
)
from services.profiles.ledger_store import LedgerContention, LedgerStore
from services.profiles.store import CustomerStore
from services.profiles.timeline import EntryKind as TimelineKind
from services.profiles.timeline import TimelineStore
from shared.clock import utc_now
from shared.consumer import Handler, RejectEvent
from shared.errors import Conflict, InvalidInput, NotFound, RapportError
from shared.events import Event, new_event
from shared.events.complaints import ComplaintResolved, ResolutionType
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.mongo import MongoClient, Session, in_transaction_retrying
from shared.outbox import Outbox, OutboxRelay

log = logging.getLogger(__name__)

SOURCE = "/rapport/profiles"
MAX_MERGE_HOPS = 10
HTTP_ATTEMPTS = 3
REFUNDING_RESOLUTIONS = frozenset({ResolutionType.REFUND, ResolutionType.RETURN})
T = TypeVar("T")


@dataclass
class Ledger:
    """What the purchase use cases need: the stores, the outbox and the clock."""

    client: MongoClient
    customers: CustomerStore
    store: LedgerStore
    outbox: Outbox
    relay: OutboxRelay
    timeline: TimelineStore
    clock: Callable[[], datetime] = utc_now

    async def commit(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction; run it again when a concurrent write got there first.

        A second run sees what the first one raced with: the purchase stored by a parallel
        request, the profile created for the same e-mail, the figures' new version.
        """
        try:
            result = await in_transaction_retrying(
                self.client,
                work,
                retry_on=(DuplicateKeyError, LedgerContention),
                attempts=HTTP_ATTEMPTS,
            )
        except (DuplicateKeyError, LedgerContention):
            raise Conflict("the ledger changed concurrently; try again") from None
        self.relay.wake()
        return result


# Customers


async def live_customer_id(ledger: Ledger, customer_id: str, session: Session | None) -> str:
    """The live profile ``customer_id`` stands for: itself, or the survivor of its merge."""
    current = customer_id
    for _ in range(MAX_MERGE_HOPS):
        customer = await ledger.customers.get(current, session)
        if customer is None:
            raise NotFound(f"no customer {customer_id}")
        if customer.status is CustomerStatus.ERASED:
            raise NotFound(f"customer {customer_id} was erased")
        if customer.status is CustomerStatus.MERGED and customer.merged_into:
            current = customer.merged_into
            continue
        return current
    raise InvalidInput(f"customer {customer_id} is merged in a chain too long to follow")


def _external_key(external_id: str) -> tuple[str, str]:
    system, separator, value = external_id.partition(":")
    if not (separator and system and value):
        raise InvalidInput(f"customer_external_id {external_id!r} is not `system:id`")
    return system, value


async def find_customer(
    ledger: Ledger, purchase: PurchaseCompleted, session: Session
) -> str | None:
    """The live profile a purchase names by id, external id or e-mail; None if none has it."""
    if purchase.customer_id:
        return await live_customer_id(ledger, purchase.customer_id, session)
    keys = []
    if purchase.customer_external_id:
        system, value = _external_key(purchase.customer_external_id)
        keys.append(f"external:{system}:{value}")
    if purchase.customer_email:
        keys.append(f"email:{normalise_email(purchase.customer_email)}")
    for key in keys:
        owner = await ledger.store.identity_owner(key, session)
        if owner is not None:
            return await live_customer_id(ledger, owner, session)
    return None


async def resolve_customer(
    ledger: Ledger, purchase: PurchaseCompleted, session: Session, now: datetime
) -> str:
    """The profile a purchase belongs to; one is created for an e-mail or an external id
    met the first time."""
    found = await find_customer(ledger, purchase, session)
    if found is not None:
        return found
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
    await ledger.customers.insert(customer, session)
    await ledger.outbox.add(session, [event])
    await ledger.timeline.append(
        session,
        entry_id=event.id,
        customer_id=customer.id,
        kind=TimelineKind.PROFILE,
        occurred_at=now,
        summary=f"profile created for purchase {purchase.purchase_id}",
        details={"purchase_id": purchase.purchase_id},
    )
    return customer.id


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
        items=tuple(LineItem.model_validate(item.model_dump()) for item in purchase.items),
        origin=origin,
    )


async def _record(
    ledger: Ledger, session: Session, entry: LedgerEntry, change: Callable[[Figures], Figures]
) -> None:
    """The ledger entry, the figures it changes and its timeline entry, together."""
    before = await ledger.store.figures_of(entry.customer_id, session)
    await ledger.store.add(entry, session)
    await ledger.store.save_figures(before, change(before), session)
    await ledger.timeline.append(
        session,
        entry_id=entry.entry_id,
        customer_id=entry.customer_id,
        kind=TimelineKind.PURCHASE if entry.kind is EntryKind.PURCHASE else TimelineKind.RETURN,
        occurred_at=entry.occurred_at,
        summary=entry.summary(),
        details=describe(entry),
    )


async def _store_purchase(
    ledger: Ledger,
    session: Session,
    purchase: PurchaseCompleted,
    *,
    occurred_at: datetime,
    origin: Origin,
) -> tuple[PurchaseEntry, bool]:
    """Record ``purchase`` unless its id is known; returns the stored entry and whether new."""
    now = ledger.clock()
    existing = await ledger.store.purchase(purchase.purchase_id, session)
    if existing is not None:
        candidate = _purchase_entry(purchase, existing.customer_id, occurred_at, now, origin)
        same = existing.same_terms(candidate, compare_time=purchase.purchased_at is not None)
        if same and origin is Origin.HTTP:
            # The same buyer, however named: by id, e-mail or external id, or merged since.
            buyer = await _maybe_live(ledger, existing.customer_id, session)
            same = buyer is not None and buyer == await _maybe_found(ledger, purchase, session)
        if origin is Origin.HTTP and not same:
            raise Conflict(
                f"purchase {purchase.purchase_id} is already recorded with different content",
                purchase_id=purchase.purchase_id,
            )
        if not same:
            log.warning("purchase %s delivered again with different content", purchase.purchase_id)
        return existing, False
    customer_id = await resolve_customer(ledger, purchase, session, now)
    entry = _purchase_entry(purchase, customer_id, occurred_at, now, origin)
    await _record(ledger, session, entry, lambda figures: figures.with_purchase(entry))
    if origin is Origin.HTTP:
        announced = purchase.model_copy(
            update={"customer_id": customer_id, "purchased_at": entry.occurred_at}
        )
        await ledger.outbox.add(session, [new_event(announced, source=SOURCE)])
    return entry, True


async def submit_purchase(
    ledger: Ledger, purchase: PurchaseCompleted
) -> tuple[PurchaseEntry, bool]:
    """A purchase posted over HTTP; a repetition with the same content returns the stored one."""
    occurred_at = purchase.purchased_at or ledger.clock()

    async def work(session: Session) -> tuple[PurchaseEntry, bool]:
        return await _store_purchase(
            ledger, session, purchase, occurred_at=occurred_at, origin=Origin.HTTP
        )

    return await ledger.commit(work)


# Returns and refunds


async def _store_return(
    ledger: Ledger, session: Session, draft: ReturnEntry, *, strict: bool, time_given: bool
) -> tuple[ReturnEntry, bool]:
    """Record a return or refund of a known purchase within what is left to refund."""
    existing = await ledger.store.return_(draft.return_id, session)
    if existing is not None:
        same = existing.same_terms(draft, compare_time=time_given)
        if same and strict:
            buyer = await _maybe_live(ledger, existing.customer_id, session)
            same = buyer is not None and buyer == await _maybe_live(
                ledger, draft.customer_id, session
            )
        if strict and not same:
            raise Conflict(
                f"return {draft.return_id} is already recorded with different content",
                return_id=draft.return_id,
            )
        if not same:
            log.warning("return %s delivered again with different content", draft.return_id)
        return existing, False
    purchase = await ledger.store.purchase(draft.purchase_id, session)
    if purchase is None:
        raise NotFound(f"no purchase {draft.purchase_id} in the ledger")
    owner = await live_customer_id(ledger, purchase.customer_id, session)
    if await _maybe_live(ledger, draft.customer_id, session) != owner:
        raise InvalidInput(
            f"purchase {purchase.purchase_id} belongs to customer {owner}, "
            f"not to {draft.customer_id}"
        )
    entry = draft.model_copy(update={"customer_id": owner})
    refunded = purchase.after_return(entry)
    await ledger.store.replace_purchase(purchase, refunded, session)
    await _record(ledger, session, entry, lambda figures: figures.with_return(entry, purchase))
    return entry, True


async def _maybe_live(ledger: Ledger, customer_id: str, session: Session) -> str | None:
    try:
        return await live_customer_id(ledger, customer_id, session)
    except (NotFound, InvalidInput):
        return None


async def _maybe_found(ledger: Ledger, purchase: PurchaseCompleted, session: Session) -> str | None:
    try:
        return await find_customer(ledger, purchase, session)
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


async def submit_return(ledger: Ledger, returned: PurchaseReturned) -> tuple[ReturnEntry, bool]:
    """A return posted over HTTP, announced as ``crm.purchase.returned``."""
    now = ledger.clock()
    draft = _return_entry(returned, returned.returned_at or now, now, Origin.HTTP)

    async def work(session: Session) -> tuple[ReturnEntry, bool]:
        entry, created = await _store_return(
            ledger, session, draft, strict=True, time_given=returned.returned_at is not None
        )
        if created:
            announced = returned.model_copy(
                update={"customer_id": entry.customer_id, "returned_at": entry.occurred_at}
            )
            await ledger.outbox.add(session, [new_event(announced, source=SOURCE)])
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


def handlers(ledger: Ledger) -> dict[str, Handler]:
    """Worker handlers: purchases and returns from any Kafka client, complaint refunds."""

    async def purchase_completed(event: Event[Any], session: Session) -> None:
        purchase = event.payload
        assert isinstance(purchase, PurchaseCompleted)
        with _rejecting():
            await _store_purchase(
                ledger,
                session,
                purchase,
                occurred_at=purchase.purchased_at or event.time,
                origin=Origin.KAFKA,
            )

    async def purchase_returned(event: Event[Any], session: Session) -> None:
        returned = event.payload
        assert isinstance(returned, PurchaseReturned)
        draft = _return_entry(
            returned, returned.returned_at or event.time, ledger.clock(), Origin.KAFKA
        )
        with _rejecting():
            await _store_return(ledger, session, draft, strict=False, time_given=True)

    async def complaint_resolved(event: Event[Any], session: Session) -> None:
        resolved = event.payload
        assert isinstance(resolved, ComplaintResolved)
        refund = refund_of(resolved, ledger.clock())
        if refund is None:
            return
        with _rejecting():
            await _store_return(ledger, session, refund, strict=False, time_given=True)

    return {
        PurchaseCompleted.event_type: purchase_completed,
        PurchaseReturned.event_type: purchase_returned,
        ComplaintResolved.event_type: complaint_resolved,
    }


# Reads


async def ledger_page(
    ledger: Ledger, customer_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[LedgerEntry]:
    await live_customer(ledger.customers, customer_id)
    return await ledger.store.page(customer_id, after, limit)


async def figures_of(ledger: Ledger, customer_id: str) -> Figures:
    await live_customer(ledger.customers, customer_id)
    return await ledger.store.figures_of(customer_id)
