"""The complaint record: its parts, its states and the transitions allowed between them.

Also who acts on it (``Actor``), what a rule returns (``Change``), the text limits of
commands, and ``_commented``: how a comment enters the record (on its own, or carried by
a status change).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints.calendar import DEFAULT_CALENDAR
from services.complaints.domain.sla import ClockState
from shared.events.base import Amount, EventPayload
from shared.events.complaints import (
    ComplaintStatus,
    ContactChannel,
    Priority,
    ResolutionType,
    SlaClock,
)

Status = ComplaintStatus
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.OPEN: (Status.ACKNOWLEDGED,),
    Status.ACKNOWLEDGED: (Status.IN_PROGRESS,),
    Status.IN_PROGRESS: (Status.WAITING_ON_CUSTOMER, Status.RESOLVED),
    Status.WAITING_ON_CUSTOMER: (Status.IN_PROGRESS, Status.RESOLVED),
    Status.RESOLVED: (Status.REOPENED, Status.CLOSED),
    Status.REOPENED: (Status.IN_PROGRESS,),
    Status.CLOSED: (Status.REOPENED,),  # only within the reopen window
}
ACTIVE = frozenset(
    {
        Status.OPEN,
        Status.ACKNOWLEDGED,
        Status.IN_PROGRESS,
        Status.WAITING_ON_CUSTOMER,
        Status.REOPENED,
    }
)


class Visibility(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"


class Actor(BaseModel):
    """Who does something: staff or a system (``customer_id`` None), or a customer."""

    model_config = ConfigDict(frozen=True)

    id: str
    customer_id: str | None = None

    @property
    def is_customer(self) -> bool:
        return self.customer_id is not None


class Comment(BaseModel):
    id: str
    author: str
    by_customer: bool = False
    visibility: Visibility
    text: str
    created_at: datetime


class Resolution(BaseModel):
    number: int
    type: ResolutionType
    summary: str
    refund_amount: Amount | None = None
    currency: str | None = None
    purchase_id: str | None = None
    resolved_by: str
    resolved_at: datetime


class Feedback(BaseModel):
    resolution: int
    csat: int
    nps: int | None = None
    comment: str | None = None
    recorded_by: str
    received_at: datetime


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    kind: str
    summary: str
    internal: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class Complaint(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    customer_id: str
    channel: ContactChannel
    category: str
    subject: str
    description: str
    related_purchase_id: str | None = None
    priority: Priority
    status: Status = Status.OPEN
    assigned_agent: str | None = None
    assigned_team: str | None = None
    calendar: str = DEFAULT_CALENDAR
    clocks: dict[SlaClock, ClockState]
    comments: list[Comment] = Field(default_factory=list)
    resolutions: list[Resolution] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    escalated: bool = False
    moved_from: str | None = None
    erased: bool = False
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    version: int = 1

    def allowed(self) -> list[str]:
        return [status.value for status in TRANSITIONS[self.status]]

    def visible_to(self, actor: Actor) -> Complaint:
        """What ``actor`` may see: a customer never sees internal notes."""
        if not actor.is_customer:
            return self
        return self.model_copy(
            update={
                "comments": [c for c in self.comments if c.visibility is Visibility.PUBLIC],
                "history": [h for h in self.history if not h.internal],
            }
        )

    def due(self, clock: SlaClock) -> datetime | None:
        return self.clocks[clock].due_at


Change = tuple[Complaint, list[EventPayload]]


def _commented(
    complaint: Complaint, actor: Actor, visibility: Visibility, text: str, now: datetime
) -> Complaint:
    comment = Comment(
        id=f"cmt_{uuid.uuid4().hex}",
        author=actor.id,
        by_customer=actor.is_customer,
        visibility=visibility,
        text=text,
        created_at=now,
    )
    internal = visibility is Visibility.INTERNAL
    entry = HistoryEntry(
        at=now,
        actor=actor.id,
        kind="internal_note" if internal else "comment",
        summary="internal note added" if internal else "public comment added",
        internal=internal,
        details={"comment_id": comment.id},
    )
    return complaint.model_copy(
        update={
            "comments": [*complaint.comments, comment],
            "history": [*complaint.history, entry],
            "updated_at": now,
        }
    )
