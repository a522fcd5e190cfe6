"""A complaint's conversation: public comments and internal notes.

A customer's reply while the complaint waits on them hands it back to the team.
"""

from __future__ import annotations

from datetime import datetime

from services.complaints.domain.lifecycle import change_status
from services.complaints.domain.model import (
    Actor,
    Change,
    Complaint,
    Status,
    Visibility,
    _commented,
)
from services.complaints.domain.sla import SlaRules
from shared.errors import Conflict, Forbidden
from shared.events.complaints import ComplaintReplied


def comment(
    complaint: Complaint,
    actor: Actor,
    visibility: Visibility,
    text: str,
    rules: SlaRules,
    now: datetime,
) -> Change:
    """A public comment or an internal note. A customer's reply while the complaint
    waits on them hands it back to the team (and restarts the resolution clock)."""
    if actor.is_customer and visibility is Visibility.INTERNAL:
        raise Forbidden("a customer may only add public comments")
    if complaint.status is Status.CLOSED:
        raise Conflict("the complaint is closed", current_status=complaint.status.value, allowed=[])
    if actor.is_customer and complaint.status is Status.WAITING_ON_CUSTOMER:
        after, events = change_status(complaint, Status.IN_PROGRESS, actor, rules, now)
        return _commented(after, actor, visibility, text, now), events
    after = _commented(complaint, actor, visibility, text, now)
    if actor.is_customer or visibility is Visibility.INTERNAL:
        return after, []
    reply = ComplaintReplied(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        comment_id=after.comments[-1].id,
        agent_id=actor.id,
        public_comment=text,
        replied_at=now,
    )
    return after, [reply]
