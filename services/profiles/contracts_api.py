"""HTTP API of a customer's contracts and subscriptions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.profiles import contracts
from services.profiles.contracts import ContractBook
from services.profiles.contracts_domain import MAX_EXTENSION_MONTHS, Contract, ContractTerms
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.errors import InvalidInput
from shared.events.customers import ContractStatus

StaffOrService = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT, Role.SERVICE))]


def get_contract_book(request: Request) -> ContractBook:
    book: ContractBook = request.app.state.contracts
    return book


ContractBookDep = Annotated[ContractBook, Depends(get_contract_book)]


class ContractCreate(ContractTerms):
    """A new contract: ``renews_at`` or ``expires_at`` (after ``start_date``) if active."""


class ContractPatch(BaseModel):
    """What may change; ``null`` clears a date. The result must still be valid."""

    model_config = ConfigDict(extra="forbid")

    status: ContractStatus | None = None
    renews_at: date | None = None
    expires_at: date | None = None

    def changes(self) -> dict[str, Any]:
        if "status" in self.model_fields_set and self.status is None:
            raise InvalidInput("status cannot be cleared; set active, cancelled or expired")
        return {name: getattr(self, name) for name in self.model_fields_set}


class ContractExtension(BaseModel):
    """Extend an active contract by ``months``, or to a new ``renews_at`` (its new end)."""

    model_config = ConfigDict(extra="forbid")

    months: int | None = Field(default=None, ge=1, le=MAX_EXTENSION_MONTHS)
    renews_at: date | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.months is None) == (self.renews_at is None):
            raise ValueError("give either months or renews_at")
        return self


class ContractPublic(ContractTerms):
    model_config = ConfigDict(extra="ignore")

    contract_id: str
    customer_id: str
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, contract: Contract) -> ContractPublic:
        return cls.model_validate(contract.model_dump())


router = APIRouter(prefix="/api/v1", tags=["contracts"])


@router.post("/customers/{customer_id}/contracts", status_code=status.HTTP_201_CREATED)
async def create_contract(
    customer_id: str,
    body: ContractCreate,
    book: ContractBookDep,
    response: Response,
    _: StaffOrService,
) -> ContractPublic:
    contract = await contracts.add_contract(book, customer_id, body)
    response.headers["Location"] = (
        f"/api/v1/customers/{customer_id}/contracts/{contract.contract_id}"
    )
    return ContractPublic.of(contract)


@router.get("/customers/{customer_id}/contracts")
async def list_contracts(
    customer_id: str, book: ContractBookDep, principal: CurrentPrincipal
) -> list[ContractPublic]:
    """The customer's contracts, oldest first; a customer may read its own."""
    principal.ensure_may_access_customer(customer_id)
    return [ContractPublic.of(c) for c in await contracts.list_contracts(book, customer_id)]


@router.get("/customers/{customer_id}/contracts/{contract_id}")
async def read_contract(
    customer_id: str, contract_id: str, book: ContractBookDep, principal: CurrentPrincipal
) -> ContractPublic:
    principal.ensure_may_access_customer(customer_id)
    return ContractPublic.of(await contracts.get_contract(book, customer_id, contract_id))


@router.patch("/customers/{customer_id}/contracts/{contract_id}")
async def patch_contract(
    customer_id: str,
    contract_id: str,
    body: ContractPatch,
    book: ContractBookDep,
    _: StaffOrService,
) -> ContractPublic:
    contract = await contracts.change_contract(book, customer_id, contract_id, body.changes())
    return ContractPublic.of(contract)


@router.post(
    "/customers/{customer_id}/contracts/{contract_id}/extensions",
    responses={409: {"description": "the contract is cancelled or expired"}},
)
async def extend_contract(
    customer_id: str,
    contract_id: str,
    body: ContractExtension,
    book: ContractBookDep,
    principal: CurrentPrincipal,
) -> ContractPublic:
    """Extend a subscription: its renewal (and expiry) date moves later, announced as
    ``crm.customer.updated`` with the contracts. A customer may extend its own."""
    principal.ensure_may_access_customer(customer_id)
    contract = await contracts.extend_contract(
        book, customer_id, contract_id, months=body.months, until=body.renews_at
    )
    return ContractPublic.of(contract)
