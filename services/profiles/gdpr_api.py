"""HTTP API of a customer's data rights (GDPR): export everything held, erase.

Staff and services export any customer; a customer token exports and erases only itself
(self-service); only an admin erases another customer. An erased customer's URLs answer
410 Gone (problem+json); a merged one's redirect to the survivor (308).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from services.profiles import gdpr as gdpr_cases
from services.profiles.api import ERASED_OR_MOVED
from services.profiles.gdpr import Gdpr
from shared.auth import CurrentPrincipal, Role
from shared.errors import Forbidden


def get_gdpr(request: Request) -> Gdpr:
    gdpr: Gdpr = request.app.state.gdpr
    return gdpr


GdprDep = Annotated[Gdpr, Depends(get_gdpr)]

router = APIRouter(prefix="/api/v1")


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
