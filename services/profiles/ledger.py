"""The purchase ledger and the figures derived from it: pure rules, Decimal money, no I/O.

A customer's ledger holds what they bought (purchases) and what came back (returns, and
refunds granted when a complaint was resolved). The figures (counts, spend and net spend
per currency, average order value, purchase rhythm, favourite categories) are folded from
the ledger one entry at a time, so they can be kept up to date in the same transaction as
the entry that changes them, and recomputed from the ledger with the same code.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import InvalidInput

FAVOURITE_CATEGORIES = 5
ZERO = Decimal(0)


class EntryKind(StrEnum):
    PURCHASE = "purchase"
    RETURN = "return"
    REFUND = "refund"  # granted when a complaint was resolved with a refund or a return


class Origin(StrEnum):
    """How the entry reached the ledger."""

    HTTP = "http"
    KAFKA = "kafka"
    COMPLAINT = "complaint"


def _scale(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def format_money(amount: Decimal, currency: str) -> str:
    return f"{amount:f} {currency}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LineItem(_Value):
    sku: str
    name: str
    category: str
    quantity: int = Field(ge=1)
    unit_price: Decimal


class ReturnLine(_Value):
    sku: str
    quantity: int = Field(ge=1)
    unit_price: Decimal | None = None


class PurchaseEntry(_Value):
    """A purchase as the ledger keeps it, with what has been returned of it so far."""

    purchase_id: str
    customer_id: str
    occurred_at: datetime
    recorded_at: datetime
    currency: str
    amount: Decimal  # the purchase's total
    channel: str
    items: tuple[LineItem, ...]
    origin: Origin
    refunded: Decimal = ZERO
    returned: dict[str, int] = Field(default_factory=dict)  # sku -> quantity brought back
    revision: int = 0  # bumped by every return, so concurrent returns cannot both pass

    @property
    def kind(self) -> EntryKind:
        return EntryKind.PURCHASE

    @property
    def entry_id(self) -> str:
        return purchase_entry_id(self.purchase_id)

    @property
    def item_count(self) -> int:
        return sum(item.quantity for item in self.items)

    def summary(self) -> str:
        money = format_money(self.amount, self.currency)
        return f"bought {_plural(self.item_count, 'item')} for {money} ({self.channel})"

    def same_terms(self, other: PurchaseEntry, *, compare_time: bool) -> bool:
        """Does ``other`` describe this purchase (a repeated request), or a different one?

        The customer is compared by the caller: the same buyer may be named differently.
        """
        if compare_time and self.occurred_at != other.occurred_at:
            return False
        keys = ("currency", "amount", "channel", "items")
        return all(getattr(self, key) == getattr(other, key) for key in keys)

    def bought(self) -> Counter[str]:
        quantities: Counter[str] = Counter()
        for item in self.items:
            quantities[item.sku] += item.quantity
        return quantities

    def category_of(self, sku: str) -> str | None:
        return next((item.category for item in self.items if item.sku == sku), None)

    def value_of(self, quantities: Counter[str]) -> Decimal:
        """What ``quantities`` of this purchase's items cost, at the price paid (the lowest
        where one SKU was bought at several prices)."""
        total = ZERO
        for sku, quantity in quantities.items():
            prices = [item.unit_price for item in self.items if item.sku == sku]
            if not prices:
                raise InvalidInput(f"purchase {self.purchase_id} has no item {sku}")
            total += min(prices) * quantity
        return total

    def refundable(self) -> Decimal:
        return self.amount - self.refunded

    def after_return(self, entry: ReturnEntry) -> PurchaseEntry:
        """This purchase once ``entry`` is accepted; refuses what cannot be brought back."""
        if entry.currency != self.currency:
            raise InvalidInput(
                f"purchase {self.purchase_id} was paid in {self.currency}, "
                f"not {entry.currency}: a refund is in the purchase's currency"
            )
        if entry.amount > self.refundable():
            raise InvalidInput(
                f"cannot refund {format_money(entry.amount, entry.currency)} of purchase "
                f"{self.purchase_id}: only {format_money(self.refundable(), self.currency)} "
                f"of {format_money(self.amount, self.currency)} is left to refund"
            )
        bought = self.bought()
        returned = Counter(self.returned)
        for sku, quantity in entry.quantities().items():
            if sku not in bought:
                raise InvalidInput(f"purchase {self.purchase_id} has no item {sku}")
            left = bought[sku] - returned[sku]
            if quantity > left:
                raise InvalidInput(
                    f"cannot return {quantity} of {sku}: purchase {self.purchase_id} "
                    f"has {left} left to return"
                )
            returned[sku] += quantity
        return self.model_copy(
            update={
                "refunded": self.refunded + entry.amount,
                "returned": dict(returned),
                "revision": self.revision + 1,
            }
        )


class ReturnEntry(_Value):
    """Money (and maybe goods) going back to the customer for one purchase."""

    kind: EntryKind = EntryKind.RETURN
    return_id: str
    purchase_id: str
    customer_id: str
    occurred_at: datetime
    recorded_at: datetime
    currency: str
    amount: Decimal  # refunded
    items: tuple[ReturnLine, ...] = ()
    reason: str | None = None
    origin: Origin
    complaint_id: str | None = None

    @property
    def entry_id(self) -> str:
        return return_entry_id(self.return_id)

    @property
    def item_count(self) -> int:
        return sum(item.quantity for item in self.items)

    def quantities(self) -> Counter[str]:
        quantities: Counter[str] = Counter()
        for item in self.items:
            quantities[item.sku] += item.quantity
        return quantities

    def summary(self) -> str:
        money = format_money(self.amount, self.currency)
        if self.kind is EntryKind.REFUND:
            return (
                f"refunded {money} for purchase {self.purchase_id} (complaint {self.complaint_id})"
            )
        goods = f"returned {_plural(self.item_count, 'item')} of" if self.items else "refund for"
        return f"{goods} purchase {self.purchase_id}: {money} back"

    def same_terms(self, other: ReturnEntry, *, compare_time: bool) -> bool:
        """Does ``other`` describe this return? The customer is compared by the caller."""
        if compare_time and self.occurred_at != other.occurred_at:
            return False
        keys = ("purchase_id", "currency", "amount", "items", "reason", "kind")
        return all(getattr(self, key) == getattr(other, key) for key in keys)


LedgerEntry = PurchaseEntry | ReturnEntry


def purchase_entry_id(purchase_id: str) -> str:
    return f"purchase:{purchase_id}"


def return_entry_id(return_id: str) -> str:
    return f"return:{return_id}"


def complaint_return_id(complaint_id: str) -> str:
    return f"complaint:{complaint_id}"


class Addon(_Value):
    """An add-on customers may order themselves in the portal, at its listed price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    names: dict[str, str] = Field(default_factory=dict)  # per locale, `name` otherwise
    category: str = Field(default="add-ons", min_length=1, max_length=200)
    unit_price: Decimal = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


