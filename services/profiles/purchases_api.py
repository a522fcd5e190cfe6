"""HTTP API of the purchase ledger: post purchases and returns, read ledgers and figures."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services.profiles import purchases
from services.profiles.ledger import (
    EntryKind,
    Figures,
    LedgerEntry,
    Origin,
    PurchaseEntry,
)
from services.profiles.purchases import Ledger
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.errors import Forbidden, InvalidInput
from shared.events.base import Amount, CurrencyCode, Identifier
from shared.events.purchases import PurchaseCompleted, PurchaseItem, PurchaseReturned
from shared.pagination import Page, decode_cursor, page_of

STAFF_OR_SERVICE = (Role.ADMIN, Role.AGENT, Role.SERVICE)
StaffOrService = Annotated[Principal, Depends(require_roles(*STAFF_OR_SERVICE))]
MAX_ORDER_ITEMS = 50
_STRICT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


class PurchaseCreate(PurchaseCompleted):
    """A purchase, as in ``crm.purchase.completed``; ``purchased_at`` defaults to now."""

    model_config = _STRICT


class ReturnCreate(PurchaseReturned):
    """A return, as in ``crm.purchase.returned``; ``returned_at`` defaults to now."""

    model_config = _STRICT


class OrderCreate(BaseModel):
    """An order placed in the portal; ``order_id`` (optional) makes a retry a no-op."""

    model_config = _STRICT

    order_id: Identifier | None = Field(
        default=None, description="becomes the purchase id; one is made up when absent"
    )
    items: list[PurchaseItem] = Field(min_length=1, max_length=MAX_ORDER_ITEMS)
    currency: CurrencyCode


class LedgerItemPublic(BaseModel):
    sku: str
    name: str | None = None
    category: str | None = None
    quantity: int
    unit_price: Amount | None = None


class LedgerEntryPublic(BaseModel):
    kind: EntryKind
    entry_id: str
    purchase_id: str
    return_id: str | None = None
    complaint_id: str | None = None
    customer_id: str
    occurred_at: datetime
    recorded_at: datetime
    currency: str
    amount: Amount = Field(description="the purchase's total, or the amount refunded")
    channel: str | None = None
    reason: str | None = None
    items: list[LedgerItemPublic]
    refunded: Amount | None = Field(
        default=None, description="of a purchase: how much of it was refunded so far"
    )
    returned_quantities: dict[str, int] | None = Field(
        default=None, description="of a purchase: quantity brought back so far, per SKU"
    )
    origin: Origin
    summary: str

    @classmethod
    def of(cls, entry: LedgerEntry) -> LedgerEntryPublic:
        fields = entry.model_dump(exclude={"returned", "revision"})
        if isinstance(entry, PurchaseEntry):
            fields["returned_quantities"] = dict(entry.returned)
        items = [LedgerItemPublic.model_validate(item) for item in fields.pop("items")]
        return cls.model_validate(
            {
                **fields,
                "kind": entry.kind,
                "entry_id": entry.entry_id,
                "items": items,
                "summary": entry.summary(),
            }
        )


class LedgerPage(Page[LedgerEntryPublic]):
    pass


class CurrencyFiguresPublic(BaseModel):
    currency: str
    purchase_count: int
    total_spent: Amount
    refunded: Amount
    net_spent: Amount = Field(description="total spent minus refunds")
    average_order_value: Amount | None = Field(description="total spent per purchase")


class CategoryPublic(BaseModel):
    category: str
    quantity: int


class FiguresPublic(BaseModel):
    customer_id: str
    purchase_count: int
    return_count: int = Field(description="returns and complaint refunds")
    currencies: list[CurrencyFiguresPublic]
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    mean_interval_days: float | None = Field(
        description="mean gap between consecutive purchases; null below two purchases"
    )
    favourite_categories: list[CategoryPublic] = Field(
        description="categories by quantity bought and kept, most first"
    )

    @classmethod
    def of(cls, figures: Figures) -> FiguresPublic:
        return cls(
            customer_id=figures.customer_id,
            purchase_count=figures.purchase_count,
            return_count=figures.return_count,
            currencies=[
                CurrencyFiguresPublic(
                    currency=code,
                    purchase_count=spent.purchase_count,
                    total_spent=spent.total_spent,
                    refunded=spent.refunded,
                    net_spent=spent.net_spent,
                    average_order_value=spent.average_order_value,
                )
                for code, spent in sorted(figures.currencies.items())
            ],
            first_purchase_at=figures.first_purchase_at,
            last_purchase_at=figures.last_purchase_at,
            mean_interval_days=figures.mean_interval_days,
            favourite_categories=[
                CategoryPublic(category=count.category, quantity=count.quantity)
                for count in figures.favourite_categories()
            ],
        )


router = APIRouter(prefix="/api/v1", tags=["purchases"])
_RECORDED: dict[int | str, dict[str, Any]] = {
    200: {"description": "the same id was recorded before with the same content"},
    409: {"description": "the id was recorded before with different content"},
}


@router.post("/purchases", status_code=status.HTTP_201_CREATED, responses=_RECORDED)
async def post_purchase(
    body: PurchaseCreate, ledger: LedgerDep, response: Response, _: StaffOrService
) -> LedgerEntryPublic:
    purchase = PurchaseCompleted.model_validate(body.model_dump())
    entry, created = await purchases.submit_purchase(ledger, purchase)
    if not created:
        response.status_code = status.HTTP_200_OK
    return LedgerEntryPublic.of(entry)


@router.post(
    "/customers/{customer_id}/orders", status_code=status.HTTP_201_CREATED, responses=_RECORDED
)
async def post_order(
    customer_id: str,
    body: OrderCreate,
    ledger: LedgerDep,
    response: Response,
    principal: CurrentPrincipal,
) -> LedgerEntryPublic:
    """Order add-ons (the portal): a purchase in channel ``portal``, announced as
    ``crm.purchase.completed``. A customer may order for itself, only the listed add-ons
    (``portal_addons``) at their prices; staff may order anything for anyone."""
    principal.ensure_may_access_customer(customer_id)
    entry, created = await purchases.place_order(
        ledger,
        customer_id,
        body.order_id or f"ord_{uuid.uuid4().hex}",
        body.items,
        body.currency,
        by_customer=not principal.has_any(*STAFF_OR_SERVICE),
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return LedgerEntryPublic.of(entry)


@router.post("/returns", status_code=status.HTTP_201_CREATED, responses=_RECORDED)
async def post_return(
    body: ReturnCreate, ledger: LedgerDep, response: Response, principal: CurrentPrincipal
) -> LedgerEntryPublic:
    """Record a return. A customer token may start one for its own purchase: goods only
    (named items, refunded at the price paid) and no ``returned_at`` (it is now)."""
    requester = None
    if not principal.has_any(*STAFF_OR_SERVICE):
        if not principal.has_any(Role.CUSTOMER):
            raise Forbidden("returns are for staff, services and the customer who bought")
        principal.ensure_may_access_customer(body.customer_id)
        if body.returned_at is not None:
            raise InvalidInput("a customer's return happens now: leave returned_at out")
        requester = body.customer_id
    returned = PurchaseReturned.model_validate(body.model_dump())
    entry, created = await purchases.submit_return(ledger, returned, requester=requester)
    if not created:
        response.status_code = status.HTTP_200_OK
    return LedgerEntryPublic.of(entry)


@router.get("/customers/{customer_id}/ledger")
async def read_ledger(
    customer_id: str,
    ledger: LedgerDep,
    principal: CurrentPrincipal,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> LedgerPage:
    """Purchases, returns and refunds, newest first."""
    principal.ensure_may_access_customer(customer_id)
    found = await purchases.ledger_page(ledger, customer_id, decode_cursor(cursor), limit + 1)
    entries, next_cursor = page_of(found, limit, lambda e: (e.occurred_at, e.entry_id))
    return LedgerPage(
        items=[LedgerEntryPublic.of(entry) for entry in entries], next_cursor=next_cursor
    )


@router.get("/customers/{customer_id}/figures")
async def read_figures(
    customer_id: str, ledger: LedgerDep, principal: CurrentPrincipal
) -> FiguresPublic:
    """What the customer's ledger adds up to: counts, spend per currency, buying habits."""
    principal.ensure_may_access_customer(customer_id)
    return FiguresPublic.of(await purchases.figures_of(ledger, customer_id))
