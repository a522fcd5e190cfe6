"""HTTP API of what happens around a customer: interactions, timeline, consents, and the
customer's data rights (export, erasure).

Staff and services reach every customer; a customer token reaches only its own customer
(self-service): it reads its interactions, timeline and consents, changes its consents
(recorded with source ``self-service``), exports and erases itself. An erased customer's
URLs answer 410 Gone (problem+json); a merged one's redirect to the survivor (308).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.profiles import consents as consent_cases
from services.profiles import gdpr as gdpr_cases
from services.profiles import handlers
from services.profiles import interactions as interaction_cases
from services.profiles.api import ProfilesDep
from services.profiles.consents import (
    SELF_SERVICE,
    ConsentDecision,
    ConsentOverview,
    Consents,
)
from services.profiles.gdpr import Gdpr
from services.profiles.interactions import Interaction, Interactions, LogInteraction
from services.profiles.timeline import EntryKind, TimelineEntry
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.errors import Forbidden, InvalidInput
from shared.events.customers import Channel, Purpose
from shared.pagination import decode_cursor, encode_cursor

StaffOrService = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT, Role.SERVICE))]
Cursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page", max_length=500)
]
Limit = Annotated[int, Query(ge=1, le=200)]
ERASED_OR_MOVED: dict[int | str, dict[str, Any]] = {
    308: {"description": "merged into another customer: the same URL of the survivor"},
    410: {"description": "the customer was erased (problem+json)"},
}


def get_interactions(request: Request) -> Interactions:
    interactions: Interactions = request.app.state.interactions
    return interactions


def get_consents(request: Request) -> Consents:
    consents: Consents = request.app.state.consents
    return consents


def get_gdpr(request: Request) -> Gdpr:
    gdpr: Gdpr = request.app.state.gdpr
    return gdpr


InteractionsDep = Annotated[Interactions, Depends(get_interactions)]
ConsentsDep = Annotated[Consents, Depends(get_consents)]
GdprDep = Annotated[Gdpr, Depends(get_gdpr)]


class InteractionCreate(LogInteraction):
    """An interaction to log; `agent_id` (or `agent`) defaults to an agent token's subject."""


class InteractionPage(BaseModel):
    items: list[Interaction]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    granted: bool
    source: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="where the decision was given (web form, call, paper); required for "
        "staff and services, always `self-service` for a customer's own token",
    )


router = APIRouter(prefix="/api/v1")


@router.post(
    "/customers/{customer_id}/interactions",
    status_code=status.HTTP_201_CREATED,
    tags=["interactions"],
    responses=ERASED_OR_MOVED,
)
async def log_interaction(
    customer_id: str,
    body: InteractionCreate,
    interactions: InteractionsDep,
    principal: StaffOrService,
    response: Response,
) -> Interaction:
    command = body
    if command.agent_id is None and principal.has_any(Role.AGENT):
        command = body.model_copy(update={"agent_id": principal.subject})
    interaction = await interaction_cases.log_interaction(
        interactions, customer_id, command, recorded_by=principal.subject
    )
    response.headers["Location"] = f"/api/v1/customers/{customer_id}/interactions/{interaction.id}"
    return interaction


@router.get(
    "/customers/{customer_id}/interactions/{interaction_id}",
    tags=["interactions"],
    responses=ERASED_OR_MOVED,
)
async def read_interaction(
    customer_id: str,
    interaction_id: str,
    interactions: InteractionsDep,
    principal: CurrentPrincipal,
) -> Interaction:
    principal.ensure_may_access_customer(customer_id)
    return await interaction_cases.get_interaction(interactions, customer_id, interaction_id)


