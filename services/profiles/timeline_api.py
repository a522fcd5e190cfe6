"""HTTP API of a customer's timeline: everything that happened to the customer.

Staff and services read every customer's; a customer token reads only its own
(self-service). An erased customer's URL answers 410 Gone (problem+json); a merged one's
redirects to the survivor (308).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from services.profiles import timeline as timeline_cases
from services.profiles.api import ERASED_OR_MOVED, Cursor, Limit, ProfilesDep
from services.profiles.timeline_domain import EntryKind, TimelineEntry
from shared.auth import CurrentPrincipal
from shared.pagination import Page, decode_cursor, page_of


class TimelinePage(Page[TimelineEntry]):
    # The wording this page has always published (the OpenAPI document stays as it was).
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


router = APIRouter(prefix="/api/v1")


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
    found = await timeline_cases.read_timeline(
        profiles, customer_id, kinds=kind or (), after=decode_cursor(cursor), limit=limit + 1
    )
    entries, next_cursor = page_of(found, limit, lambda e: (e.occurred_at, e.id))
    return TimelinePage(items=entries, next_cursor=next_cursor)
