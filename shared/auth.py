"""Bearer tokens with roles, verified locally: signed JWTs and an optional static admin token.

``rapport token mint --role agent --subject alice`` prints a token signed with the
configured secret (``RAPPORT_AUTH_SECRET``).

Every token minted here carries a ``jti`` (a UUID) and an ``exp``. A customer token can
be signed out (``POST /api/v1/portal/sign-out``): :func:`authenticate` then refuses it
with 401 ("this session was signed out") in every service whose app has a revocation
check (``app.state.revocations``, :mod:`shared.revocation`, which the runtime wires).
Staff, service and admin tokens are never checked; a customer token without a ``jti``
(minted before revocation existed) cannot be signed out and works until it expires.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden, Unauthenticated

ISSUER = "rapport"
AUDIENCE = "rapport"
ALGORITHM = "HS256"


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    SERVICE = "service"
    CUSTOMER = "customer"


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]
    customer_id: str | None = None
    token_id: str | None = None  # the token's ``jti``; None for the static admin token
    expires_at: datetime | None = None

    def has_any(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    def ensure_may_access_customer(self, customer_id: str) -> None:
        """Staff and services see every customer; a customer sees only itself."""
        ensure_customer_access(
            customer_id,
            staff=self.has_any(Role.ADMIN, Role.AGENT, Role.SERVICE),
            own_customer_id=self.customer_id,
        )


def ensure_customer_access(
    customer_id: str, *, staff: bool, own_customer_id: str | None, what: str = "data"
) -> None:
    """The one rule for access to a customer's data (403 otherwise): staff, services and
    the system reach every customer; a customer token only its own (``own_customer_id``).
    A route checks the customer its request names with
    :meth:`Principal.ensure_may_access_customer`; a use case that loads something a
    customer owns checks its owner with that method, or with this function when it knows
    the caller as its own actor (complaints). ``what`` names the data in the answer."""
    if staff:
        return
    if own_customer_id != customer_id:
        raise Forbidden(f"a customer token may only access its own customer's {what}")


@dataclass(frozen=True)
class TokenService:
    secret: str
    admin_token: str | None = None

    def mint(
        self,
        subject: str,
        roles: set[Role] | frozenset[Role],
        *,
        customer_id: str | None = None,
        ttl: timedelta = timedelta(hours=12),
    ) -> str:
        if Role.CUSTOMER in roles and not customer_id:
            raise ValueError("a customer token is bound to one customer id")
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "roles": sorted(roles),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
        }
        if customer_id:
            claims["customer_id"] = customer_id
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(subject="admin", roles=frozenset({Role.ADMIN}))
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the token is not valid: {error}") from None
        try:
            roles = frozenset(Role(role) for role in claims.get("roles", []))
        except ValueError:
            raise Unauthenticated("the token names an unknown role") from None
        if not roles:
            raise Unauthenticated("the token grants no role")
        customer_id = claims.get("customer_id")
        if Role.CUSTOMER in roles and not customer_id:
            raise Unauthenticated("a customer token must name its customer")
        token_id = claims.get("jti")
        return Principal(
            subject=str(claims["sub"]),
            roles=roles,
            customer_id=customer_id,
            token_id=str(token_id) if token_id else None,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )


class RevocationCheck(Protocol):
    """Tells whether a token (by its ``jti``) was signed out: :mod:`shared.revocation`."""

    async def is_revoked(self, token_id: str) -> bool: ...


_bearer = HTTPBearer(auto_error=False)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send Authorization: Bearer <token>")
    tokens: TokenService = request.app.state.tokens
    principal = tokens.verify(credentials.credentials)
    if Role.CUSTOMER in principal.roles and principal.token_id is not None:
        revocations: RevocationCheck | None = getattr(request.app.state, "revocations", None)
        if revocations is not None and await revocations.is_revoked(principal.token_id):
            raise Unauthenticated("this session was signed out", reason="signed_out")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require_roles(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that lets through only principals holding one of ``roles``."""
    allowed = ", ".join(roles)

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_any(*roles):
            raise Forbidden(f"this needs one of the roles: {allowed}")
        return principal

    return dependency


AdminPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
StaffPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT))]
ServicePrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.SERVICE))]
AnyPrincipal = CurrentPrincipal