def priced_from_catalogue(
    items: list[LineItem], currency: str, catalogue: tuple[Addon, ...]
) -> list[LineItem]:
    """A customer's own order: every item is a listed add-on, at its listed price and in its
    currency (what the customer saw is what is charged); name and category are the list's."""
    listed = {addon.sku: addon for addon in catalogue}
    priced = []
    for item in items:
        addon = listed.get(item.sku)
        if addon is None:
            raise InvalidInput(f"{item.sku} is not an add-on customers can order")
        if addon.currency != currency or addon.unit_price != item.unit_price:
            raise InvalidInput(
                f"{item.sku} costs {format_money(addon.unit_price, addon.currency)}, "
                f"not {format_money(item.unit_price, currency)}"
            )
        priced.append(item.model_copy(update={"name": addon.name, "category": addon.category}))
    return priced


DEFAULT_ADDONS: tuple[Addon, ...] = (
    Addon(
        sku="addon-storage-50",
        name="Extra storage, 50 GB",
        names={
            "hr": "Dodatni prostor, 50 GB",
            "cs": "Úložiště navíc, 50 GB",
            "sl": "Dodatni prostor, 50 GB",
            "fa": "فضای ذخیره‌سازی اضافه، 50 گیگابایت",
        },
        unit_price=Decimal("4.90"),
        currency="EUR",
    ),
    Addon(
        sku="addon-priority-support",
        name="Priority support",
        names={
            "hr": "Prioritetna podrška",
            "cs": "Přednostní podpora",
            "sl": "Prednostna podpora",
            "fa": "پشتیبانی ویژه",
        },
        unit_price=Decimal("9.90"),
        currency="EUR",
    ),
    Addon(
        sku="addon-extra-user",
        name="One more user",
        names={
            "hr": "Još jedan korisnik",
            "cs": "Další uživatel",
            "sl": "Še en uporabnik",
            "fa": "یک کاربر دیگر",
        },
        unit_price=Decimal("7.50"),
        currency="EUR",
    ),
)


