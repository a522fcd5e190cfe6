"""HTTP API of a customer's interactions: log one, read one, list them.

Staff and services log and read every customer's interactions; a customer token reads
only its own customer's (self-service). An erased customer's URLs answer 410 Gone
(problem+json); a merged one's redirect to the survivor (308).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import Field

from services.profiles import interactions as interaction_cases
from services.profiles.api import ERASED_OR_MOVED, Cursor, Limit, StaffOrService
from services.profiles.interactions import Interactions
from services.profiles.interactions_domain import Interaction, LogInteraction
from shared.auth import CurrentPrincipal, Role
from shared.pagination import Page, decode_cursor, page_of


def get_interactions(request: Request) -> Interactions:
    interactions: Interactions = request.app.state.interactions
    return interactions


InteractionsDep = Annotated[Interactions, Depends(get_interactions)]


class InteractionCreate(LogInteraction):
    """An interaction to log; `agent_id` (or `agent`) defaults to an agent token's subject."""


class InteractionPage(Page[Interaction]):
    # The wording this page has always published (the OpenAPI document stays as it was).
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


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
    found = await interaction_cases.list_interactions(
        interactions, customer_id, decode_cursor(cursor), limit + 1
    )
    items, next_cursor = page_of(found, limit, lambda i: (i.occurred_at, i.id))
    return InteractionPage(items=items, next_cursor=next_cursor)
