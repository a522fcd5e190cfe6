"""Contracts and subscriptions, their rules: what a contract says, which dates make sense,
and how a change is described on the timeline (pure: no I/O)."""

from __future__ import annotations

import calendar
import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from shared.errors import Conflict, InvalidInput
from shared.events.customers import ContractStatus, ContractSummary

MAX_CONTRACTS = 100
MAX_EXTENSION_MONTHS = 60

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


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later; the month's last day when it is shorter (31 Jan + 1 →
    28 or 29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def extension_of(contract: Contract, *, months: int | None, until: date | None) -> dict[str, Any]:
    """The changes that extend ``contract`` by ``months`` or to ``until`` (its new end).

    Its end is ``renews_at``, else ``expires_at``; each date it has moves, by the same
    months or by the same number of days as the end, so a contract that renews and expires
    keeps the gap between the two. Only an active contract with an end can be extended,
    and an extension never shortens it.
    """
    if (months is None) == (until is None):
        raise InvalidInput("an extension gives either months or renews_at")
    if contract.status is not ContractStatus.ACTIVE:
        raise Conflict(
            f"contract {contract.contract_id} is {contract.status.value}: "
            "only an active contract can be extended",
            contract_status=contract.status.value,
        )
    end = contract.renews_at or contract.expires_at
    if end is None:  # an active contract always has one; this is a guard for old data
        raise Conflict(f"contract {contract.contract_id} has no end date to extend")
    dates = {
        name: day
        for name in ("renews_at", "expires_at")
        if (day := getattr(contract, name)) is not None
    }
    if months is not None:
        return {name: add_months(day, months) for name, day in dates.items()}
    assert until is not None
    if until <= end:
        raise InvalidInput(f"an extension moves the end ({end}) later, not to {until}")
    shift = timedelta(days=(until - end).days)
    return {name: day + shift for name, day in dates.items()}


def describe_extension(before: Contract, after: Contract) -> str:
    moved = [
        f"{label} {getattr(before, name)} → {getattr(after, name)}"
        for label, name in (("renews", "renews_at"), ("expires", "expires_at"))
        if getattr(before, name) != getattr(after, name)
    ]
    return f"contract {before.product} extended: {', '.join(moved)}"
