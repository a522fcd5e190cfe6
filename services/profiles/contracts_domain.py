"""Contracts and subscriptions, their rules: what a contract says, which dates make sense,
and how a change is described on the timeline (pure: no I/O)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from shared.errors import InvalidInput
from shared.events.customers import ContractStatus, ContractSummary

MAX_CONTRACTS = 100

Product = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ContractTerms(BaseModel):
    """What a contract says; the dates are calendar days."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    product: Product
    start_date: date
    renews_at: date | None = None
    expires_at: date | None = None
    status: ContractStatus = ContractStatus.ACTIVE
    auto_renew: bool = False
    external_reference: Reference | None = None

    @model_validator(mode="after")
    def _dates_make_sense(self) -> Self:
        for name in ("renews_at", "expires_at"):
            day = getattr(self, name)
            if day is not None and day <= self.start_date:
                raise ValueError(f"{name} must be after start_date")
        if self.status is ContractStatus.ACTIVE and not (self.renews_at or self.expires_at):
            raise ValueError("an active contract needs renews_at or expires_at")
        return self


class Contract(ContractTerms):
    model_config = ConfigDict(extra="ignore")

    contract_id: str
    customer_id: str
    created_at: datetime
    updated_at: datetime
    version: int = 1

    def summary(self) -> ContractSummary:
        return ContractSummary(
            contract_id=self.contract_id,
            product=self.product,
            status=self.status,
            renews_at=self.renews_at,
            expires_at=self.expires_at,
            auto_renew=self.auto_renew,
        )

    def with_changes(self, changes: dict[str, Any], now: datetime) -> Contract:
        terms = _validated({**self.model_dump(include=set(ContractTerms.model_fields)), **changes})
        return self.model_copy(
            update={**terms.model_dump(), "updated_at": now, "version": self.version + 1}
        )

    def describe_change(self, after: Contract) -> str:
        changes = [
            f"{name} {_show(getattr(self, name))} → {_show(getattr(after, name))}"
            for name in ContractTerms.model_fields
            if getattr(self, name) != getattr(after, name)
        ]
        return f"contract {self.product} changed: {', '.join(changes)}"


def _show(value: object) -> str:
    return "none" if value is None else str(value)


def _validated(fields: dict[str, Any]) -> ContractTerms:
    try:
        return ContractTerms.model_validate(fields)
    except ValidationError as error:
        problems = [
            {
                "field": ".".join(str(part) for part in item["loc"]) or "contract",
                "message": item["msg"],
            }
            for item in error.errors(include_url=False)
        ]
        raise InvalidInput("the contract's terms are not valid", errors=problems) from None


def new_contract(customer_id: str, terms: ContractTerms, now: datetime) -> Contract:
    return Contract(
        contract_id=f"con_{uuid.uuid4().hex}",
        customer_id=customer_id,
        created_at=now,
        updated_at=now,
        **terms.model_dump(),
    )


def describe_new(contract: Contract) -> str:
    dates = [
        f"{label} {day}"
        for label, day in (("renews", contract.renews_at), ("expires", contract.expires_at))
        if day is not None
    ]
    suffix = f" ({', '.join(dates)})" if dates else ""
    return f"contract added: {contract.product}{suffix}"
