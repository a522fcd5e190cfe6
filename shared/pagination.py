"""Opaque cursors for keyset pagination: a position (a time and an id) the client hands back.

A cursor may be bound to the order it was issued for (``scope``), so a cursor from one
sort order is refused in another instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from shared.errors import InvalidInput

Position = tuple[datetime, str]


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
