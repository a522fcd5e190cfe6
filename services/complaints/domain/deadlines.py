"""A complaint against its SLA: deadlines re-planned, warnings and breaches announced.

A breach escalates the complaint; a resolved complaint is closed once its reopen window
has passed. Deadlines are re-planned when the policy or the calendar changes.
"""

from __future__ import annotations

from datetime import datetime

from services.complaints.domain.lifecycle import close, within_reopen_window
from services.complaints.domain.model import Actor, Change, Complaint, HistoryEntry, Status
from services.complaints.domain.sla import ESCALATION, ClockState, SlaRules
from shared.events.base import EventPayload
from shared.events.complaints import ComplaintSlaBreached, SlaClock, SlaSeverity


def retarget(complaint: Complaint, rules: SlaRules, now: datetime) -> Complaint:
    """The clocks with the targets of the policy that now applies (time used is kept)."""
    policy = rules.policy(complaint.priority, complaint.category)
    calendar = rules.calendar(policy.calendar)
    targets = {
        SlaClock.FIRST_RESPONSE: policy.first_response_minutes * 60.0,
        SlaClock.RESOLUTION: policy.resolution_minutes * 60.0,
    }
    old_calendar = rules.calendar(complaint.calendar)
    clocks: dict[SlaClock, ClockState] = {}
    for name, state in complaint.clocks.items():
        if state.stopped_at is not None:
            clocks[name] = state
            continue
        # Time used so far counts in the calendar it was used under.
        was_running = state.running
        paused = state.paused(now, old_calendar).model_copy(
            update={"target_seconds": targets[name]}
        )
        clocks[name] = paused.resumed(now, calendar, rules.warning_share) if was_running else paused
    return complaint.model_copy(update={"clocks": clocks, "calendar": policy.calendar})


def recompute_deadlines(complaint: Complaint, rules: SlaRules) -> Complaint:
    """Deadlines worked out again under the current calendar (after it changed)."""
    calendar = rules.calendar(complaint.calendar)
    clocks = {
        name: state.planned(calendar, rules.warning_share) if state.stopped_at is None else state
        for name, state in complaint.clocks.items()
    }
    return complaint.model_copy(update={"clocks": clocks})


SYSTEM = Actor(id="sla-watcher")


def fire_alerts(complaint: Complaint, rules: SlaRules, now: datetime) -> Change:
    """Warnings and breaches that are due and not yet announced, each announced once;
    a breach escalates: priority one level up, the escalation team assigned. A resolved
    complaint whose reopen window has passed is closed."""
    events: list[EventPayload] = []
    after = complaint
    for name in SlaClock:
        state = after.clocks[name]
        if not state.running or state.stopped_at is not None:
            continue
        if state.warn_at is not None and state.warn_at <= now and state.warned_at is None:
            after, fired = _alert(after, name, SlaSeverity.WARNING, now, rules)
            events.append(fired)
        state = after.clocks[name]
        if state.due_at is not None and state.due_at <= now and state.breached_at is None:
            after, fired = _alert(after, name, SlaSeverity.BREACH, now, rules)
            events.append(fired)
    if (
        after.status is Status.RESOLVED
        and after.resolved_at is not None
        and not within_reopen_window(after, rules, now)
    ):
        after, closed = close(after, SYSTEM, now)
        events += closed
    return after, events


def _alert(
    complaint: Complaint, name: SlaClock, severity: SlaSeverity, now: datetime, rules: SlaRules
) -> tuple[Complaint, ComplaintSlaBreached]:
    state = complaint.clocks[name]
    due = state.due_at
    assert due is not None
    flag = "warned_at" if severity is SlaSeverity.WARNING else "breached_at"
    clocks = {**complaint.clocks, name: state.model_copy(update={flag: now})}
    entry = HistoryEntry(
        at=now,
        actor=SYSTEM.id,
        kind=f"sla_{severity.value}",
        summary=f"{name.value} SLA {severity.value}",
        details={"clock": name.value, "due_at": due.isoformat()},
    )
    after = complaint.model_copy(
        update={"clocks": clocks, "history": [*complaint.history, entry], "updated_at": now}
    )
    escalated_to: str | None = None
    if severity is SlaSeverity.BREACH:
        raised = ESCALATION[complaint.priority]
        escalated_to = rules.escalation_team
        escalation = HistoryEntry(
            at=now,
            actor=SYSTEM.id,
            kind="escalated",
            summary=f"escalated to {escalated_to}, priority {raised.value}",
            details={"from_priority": complaint.priority.value, "to_priority": raised.value},
        )
        after = after.model_copy(
            update={
                "priority": raised,
                "assigned_team": escalated_to,
                "escalated": True,
                "history": [*after.history, escalation],
            }
        )
        if raised is not complaint.priority:
            after = retarget(after, rules, now)
    event = ComplaintSlaBreached(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        clock=name,
        severity=severity,
        due_at=due,
        detected_at=now,
        priority=after.priority,
        escalated_to=escalated_to,
    )
    return after, event
