"""Keyset pagination: opaque cursors, the page every list endpoint answers, and its builder.

A cursor is a position (a time and an id) the client hands back. It may be bound to the
order it was issued for (``scope``), so a cursor from one sort order is refused in another
instead of silently skipping rows.

A list endpoint asks its use case for one item more than the page holds (``limit + 1``)
and hands what it found to ``page_of``, which cuts the page and, when there was more,
encodes the last item's position as the next page's cursor. ``Page[T]`` is the answer;
each endpoint subclasses it so its OpenAPI schema keeps its own name
(``class ComplaintPage(Page[ComplaintPublic])``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from shared.errors import InvalidInput

Position = tuple[datetime, str]
T = TypeVar("T")

NEXT_CURSOR = "pass as `cursor` to get the next page; null on the last page"


class Page(BaseModel, Generic[T]):
    """One page of a listing and the cursor of the next one."""

    items: list[T]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


def encode_cursor(moment: datetime, item_id: str, scope: str = "") -> str:
    raw = json.dumps([scope, moment.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, scope: str = "") -> Position | None:
    """The position a cursor stands for; None for the first page; 422 when not ours."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        issued_for, moment, item_id = json.loads(base64.urlsafe_b64decode(padded))
        position = datetime.fromisoformat(moment), str(item_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("cursor is not one this API issued") from None
    if position[0].tzinfo is None:
        raise InvalidInput("cursor is not one this API issued")
    if issued_for != scope:
        raise InvalidInput(f"this cursor belongs to sort={issued_for}; keep the sort while paging")
    return position


def page_of(
    found: Sequence[T], limit: int, position: Callable[[T], Position], scope: str = ""
) -> tuple[list[T], str | None]:
    """The page in ``found`` (fetched with ``limit + 1``) and the cursor of the next page:
    the position of the page's last item when ``found`` held more, else None."""
    page = list(found[:limit])
    return page, cursor_after(page, len(found) > limit, position, scope)


def cursor_after(
    page: Sequence[T], more: bool, position: Callable[[T], Position], scope: str = ""
) -> str | None:
    """The cursor of the page after ``page``, for a use case that cut the page itself and
    says whether there are more; None on the last page."""
    if not more or not page:
        return None
    moment, item_id = position(page[-1])
    return encode_cursor(moment, item_id, scope)
