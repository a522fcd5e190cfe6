"""Events on ``crm.purchases``: what customers buy and bring back."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import EmailStr, Field, model_validator

from shared.events.base import (
    PERSONAL,
    CurrencyCode,
    EventPayload,
    Identifier,
    NonNegativeAmount,
    Record,
    ShortText,
    Timestamp,
)
from shared.topics import PURCHASES

# A line's quantity: at least one, and a bound that sums of many still fit a 64-bit integer.
MAX_QUANTITY = 1_000_000_000
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class PurchaseItem(Record):
    sku: Identifier
    name: ShortText
    category: ShortText
    quantity: Quantity
    unit_price: NonNegativeAmount


class PurchaseCompleted(EventPayload):
    """A sale in any channel. Other systems (shops, POS) publish it with any Kafka client.

    The customer is named by ``customer_id``; a system that does not know Rapport's id
    may instead give ``customer_email`` or ``customer_external_id`` (then the profiles
    service resolves the customer).
    """

    event_type = "crm.purchase.completed"
    topic = PURCHASES

    purchase_id: Identifier
    customer_id: Identifier | None = None
    customer_email: Annotated[EmailStr | None, PERSONAL] = None
    customer_external_id: Annotated[ShortText | None, PERSONAL] = None
    items: list[PurchaseItem] = Field(min_length=1)
    total_amount: NonNegativeAmount
    currency: CurrencyCode
    channel: ShortText
    purchased_at: Timestamp | None = None

    @model_validator(mode="after")
    def _identifies_customer(self) -> Self:
        if not (self.customer_id or self.customer_email or self.customer_external_id):
            raise ValueError(
                "a purchase names its customer: customer_id, customer_email or customer_external_id"
            )
        return self

    def customer_key(self) -> str:
        return self.customer_id or self.customer_email or self.customer_external_id or ""


class ReturnedItem(Record):
    sku: Identifier
    quantity: Quantity
    unit_price: NonNegativeAmount | None = None


class PurchaseReturned(EventPayload):
    event_type = "crm.purchase.returned"
    topic = PURCHASES

    return_id: Identifier
    purchase_id: Identifier
    customer_id: Identifier
    items: list[ReturnedItem] = Field(default_factory=list)
    refund_amount: NonNegativeAmount
    currency: CurrencyCode
    reason: ShortText | None = None
    returned_at: Timestamp | None = None
