"""Endpoints every service has under ``/api/v1``: who am I, and the outbox's state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from shared.auth import AdminPrincipal, CurrentPrincipal


class PrincipalPublic(BaseModel):
    subject: str
    roles: list[str]
    customer_id: str | None


class OutboxStatus(BaseModel):
    service: str
    pending: int


router = APIRouter(prefix="/api/v1", tags=["operations"])


@router.get("/me", summary="The principal the bearer token stands for")
async def me(principal: CurrentPrincipal) -> PrincipalPublic:
    return PrincipalPublic(
        subject=principal.subject,
        roles=sorted(principal.roles),
        customer_id=principal.customer_id,
    )


@router.get("/outbox", summary="Events stored but not yet published (admin)")
async def outbox_status(request: Request, _: AdminPrincipal) -> OutboxStatus:
    runtime = request.app.state.runtime
    return OutboxStatus(
        service=runtime.settings.service_name, pending=await runtime.relay.pending_count()
    )
