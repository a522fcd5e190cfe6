"""Complaints domain: a complaint's lifecycle, conversation and feedback (its SLA clocks:
``sla``).

Pure: no I/O. Every rule takes the complaint as it is and returns the complaint as it
becomes together with the event payloads announcing the change; the use cases store both
in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints.calendar import DEFAULT_CALENDAR
from services.complaints.sla import (
    ESCALATION,
    ClockState,
    SlaPolicy,
    SlaRules,
)
from shared.errors import Conflict, Forbidden, InvalidInput
from shared.events.base import Amount, EventPayload
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintReplied,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintStatus,
    ComplaintStatusChanged,
    ContactChannel,
    Priority,
    ResolutionType,
    SlaClock,
    SlaSeverity,
)

Status = ComplaintStatus
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ERASED_TEXT = "[erased]"

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
MONEY_RESOLUTIONS = frozenset({ResolutionType.REFUND, ResolutionType.RETURN})


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


def new_complaint_id() -> str:
    return f"cmp_{uuid.uuid4().hex}"


class OpenComplaint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: Ref
    channel: ContactChannel
    category: Text
    subject: Text
    description: LongText
    related_purchase_id: Ref | None = None
    priority: Priority = Priority.NORMAL


def _start_clocks(policy: SlaPolicy, rules: SlaRules, now: datetime) -> dict[SlaClock, ClockState]:
    calendar = rules.calendar(policy.calendar)
    targets = {
        SlaClock.FIRST_RESPONSE: policy.first_response_minutes * 60.0,
        SlaClock.RESOLUTION: policy.resolution_minutes * 60.0,
    }
    return {
        clock: ClockState(target_seconds=target, running_since=now).planned(
            calendar, rules.warning_share
        )
        for clock, target in targets.items()
    }


def open_complaint(command: OpenComplaint, actor: Actor, rules: SlaRules, now: datetime) -> Change:
    if actor.is_customer and actor.customer_id != command.customer_id:
        raise Forbidden("a customer token may only open complaints for its own customer")
    policy = rules.policy(command.priority, command.category)
    complaint = Complaint(
        id=new_complaint_id(),
        **command.model_dump(),
        calendar=policy.calendar,
        clocks=_start_clocks(policy, rules, now),
        created_at=now,
        updated_at=now,
        history=[HistoryEntry(at=now, actor=actor.id, kind="opened", summary="complaint opened")],
    )
    event = ComplaintOpened(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        channel=complaint.channel,
        category=complaint.category,
        subject=complaint.subject,
        description=complaint.description,
        priority=complaint.priority,
        related_purchase_id=complaint.related_purchase_id,
        first_response_due_at=complaint.due(SlaClock.FIRST_RESPONSE),
        resolution_due_at=complaint.due(SlaClock.RESOLUTION),
        opened_at=now,
    )
    return complaint, [event]


def _check_transition(complaint: Complaint, to: Status) -> None:
    if to not in TRANSITIONS[complaint.status]:
        allowed = complaint.allowed()
        raise Conflict(
            f"a complaint that is {complaint.status.value} cannot become {to.value};"
            f" allowed: {', '.join(allowed) or 'none'}",
            current_status=complaint.status.value,
            allowed=allowed,
        )


def _moved(
    complaint: Complaint,
    to: Status,
    actor: Actor,
    now: datetime,
    summary: str,
    **details: Any,
) -> Complaint:
    entry = HistoryEntry(
        at=now,
        actor=actor.id,
        kind="status",
        summary=summary,
        details={"from": complaint.status.value, "to": to.value, **details},
    )
    return complaint.model_copy(
        update={
            "status": to,
            "updated_at": now,
            "history": [*complaint.history, entry],
        }
    )


def _with_clocks(complaint: Complaint, **changes: ClockState) -> dict[SlaClock, ClockState]:
    clocks = dict(complaint.clocks)
    for name, state in changes.items():
        clocks[SlaClock(name)] = state
    return clocks


def acknowledge(complaint: Complaint, actor: Actor, rules: SlaRules, now: datetime) -> Change:
    _check_transition(complaint, Status.ACKNOWLEDGED)
    calendar = rules.calendar(complaint.calendar)
    first = complaint.clocks[SlaClock.FIRST_RESPONSE].stopped(now, calendar)
    after = _moved(complaint, Status.ACKNOWLEDGED, actor, now, "acknowledged").model_copy(
        update={
            "clocks": _with_clocks(complaint, first_response=first),
            "assigned_agent": complaint.assigned_agent or actor.id,
        }
    )
    event = ComplaintAcknowledged(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        acknowledged_at=now,
        agent_id=actor.id,
    )
    return after, [event]


WORKING_STATES = (Status.IN_PROGRESS, Status.WAITING_ON_CUSTOMER)


def change_status(
    complaint: Complaint,
    to: Status,
    actor: Actor,
    rules: SlaRules,
    now: datetime,
    public_comment: str | None = None,
) -> Change:
    """Between in progress and waiting on the customer; the resolution clock pauses
    while the customer has the ball."""
    if to not in WORKING_STATES:
        raise InvalidInput(
            f"use the {to.value} action for that; this moves to in_progress or waiting_on_customer"
        )
    _check_transition(complaint, to)
    calendar = rules.calendar(complaint.calendar)
    resolution = complaint.clocks[SlaClock.RESOLUTION]
    resolution = (
        resolution.paused(now, calendar)
        if to is Status.WAITING_ON_CUSTOMER
        else resolution.resumed(now, calendar, rules.warning_share)
    )
    after = _moved(complaint, to, actor, now, f"now {to.value}").model_copy(
        update={"clocks": _with_clocks(complaint, resolution=resolution)}
    )
    if public_comment:
        after = _commented(after, actor, Visibility.PUBLIC, public_comment, now)
    event = ComplaintStatusChanged(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        from_status=complaint.status,
        to_status=to,
        changed_at=now,
        public_comment=public_comment,
    )
    return after, [event]


class Resolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution_type: ResolutionType
    summary: LongText
    refund_amount: Annotated[Amount, Field(ge=0)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    purchase_id: Ref | None = None


def resolve(
    complaint: Complaint, command: Resolve, actor: Actor, rules: SlaRules, now: datetime
) -> Change:
    _check_transition(complaint, Status.RESOLVED)
    amount, currency = command.refund_amount, command.currency
    purchase_id = command.purchase_id or complaint.related_purchase_id
    if command.resolution_type in MONEY_RESOLUTIONS:
        if amount is None or currency is None:
            raise InvalidInput(
                f"a {command.resolution_type.value} resolution needs refund_amount and currency"
            )
        if purchase_id is None:
            raise InvalidInput(
                f"a {command.resolution_type.value} resolution needs the purchase_id it refunds"
            )
    elif amount is not None or currency is not None:
        raise InvalidInput("only a refund or a return resolution carries an amount")
    if (amount is None) != (currency is None):
        raise InvalidInput("refund_amount and currency go together")
    if amount is not None:
        amount = Decimal(amount)
    calendar = rules.calendar(complaint.calendar)
    clocks = {name: state.stopped(now, calendar) for name, state in complaint.clocks.items()}
    resolution = Resolution(
        number=len(complaint.resolutions) + 1,
        type=command.resolution_type,
        summary=command.summary,
        refund_amount=amount,
        currency=currency,
        purchase_id=purchase_id if command.resolution_type in MONEY_RESOLUTIONS else None,
        resolved_by=actor.id,
        resolved_at=now,
    )
    after = _moved(
        complaint, Status.RESOLVED, actor, now, f"resolved: {command.resolution_type.value}"
    ).model_copy(
        update={
            "clocks": clocks,
            "resolutions": [*complaint.resolutions, resolution],
            "resolved_at": now,
        }
    )
    event = ComplaintResolved(
        complaint_id=complaint.id,
        customer_id=complaint.customer_id,
        resolution_type=resolution.type,
        summary=resolution.summary,
        refund_amount=resolution.refund_amount,
        currency=resolution.currency,
        purchase_id=resolution.purchase_id,
        resolved_at=now,
    )
    return after, [event]


def reopen(
    complaint: Complaint, actor: Actor, rules: SlaRules, now: datetime, reason: str | None
) -> Change:
    _check_transition(complaint, Status.REOPENED)
    if complaint.status is Status.CLOSED and not within_reopen_window(complaint, rules, now):
        raise Conflict(
            "the complaint is closed and its reopen window has passed; open a new one",
            current_status=complaint.status.value,
            allowed=[],
        )
    calendar = rules.calendar(complaint.calendar)
    resolution = complaint.clocks[SlaClock.RESOLUTION].resumed(now, calendar, rules.warning_share)
    after = _moved(complaint, Status.REOPENED, actor, now, "reopened", reason=reason).model_copy(
        update={
            "clocks": _with_clocks(complaint, resolution=resolution),
            "closed_at": None,
        }
    )
    event = ComplaintReopened(
        complaint_id=complaint.id, customer_id=complaint.customer_id, reason=reason, reopened_at=now
    )
    return after, [event]


def within_reopen_window(complaint: Complaint, rules: SlaRules, now: datetime) -> bool:
    return complaint.resolved_at is not None and now < complaint.resolved_at + rules.reopen_window


def close(complaint: Complaint, actor: Actor, now: datetime) -> Change:
    _check_transition(complaint, Status.CLOSED)
    after = _moved(complaint, Status.CLOSED, actor, now, "closed").model_copy(
        update={"closed_at": now}
    )
    event = ComplaintClosed(
        complaint_id=complaint.id, customer_id=complaint.customer_id, closed_at=now
    )
    return after, [event]


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


def anonymise(complaint: Complaint, now: datetime) -> Complaint:
    """The complaint without personal text; categories, times, scores and money stay."""
    if complaint.erased:
        return complaint
    return complaint.model_copy(
        update={
            "subject": ERASED_TEXT,
            "description": ERASED_TEXT,
            "comments": [c.model_copy(update={"text": ERASED_TEXT}) for c in complaint.comments],
            "resolutions": [
                r.model_copy(update={"summary": ERASED_TEXT}) for r in complaint.resolutions
            ],
            "feedback": [f.model_copy(update={"comment": None}) for f in complaint.feedback],
            "history": [
                h.model_copy(update={"details": _without_text(h.details)})
                for h in complaint.history
            ],
            "erased": True,
            "updated_at": now,
        }
    )


def _without_text(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if key not in {"reason"}}
