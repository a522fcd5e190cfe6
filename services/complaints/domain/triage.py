"""Triage: who handles a complaint, and its priority and category.

A new priority or category brings the SLA targets of the policy that then applies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.complaints.domain.deadlines import retarget
from services.complaints.domain.model import Actor, Change, Complaint, HistoryEntry, Status, Text
from services.complaints.domain.sla import SlaRules
from shared.errors import Conflict
from shared.events.complaints import Priority


def assign(
    complaint: Complaint, actor: Actor, now: datetime, agent: str | None, team: str | None
) -> Change:
    if complaint.status is Status.CLOSED:
        raise Conflict("the complaint is closed", current_status=complaint.status.value, allowed=[])
    entry = HistoryEntry(
        at=now,
        actor=actor.id,
        kind="assigned",
        summary=f"assigned to {agent or '-'} / team {team or '-'}",
        details={"agent": agent, "team": team},
    )
    after = complaint.model_copy(
        update={
            "assigned_agent": agent,
            "assigned_team": team,
            "history": [*complaint.history, entry],
            "updated_at": now,
        }
    )
    return after, []


class Reclassify(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority | None = None
    category: Text | None = None


def reclassify(
    complaint: Complaint, command: Reclassify, actor: Actor, rules: SlaRules, now: datetime
) -> Change:
    if complaint.status is Status.CLOSED:
        raise Conflict("the complaint is closed", current_status=complaint.status.value, allowed=[])
    entries: list[HistoryEntry] = []
    changes: dict[str, Any] = {}
    for field in ("priority", "category"):
        new = getattr(command, field)
        old = getattr(complaint, field)
        if new is not None and new != old:
            changes[field] = new
            entries.append(
                HistoryEntry(
                    at=now,
                    actor=actor.id,
                    kind=field,
                    summary=f"{field} changed from {old} to {new}",
                    details={"from": str(old), "to": str(new)},
                )
            )
    if not changes:
        return complaint, []
    after = complaint.model_copy(
        update={**changes, "history": [*complaint.history, *entries], "updated_at": now}
    )
    return retarget(after, rules, now), []
