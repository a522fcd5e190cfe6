"""HTTP API of a customer's consents: read them, grant or withdraw one.

Staff and services reach every customer, and say where a decision comes from; a customer
token reaches only its own customer (self-service) and its changes are recorded with
source ``self-service``. An erased customer's URLs answer 410 Gone (problem+json); a
merged one's redirect to the survivor (308).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.profiles import consents as consent_cases
from services.profiles.api import ERASED_OR_MOVED
from services.profiles.consents import Consents
from services.profiles.consents_domain import SELF_SERVICE, ConsentDecision, ConsentOverview
from shared.auth import CurrentPrincipal, Role
from shared.errors import InvalidInput
from shared.events.customers import Channel, Purpose


def get_consents(request: Request) -> Consents:
    consents: Consents = request.app.state.consents
    return consents


ConsentsDep = Annotated[Consents, Depends(get_consents)]


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    granted: bool
    source: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="where the decision was given (web form, call, paper); required for "
        "staff and services, always `self-service` for a customer's own token",
    )


router = APIRouter(prefix="/api/v1")


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
