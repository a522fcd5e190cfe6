"""Purchase events (``crm.purchases``): purchases and returns as facts, and complaint
resolutions that grant a refund, counted as returns."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.analytics.handlers.context import Analytics
from services.analytics.store import stored_time
from shared.events import Event
from shared.events.complaints import ComplaintResolved, ResolutionType
from shared.events.purchases import PurchaseCompleted, PurchaseReturned
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

routes: Routes[Analytics] = Routes()


def _named(purchase: PurchaseCompleted) -> str:
    """How a purchase names its buyer: the customer id, else an external id or e-mail,
    which a profile on ``crm.customers`` later ties to a customer."""
    if purchase.customer_id:
        return purchase.customer_id
    if purchase.customer_external_id:
        system, _, value = purchase.customer_external_id.partition(":")
        return f"external:{system}:{value}"
    return f"email:{(purchase.customer_email or '').strip().lower()}"


async def load_purchases(
    ctx: Analytics, events: Sequence[Event[PurchaseCompleted]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    batch.want_names(_named(event.payload) for event in events)
    batch.want_facts("purchases", "_id", (event.payload.purchase_id for event in events))


@routes.on(PurchaseCompleted, load=load_purchases)
async def on_purchase_completed(
    ctx: Analytics, event: Event[PurchaseCompleted], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    purchase = event.payload
    purchases = batch.facts["purchases"]
    if await purchases.get(uow, purchase.purchase_id) is not None:
        return  # a purchase id seen before counts once
    named, customer_id = await batch.attribution(uow, _named(purchase))
    purchases.add(
        {
            "_id": purchase.purchase_id,
            "named": named,
            "customer_id": customer_id,
            "at": stored_time(purchase.purchased_at or event.time),
            "currency": purchase.currency,
            "total": format(purchase.total_amount, "f"),
            "channel": purchase.channel,
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
            "skus": sorted({item.sku for item in purchase.items}),
            "categories": sorted({item.category for item in purchase.items}),
        }
    )
    batch.touch(customer_id, "purchases", purchase.purchase_id)


async def load_returns(
    ctx: Analytics, events: Sequence[Event[PurchaseReturned]], uow: UnitOfWork
) -> None:
    batch = ctx.batch(uow)
    batch.want_names(event.payload.customer_id for event in events)
    batch.want_facts("returns", "_id", (event.payload.return_id for event in events))


@routes.on(PurchaseReturned, load=load_returns)
async def on_purchase_returned(
    ctx: Analytics, event: Event[PurchaseReturned], uow: UnitOfWork
) -> None:
    batch = await ctx.ready(uow)
    returned = event.payload
    returns = batch.facts["returns"]
    if await returns.get(uow, returned.return_id) is not None:
        return
    named, customer_id = await batch.attribution(uow, returned.customer_id)
    returns.add(
        {
            "_id": returned.return_id,
            "named": named,
            "customer_id": customer_id,
            "purchase_id": returned.purchase_id,
            "at": stored_time(returned.returned_at or event.time),
            "currency": returned.currency,
            "refund": format(returned.refund_amount, "f"),
        }
    )
    batch.touch(customer_id, "returns", returned.return_id)


# A complaint resolved with a refund is a refund, as the profiles ledger books it: a
# refund or return resolution naming the amount, the currency and the purchase, kept as
# the return ``complaint:<complaint id>``. That id is the rule against counting it twice: a
# second resolution of the complaint, or a ``crm.purchase.returned`` carrying that return
# id, is the same refund (the first one met counts), as the ledger keeps one entry an id.
REFUNDING_RESOLUTIONS = frozenset({ResolutionType.REFUND, ResolutionType.RETURN})


def complaint_return_id(complaint_id: str) -> str:
    """The id of the refund a complaint resolution grants (the ledger's, too)."""
    return f"complaint:{complaint_id}"


def refund_of(resolved: ComplaintResolved) -> tuple[Decimal, str, str] | None:
    """The refund (amount, currency, purchase id) a resolution grants, if it grants one."""
    amount, currency, purchase_id = (
        resolved.refund_amount,
        resolved.currency,
        resolved.purchase_id,
    )
    if resolved.resolution_type not in REFUNDING_RESOLUTIONS:
        return None
    if amount is None or currency is None or purchase_id is None:
        return None
    return amount, currency, purchase_id


async def load_refunds(
    ctx: Analytics, events: Sequence[Event[ComplaintResolved]], uow: UnitOfWork
) -> None:
    refunds = [event.payload for event in events if refund_of(event.payload) is not None]
    if not refunds:
        return
    batch = ctx.batch(uow)
    batch.want_names(resolved.customer_id for resolved in refunds)
    ids = (complaint_return_id(resolved.complaint_id) for resolved in refunds)
    batch.want_facts("returns", "_id", ids)


@routes.on(ComplaintResolved, load=load_refunds)
async def on_complaint_refund(
    ctx: Analytics, event: Event[ComplaintResolved], uow: UnitOfWork
) -> None:
    """A refunding resolution counts as a return (refunds, net spend, RFM money), once."""
    resolved = event.payload
    refund = refund_of(resolved)
    if refund is None:
        return
    amount, currency, purchase_id = refund
    batch = await ctx.ready(uow)
    return_id = complaint_return_id(resolved.complaint_id)
    returns = batch.facts["returns"]
    if await returns.get(uow, return_id) is not None:
        return  # resolved again, or already met as crm.purchase.returned
    named, customer_id = await batch.attribution(uow, resolved.customer_id)
    returns.add(
        {
            "_id": return_id,
            "named": named,
            "customer_id": customer_id,
            "purchase_id": purchase_id,
            "complaint_id": resolved.complaint_id,
            "at": stored_time(resolved.resolved_at),
            "currency": currency,
            "refund": format(amount, "f"),
        }
    )
    batch.touch(customer_id, "returns", return_id)
