"""Customer satisfaction: CSAT (and optionally NPS) feedback, once per resolution."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints.domain.model import (
    Actor,
    Change,
    Complaint,
    Feedback,
    HistoryEntry,
    Status,
)
from shared.errors import Conflict
from shared.events.complaints import ComplaintFeedbackReceived


class RecordFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csat: int = Field(ge=1, le=5)
    nps: int | None = Field(default=None, ge=0, le=10)
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5_000)] | None = (
        None
    )


def record_feedback(
    complaint: Complaint, command: RecordFeedback, actor: Actor, now: datetime
) -> Change:
    if complaint.status not in (Status.RESOLVED, Status.CLOSED) or not complaint.resolutions:
        raise Conflict(
            "feedback is recorded after the complaint is resolved",
            current_status=complaint.status.value,
        )
    number = complaint.resolutions[-1].number
    if any(given.resolution == number for given in complaint.feedback):
        raise Conflict("feedback for this resolution was already recorded", resolution=number)
    feedback = Feedback(
        resolution=number,
        csat=command.csat,
        nps=command.nps,
        comment=command.comment or None,
        recorded_by=actor.id,
        received_at=now,
    )
    entry = HistoryEntry(
        at=now,
        actor=actor.id,
        kind="feedback",
        summary=f"feedback: CSAT {command.csat}"
        + (f", NPS {command.nps}" if command.nps is not None else ""),
    )
    after = complaint.model_copy(
        update={
            "feedback": [*complaint.feedback, feedback],
            "history": [*complaint.history, entry],
            "updated_at": now,
        }
    )
    event = ComplaintFeedbackReceived(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        csat=feedback.csat,
        nps=feedback.nps,
        comment=feedback.comment,
        received_at=now,
    )
    return after, [event]
