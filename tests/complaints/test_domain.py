"""The complaint rules on their own: state machine, SLA clocks, alerts, reopen window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.complaints.domain.deadlines import fire_alerts
from services.complaints.domain.erasure import anonymise
from services.complaints.domain.lifecycle import (
    OpenComplaint,
    Resolve,
    acknowledge,
    change_status,
    close,
    open_complaint,
    reopen,
    resolve,
)
from services.complaints.domain.model import Actor, Complaint, Status
from services.complaints.domain.satisfaction import RecordFeedback, record_feedback
from services.complaints.domain.sla import SlaRules
from shared.errors import Conflict, Forbidden
from shared.events.complaints import ComplaintSlaBreached, SlaClock, SlaSeverity

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Zagreb
AGENT = Actor(id="ana")
RULES = SlaRules(reopen_window=timedelta(days=7))


def opened(priority: str = "normal") -> Complaint:
    command = OpenComplaint.model_validate(
        {
            "customer_id": "cus_1",
            "channel": "phone",
            "category": "delivery",
            "subject": "Late",
            "description": "Still waiting",
            "priority": priority,
        }
    )
    complaint, _ = open_complaint(command, AGENT, RULES, MONDAY)
    return complaint


def resolved(at: datetime = MONDAY) -> Complaint:
    complaint, _ = acknowledge(opened(), AGENT, RULES, at)
    complaint, _ = change_status(complaint, Status.IN_PROGRESS, AGENT, RULES, at)
    command = Resolve.model_validate(
        {"resolution_type": "explanation", "summary": "It was the courier"}
    )
    complaint, _ = resolve(complaint, command, AGENT, RULES, at)
    return complaint


def test_every_status_names_where_it_may_go() -> None:
    assert opened().allowed() == ["acknowledged"]
    assert resolved().allowed() == ["reopened", "closed"]
    with pytest.raises(Conflict) as refused:
        close(opened(), AGENT, MONDAY)
    assert refused.value.extensions["allowed"] == ["acknowledged"]


def test_a_customer_opens_only_for_itself() -> None:
    command = OpenComplaint(
        customer_id="cus_2", channel="web", category="x", subject="s", description="d"
    )
    with pytest.raises(Forbidden):
        open_complaint(command, Actor(id="c", customer_id="cus_1"), RULES, MONDAY)


def test_alerts_fire_once_and_a_breach_escalates() -> None:
    complaint = opened("low")  # 16 h first response: due Wednesday 10:00
    due = complaint.clocks[SlaClock.FIRST_RESPONSE].due_at
    assert due == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    later, events = fire_alerts(complaint, RULES, due + timedelta(minutes=1))
    assert all(isinstance(event, ComplaintSlaBreached) for event in events)
    assert [(e.clock, e.severity) for e in events if isinstance(e, ComplaintSlaBreached)] == [
        (SlaClock.FIRST_RESPONSE, SlaSeverity.WARNING),
        (SlaClock.FIRST_RESPONSE, SlaSeverity.BREACH),
    ]
    assert later.priority == "normal"
    assert later.assigned_team == "escalations"
    again, none = fire_alerts(later, RULES, due + timedelta(hours=1))
    assert none == []
    assert again is later


def test_closed_is_final_once_the_reopen_window_has_passed() -> None:
    complaint = resolved()
    within, _ = fire_alerts(complaint, RULES, MONDAY + timedelta(days=6))
    assert within.status is Status.RESOLVED

    closed, events = fire_alerts(complaint, RULES, MONDAY + timedelta(days=7))
    assert closed.status is Status.CLOSED
    assert [event.event_type for event in events] == ["crm.complaint.closed"]
    with pytest.raises(Conflict, match="reopen window"):
        reopen(closed, AGENT, RULES, MONDAY + timedelta(days=8), None)

    early_close, _ = close(complaint, AGENT, MONDAY + timedelta(days=1))
    reopened, _ = reopen(early_close, AGENT, RULES, MONDAY + timedelta(days=2), "no")
    assert reopened.status is Status.REOPENED
    assert reopened.clocks[SlaClock.RESOLUTION].running


def test_erasure_keeps_figures_and_drops_words() -> None:
    complaint = resolved()
    complaint, _ = record_feedback(
        complaint, RecordFeedback(csat=5, comment="Thanks, Ana"), AGENT, MONDAY
    )
    erased = anonymise(complaint, MONDAY)
    assert (erased.subject, erased.description) == ("[erased]", "[erased]")
    assert erased.feedback[0].csat == 5
    assert erased.feedback[0].comment is None
    assert erased.resolutions[0].summary == "[erased]"
