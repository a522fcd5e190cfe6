"""What a listing of complaints asks for (a customer lists only its own)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from services.complaints.domain.model import Actor, Status
from shared.errors import InvalidInput
from shared.events.complaints import Priority


class SlaFilter(StrEnum):
    BREACHED = "breached"  # a clock ran out
    AT_RISK = "at_risk"  # past its warning share, not out yet


@dataclass(frozen=True)
class ComplaintQuery:
    """Which complaints a listing asks for (all given criteria hold)."""

    status: Status | None = None
    priority: Priority | None = None
    category: str | None = None
    assignee: str | None = None  # an agent or a team
    customer_id: str | None = None
    sla: SlaFilter | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def for_actor(self, actor: Actor) -> ComplaintQuery:
        """A customer lists only its own complaints."""
        if not actor.is_customer:
            return self
        if self.customer_id not in (None, actor.customer_id):
            raise InvalidInput("a customer token lists only its own complaints")
        return replace(self, customer_id=actor.customer_id)