class CurrencyFigures(_Value):
    currency: str
    purchase_count: int = 0
    total_spent: Decimal = ZERO
    refunded: Decimal = ZERO

    @property
    def net_spent(self) -> Decimal:
        return self.total_spent - self.refunded

    @property
    def average_order_value(self) -> Decimal | None:
        """Gross spend per purchase, to the precision the amounts were given in."""
        if self.purchase_count == 0:
            return None
        exact = self.total_spent / self.purchase_count
        return exact.quantize(Decimal(1).scaleb(-_scale(self.total_spent)), ROUND_HALF_EVEN)


class CategoryCount(_Value):
    category: str
    quantity: int


class Figures(_Value):
    """What a customer's ledger adds up to; ``version`` counts the entries folded in."""

    customer_id: str
    purchase_count: int = 0
    return_count: int = 0  # returns and complaint refunds
    currencies: dict[str, CurrencyFigures] = Field(default_factory=dict)
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    categories: dict[str, int] = Field(default_factory=dict)  # kept quantity per category
    version: int = 0

    def _in(self, currency: str) -> CurrencyFigures:
        return self.currencies.get(currency) or CurrencyFigures(currency=currency)

    def with_purchase(self, purchase: PurchaseEntry) -> Figures:
        spent = self._in(purchase.currency)
        categories = Counter(self.categories)
        for item in purchase.items:
            categories[item.category] += item.quantity
        first, last = self.first_purchase_at, self.last_purchase_at
        return self.model_copy(
            update={
                "purchase_count": self.purchase_count + 1,
                "currencies": {
                    **self.currencies,
                    purchase.currency: spent.model_copy(
                        update={
                            "purchase_count": spent.purchase_count + 1,
                            "total_spent": spent.total_spent + purchase.amount,
                        }
                    ),
                },
                "first_purchase_at": min(first, purchase.occurred_at)
                if first
                else purchase.occurred_at,
                "last_purchase_at": max(last, purchase.occurred_at)
                if last
                else purchase.occurred_at,
                "categories": dict(categories),
                "version": self.version + 1,
            }
        )

    def with_return(self, entry: ReturnEntry, purchase: PurchaseEntry) -> Figures:
        """Returned goods no longer count towards favourite categories; money is netted."""
        spent = self._in(entry.currency)
        categories = Counter(self.categories)
        for sku, quantity in entry.quantities().items():
            category = purchase.category_of(sku)
            if category is not None:
                categories[category] = max(0, categories[category] - quantity)
        return self.model_copy(
            update={
                "return_count": self.return_count + 1,
                "currencies": {
                    **self.currencies,
                    entry.currency: spent.model_copy(
                        update={"refunded": spent.refunded + entry.amount}
                    ),
                },
                "categories": {name: count for name, count in categories.items() if count > 0},
                "version": self.version + 1,
            }
        )

    @property
    def mean_interval_days(self) -> float | None:
        """Mean of the gaps between consecutive purchases.

        The gaps of time-sorted purchases add up to last minus first, so their mean needs
        only the first, the last and the count, whatever order purchases arrive in.
        """
        if self.purchase_count < 2 or not self.first_purchase_at or not self.last_purchase_at:
            return None
        span = self.last_purchase_at - self.first_purchase_at
        return round(span.total_seconds() / 86_400 / (self.purchase_count - 1), 2)

    def favourite_categories(self, top: int = FAVOURITE_CATEGORIES) -> list[CategoryCount]:
        ranked = sorted(self.categories.items(), key=lambda pair: (-pair[1], pair[0]))
        return [CategoryCount(category=name, quantity=count) for name, count in ranked[:top]]


def figures_of(customer_id: str, entries: list[LedgerEntry]) -> Figures:
    """The figures of a whole ledger, folded in the order the entries were recorded."""
    figures = Figures(customer_id=customer_id)
    purchases = {entry.purchase_id: entry for entry in entries if isinstance(entry, PurchaseEntry)}
    for entry in entries:
        if isinstance(entry, PurchaseEntry):
            figures = figures.with_purchase(entry)
        else:
            figures = figures.with_return(entry, purchases[entry.purchase_id])
    return figures


def describe(entry: LedgerEntry) -> dict[str, Any]:
    """Details of a ledger entry for its timeline entry."""
    details: dict[str, Any] = {
        "purchase_id": entry.purchase_id,
        "amount": format(entry.amount, "f"),
        "currency": entry.currency,
    }
    if isinstance(entry, ReturnEntry):
        details["return_id"] = entry.return_id
    else:
        details["channel"] = entry.channel
    return details