@router.get(
    "/customers/{customer_id}/interactions",
    tags=["interactions"],
    responses=ERASED_OR_MOVED,
)
async def list_interactions(
    customer_id: str,
    interactions: InteractionsDep,
    principal: CurrentPrincipal,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> InteractionPage:
    """The customer's interactions, newest first."""
    principal.ensure_may_access_customer(customer_id)
    items = await interaction_cases.list_interactions(
        interactions, customer_id, decode_cursor(cursor), limit + 1
    )
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if more else None
    return InteractionPage(
        items=items, next_cursor=None if last is None else encode_cursor(last.occurred_at, last.id)
    )


@router.get("/customers/{customer_id}/timeline", tags=["timeline"], responses=ERASED_OR_MOVED)
async def read_timeline(
    customer_id: str,
    profiles: ProfilesDep,
    principal: CurrentPrincipal,
    kind: Annotated[
        list[EntryKind] | None, Query(description="only these kinds (repeatable)")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> TimelinePage:
    """Everything that happened to the customer, newest first."""
    principal.ensure_may_access_customer(customer_id)
    customer = await handlers.get_customer(profiles, customer_id)
    entries = await profiles.timeline.page(
        customer.id, kinds=kind or (), after=decode_cursor(cursor), limit=limit + 1
    )
    more = len(entries) > limit
    entries = entries[:limit]
    last = entries[-1] if more else None
    return TimelinePage(
        items=entries,
        next_cursor=None if last is None else encode_cursor(last.occurred_at, last.id),
    )


@router.get("/customers/{customer_id}/consents", tags=["consents"], responses=ERASED_OR_MOVED)
async def read_consents(
    customer_id: str, consents: ConsentsDep, principal: CurrentPrincipal
) -> ConsentOverview:
    """The decision for every channel and purpose, and the history of changes (newest first)."""
    principal.ensure_may_access_customer(customer_id)
    return await consent_cases.read_consents(consents, customer_id)


@router.put(
    "/customers/{customer_id}/consents/{channel}/{purpose}",
    tags=["consents"],
    responses=ERASED_OR_MOVED,
)
async def set_consent(
    customer_id: str,
    channel: Channel,
    purpose: Purpose,
    body: ConsentUpdate,
    consents: ConsentsDep,
    principal: CurrentPrincipal,
) -> ConsentDecision:
    """Grant or withdraw; setting what is already recorded changes nothing."""
    principal.ensure_may_access_customer(customer_id)
    if principal.has_any(Role.ADMIN, Role.AGENT, Role.SERVICE):
        if body.source is None:
            raise InvalidInput("say where the decision comes from: `source`")
        source = body.source
    else:
        source = SELF_SERVICE
    return await consent_cases.set_consent(
        consents,
        customer_id,
        channel,
        purpose,
        granted=body.granted,
        source=source,
        changed_by=principal.subject,
    )


@router.get(
    "/customers/{customer_id}/export",
    tags=["gdpr"],
    responses={
        **ERASED_OR_MOVED,
        200: {"description": "everything held about the customer, as a JSON attachment"},
    },
)
async def export_customer(
    customer_id: str, gdpr: GdprDep, principal: CurrentPrincipal, response: Response
) -> dict[str, object]:
    """The profile, consents, interactions, timeline, ledger and contracts of the customer."""
    principal.ensure_may_access_customer(customer_id)
    export = await gdpr_cases.export_customer(gdpr, customer_id)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="customer-{export["customer_id"]}.json"'
    )
    return export


@router.delete(
    "/customers/{customer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["gdpr"],
    responses=ERASED_OR_MOVED,
)
async def erase_customer(customer_id: str, gdpr: GdprDep, principal: CurrentPrincipal) -> None:
    """Erase the customer's personal data (admin, or the customer itself).

    The id stays known: afterwards this customer's URLs answer 410 Gone.
    """
    if not principal.has_any(Role.ADMIN):
        if not principal.has_any(Role.CUSTOMER):
            raise Forbidden("only an admin or the customer itself may erase a customer")
        principal.ensure_may_access_customer(customer_id)
    await gdpr_cases.erase_customer(gdpr, customer_id)
