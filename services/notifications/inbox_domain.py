"""The in-app inbox, its model: a message as a customer reads it, and a page of them
(pure: no I/O; kept by ``inbox_store.py``, read over HTTP in ``inbox_api.py``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.notifications.domain import TextDirection
from shared.pagination import NEXT_CURSOR

CURSOR_SCOPE = "inbox"


class InboxMessage(BaseModel):
    id: str
    customer_id: str
    rule: str
    subject: str
    text: str
    locale: str
    direction: TextDirection
    created_at: datetime
    read_at: datetime | None = None

    @property
    def read(self) -> bool:
        return self.read_at is not None


# Not a ``Page[InboxMessage]``: a subclass would put ``unread_count`` after ``next_cursor``
# (pydantic orders inherited fields first), changing the published schema and answers.
class InboxPage(BaseModel):
    items: list[InboxMessage]
    unread_count: int = Field(description="unread messages in the whole inbox")
    next_cursor: str | None = Field(description=NEXT_CURSOR)
