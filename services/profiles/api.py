"""HTTP API of the profiles service: parse, call a use case, shape the answer.

The customers' own routes, and what the routers of the other capabilities share: the
profiles dependency, the public shape of a customer, paging and the answers of a
customer's sub-resources.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from services.profiles import handlers
from services.profiles.domain import (
    Attributes,
    Birthday,
    Customer,
    CustomerQuery,
    CustomerSort,
    Emails,
    ExternalIds,
    Locale,
    Name,
    Phones,
    ProfileFields,
    Tags,
    TimeZone,
)
from services.profiles.handlers import CustomerMoved, Profiles
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.errors import Forbidden, InvalidInput
from shared.events.customers import PostalAddress
from shared.http import problem
from shared.pagination import Page, cursor_after, decode_cursor

StaffOrService = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT, Role.SERVICE))]
# Paging and the answers of a customer's sub-resources, shared by the routers of the
# interactions, timeline, consents and data rights (interactions_api, timeline_api, ...).
Cursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page", max_length=500)
]
Limit = Annotated[int, Query(ge=1, le=200)]
ERASED_OR_MOVED: dict[int | str, dict[str, Any]] = {
    308: {"description": "merged into another customer: the same URL of the survivor"},
    410: {"description": "the customer was erased (problem+json)"},
}
# What a customer may change on its own profile (self-service); the rest is staff's.
SELF_SERVICE_FIELDS = frozenset(
    {
        "given_name",
        "family_name",
        "preferred_name",
        "emails",
        "phones",
        "address",
        "locale",
        "time_zone",
        "birthday",
    }
)


def get_profiles(request: Request) -> Profiles:
    profiles: Profiles = request.app.state.profiles
    return profiles


ProfilesDep = Annotated[Profiles, Depends(get_profiles)]


class CustomerCreate(ProfileFields):
    """A new customer profile."""


class CustomerPatch(BaseModel):
    """Fields to change; fields left out stay as they are, ``null`` clears one."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    given_name: Name | None = None
    family_name: Name | None = None
    preferred_name: Name | None = None
    emails: Emails | None = None
    phones: Phones | None = None
    address: PostalAddress | None = None
    locale: Locale | None = None
    time_zone: TimeZone | None = None
    birthday: Birthday | None = None
    tags: Tags | None = None
    external_ids: ExternalIds | None = None
    attributes: Attributes | None = None

    def changes(self) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:  # clearing a field means its default
                value = ProfileFields.model_fields[name].get_default(call_default_factory=True)
            changes[name] = value.model_dump() if isinstance(value, BaseModel) else value
        return changes


class CustomerPublic(ProfileFields):
    model_config = ConfigDict(extra="ignore")

    id: str
    display_name: str
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, customer: Customer) -> CustomerPublic:
        return cls.model_validate({**customer.model_dump(), "display_name": customer.display_name})


class CustomerPage(Page[CustomerPublic]):
    pass


router = APIRouter(prefix="/api/v1", tags=["customers"])


def _with_etag(response: Response, customer: Customer) -> CustomerPublic:
    response.headers["ETag"] = customer.etag
    return CustomerPublic.of(customer)


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise InvalidInput(f"If-Match {if_match!r} is not an ETag this API issued")
    return int(tag)


@router.post(
    "/customers",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "the e-mail, phone or external id belongs to another"}},
)
async def create_customer(
    body: CustomerCreate, profiles: ProfilesDep, response: Response, _: StaffOrService
) -> CustomerPublic:
    customer = await handlers.register_customer(profiles, body)
    response.headers["Location"] = f"/api/v1/customers/{customer.id}"
    return _with_etag(response, customer)


@router.get("/customers/{customer_id}", responses={308: {"description": "merged into another"}})
async def read_customer(
    customer_id: str, profiles: ProfilesDep, response: Response, principal: CurrentPrincipal
) -> CustomerPublic:
    principal.ensure_may_access_customer(customer_id)
    return _with_etag(response, await handlers.get_customer(profiles, customer_id))


@router.patch(
    "/customers/{customer_id}",
    responses={412: {"description": "If-Match names a stale version"}},
)
async def patch_customer(
    customer_id: str,
    body: CustomerPatch,
    profiles: ProfilesDep,
    response: Response,
    principal: CurrentPrincipal,
    if_match: Annotated[str | None, Header()] = None,
) -> CustomerPublic:
    principal.ensure_may_access_customer(customer_id)
    changes = body.changes()
    if not principal.has_any(Role.ADMIN, Role.AGENT, Role.SERVICE):
        refused = sorted(set(changes) - SELF_SERVICE_FIELDS)
        if refused:
            raise Forbidden(f"a customer may not change: {', '.join(refused)}")
    customer = await handlers.update_customer(
        profiles, customer_id, changes, _expected_version(if_match)
    )
    return _with_etag(response, customer)


@router.get("/customers")
async def list_customers(
    profiles: ProfilesDep,
    _: StaffOrService,
    email: Annotated[str | None, Query(max_length=320)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    external_id: Annotated[
        str | None, Query(description="`system:id`, e.g. `shopify:1234`", max_length=300)
    ] = None,
    name_prefix: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    sort: Annotated[
        CustomerSort, Query(description="`-` first for newest first (the default)")
    ] = CustomerSort.NEWEST_CREATED,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CustomerPage:
    query = CustomerQuery.parse(
        email=email,
        phone=phone,
        tag=tag,
        external_id=external_id,
        name_prefix=name_prefix,
        created_after=created_after,
        created_before=created_before,
    )
    customers, more = await handlers.list_customers(
        profiles, query, sort, decode_cursor(cursor, sort.value), limit
    )
    next_cursor = cursor_after(
        customers, more, lambda c: (getattr(c, sort.field), c.id), sort.value
    )
    return CustomerPage(items=[CustomerPublic.of(c) for c in customers], next_cursor=next_cursor)


class DuplicatePublic(BaseModel):
    customer: CustomerPublic
    score: float = Field(description="0-100: how likely it is the same person")
    reasons: list[str]


@router.get("/customers/{customer_id}/duplicates")
async def list_duplicates(
    customer_id: str, profiles: ProfilesDep, _: StaffOrService
) -> list[DuplicatePublic]:
    """Profiles that are probably the same person (candidates for a merge)."""
    duplicates = await handlers.find_duplicates(profiles, customer_id)
    return [
        DuplicatePublic(customer=CustomerPublic.of(d.customer), score=d.score, reasons=d.reasons)
        for d in duplicates
    ]


async def redirect_moved(request: Request, error: Exception) -> Response:
    """A merged profile's URLs lead to the surviving profile (308 keeps the method)."""
    assert isinstance(error, CustomerMoved)
    if error.customer_id not in request.url.path:  # named in the body: nowhere to redirect
        return problem(409, "Conflict", str(error), merged_into=error.target_id)
    location = request.url.path.replace(error.customer_id, error.target_id, 1)
    return RedirectResponse(location, status_code=status.HTTP_308_PERMANENT_REDIRECT)
