"""The in-app inbox over HTTP: a customer reads and marks their own messages (the store is
``inbox_store.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from services.notifications.inbox_domain import CURSOR_SCOPE, InboxMessage, InboxPage
from services.notifications.inbox_store import InboxStore
from shared.auth import CurrentPrincipal
from shared.pagination import decode_cursor, page_of


def get_inbox(request: Request) -> InboxStore:
    inbox: InboxStore = request.app.state.inbox
    return inbox


InboxDep = Annotated[InboxStore, Depends(get_inbox)]
CustomerId = Annotated[str, Path(min_length=1, max_length=200)]
MessageId = Annotated[str, Path(min_length=1, max_length=500)]

router = APIRouter(prefix="/api/v1", tags=["inbox"])


@router.get("/customers/{customer_id}/inbox")
async def read_inbox(
    customer_id: CustomerId,
    inbox: InboxDep,
    principal: CurrentPrincipal,
    unread: Annotated[bool, Query(description="only messages not read yet")] = False,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    """The customer's in-app messages, newest first (*self*: a customer token reads only
    its own)."""
    principal.ensure_may_access_customer(customer_id)
    found = await inbox.page(
        customer_id,
        unread_only=unread,
        after=decode_cursor(cursor, CURSOR_SCOPE),
        limit=limit + 1,
    )
    page, next_cursor = page_of(found, limit, lambda m: (m.created_at, m.id), CURSOR_SCOPE)
    return InboxPage(
        items=page, unread_count=await inbox.unread_count(customer_id), next_cursor=next_cursor
    )


class MarkedRead(BaseModel):
    marked: int = Field(description="messages that were unread until now")


@router.post("/customers/{customer_id}/inbox/read-all")
async def mark_all_read(
    customer_id: CustomerId, inbox: InboxDep, principal: CurrentPrincipal
) -> MarkedRead:
    """Mark every message read (*self*)."""
    principal.ensure_may_access_customer(customer_id)
    return MarkedRead(marked=await inbox.mark_all_read(customer_id))


@router.post("/customers/{customer_id}/inbox/{message_id}/read")
async def mark_read(
    customer_id: CustomerId, message_id: MessageId, inbox: InboxDep, principal: CurrentPrincipal
) -> InboxMessage:
    """Mark a message read; doing it again changes nothing (*self*)."""
    principal.ensure_may_access_customer(customer_id)
    return await inbox.mark_read(customer_id, message_id)
