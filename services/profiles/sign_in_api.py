"""HTTP API of the portal's passwordless sign-in (``/api/v1/portal``).

Asking for a link and redeeming it are the only endpoints without a bearer token: they
are how a customer gets one. Asking answers 202 whatever the address, before looking it
up (the work runs after the answer is sent), so neither the answer nor its timing tells
whether an account exists.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from services.profiles import sign_in as cases
from services.profiles.domain import Email, Locale
from services.profiles.sign_in import SignIn
from shared.auth import Principal, Role, require_roles
from shared.events.customers import LocaleTag

log = logging.getLogger(__name__)
# What the event can carry (no private-use or extension subtags).
_LOCALE_TAG: TypeAdapter[str] = TypeAdapter(LocaleTag)


def get_sign_in(request: Request) -> SignIn:
    sign_in: SignIn = request.app.state.sign_in
    return sign_in


SignInDep = Annotated[SignIn, Depends(get_sign_in)]
CustomerPrincipal = Annotated[Principal, Depends(require_roles(Role.CUSTOMER))]


class SignInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email
    locale: Locale | None = Field(
        default=None, description="the portal's language for the e-mail; else the customer's"
    )

    @field_validator("locale")
    @classmethod
    def _fits_the_event(cls, locale: str | None) -> str | None:
        if locale is not None:
            try:
                _LOCALE_TAG.validate_python(locale)
            except ValidationError:
                raise ValueError(f"{locale!r}: name a language such as hr, fa or sr-Latn") from None
        return locale


class SignInAccepted(BaseModel):
    detail: str


class Redemption(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    token: str = Field(
        min_length=1, max_length=1000, description="the `token` of the link's fragment"
    )


class SignInToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the token is valid for")
    customer_id: str


router = APIRouter(prefix="/api/v1/portal", tags=["portal"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"description": "not a sign-in link's token (problem+json, `reason: malformed`)"},
    404: {"description": "an unknown link (problem+json, `reason: unknown`)"},
    410: {
        "description": "the link expired, was used, was withdrawn at sign-out, or its "
        "customer was erased or merged since (problem+json, `reason`: `expired`, `used`, "
        "`withdrawn`, `account_closed`): ask for a new one"
    },
}


@router.post("/sign-in", status_code=status.HTTP_202_ACCEPTED)
async def request_sign_in(
    body: SignInRequest, sign_in: SignInDep, background: BackgroundTasks
) -> SignInAccepted:
    """E-mail a single-use sign-in link to this address, if it is a customer's (no token).

    The answer is the same whether or not the address belongs to anyone. At most a few
    links go to one address per window (`RAPPORT_PROFILES_SIGN_IN_LINKS_PER_WINDOW` per
    `..._SIGN_IN_WINDOW_SECONDS`, 5 per 15 minutes); past that the answer is still 202
    and nothing is sent.
    """
    background.add_task(_send_link, sign_in, body.email, body.locale)
    minutes = max(int(sign_in.link_ttl.total_seconds()) // 60, 1)
    return SignInAccepted(
        detail="if this address belongs to an account, a sign-in link is on its way;"
        f" it works once, for {minutes} minutes"
    )


async def _send_link(sign_in: SignIn, email: str, locale: str | None) -> None:
    try:
        await cases.request_link(sign_in, email, locale)
    except Exception:  # the caller has its answer already; the customer can ask again
        log.exception("a sign-in link could not be sent")


@router.post("/sign-in/redeem", responses=_REFUSED)
async def redeem_sign_in(body: Redemption, sign_in: SignInDep) -> SignInToken:
    """Exchange a sign-in link's token for a customer token (no bearer token); once."""
    signed_in = await cases.redeem(sign_in, body.token)
    return SignInToken(
        access_token=signed_in.access_token,
        expires_in=signed_in.expires_in,
        customer_id=signed_in.customer_id,
    )


@router.post("/sign-out", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(principal: CustomerPrincipal, sign_in: SignInDep) -> Response:
    """Sign out: this token stops working, and the customer's sign-in links not used
    yet are withdrawn.

    Profiles refuses the token at once (401, `reason: signed_out`); complaints,
    notifications and analytics within seconds (they learn it from
    `crm.customer.signed_out`). The customer's other sessions (other tokens) go on.
    """
    assert principal.customer_id is not None  # a customer token names its customer
    await cases.sign_out(sign_in, principal.customer_id, principal.token_id, principal.expires_at)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
