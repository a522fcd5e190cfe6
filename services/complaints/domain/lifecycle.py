"""A complaint's lifecycle: opened, acknowledged, worked on, resolved, reopened, closed.

Each move is checked against the allowed transitions, recorded in the history and
announced; the SLA clocks start, pause, resume and stop with it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints.domain.model import (
    TRANSITIONS,
    Actor,
    Change,
    Complaint,
    HistoryEntry,
    LongText,
    Ref,
    Resolution,
    Status,
    Text,
    Visibility,
    _commented,
)
from services.complaints.domain.sla import ClockState, SlaPolicy, SlaRules
from shared.errors import Conflict, Forbidden, InvalidInput
from shared.events.base import Amount
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintStatusChanged,
    ContactChannel,
    Priority,
    ResolutionType,
    SlaClock,
)

MONEY_RESOLUTIONS = frozenset({ResolutionType.REFUND, ResolutionType.RETURN})


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
