"""HTTP API of the complaints service: parse, call a use case, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints import handlers
from services.complaints.calendar import BusinessCalendar
from services.complaints.domain.lifecycle import OpenComplaint, Resolve
from services.complaints.domain.model import (
    Actor,
    Comment,
    Complaint,
    Feedback,
    HistoryEntry,
    LongText,
    Resolution,
    Visibility,
)
from services.complaints.domain.query import ComplaintQuery, SlaFilter
from services.complaints.domain.satisfaction import RecordFeedback
from services.complaints.domain.sla import DEFAULT_POLICIES, SlaPolicy
from services.complaints.domain.triage import Reclassify
from services.complaints.handlers import Complaints
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.events.complaints import (
    ComplaintStatus,
    ContactChannel,
    Priority,
    SlaClock,
)
from shared.pagination import Page, cursor_after, decode_cursor


def is_staff(principal: Principal) -> bool:
    """Admins and agents: they see drafts, hidden posts and who wrote what."""
    return principal.has_any(Role.ADMIN, Role.AGENT)


StaffPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT))]
AdminPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
ComplaintId = Annotated[str, Path(min_length=1, max_length=200)]
# Search as you type, in the help centre and the community.
SearchText = Annotated[
    str,
    Query(
        min_length=1,
        max_length=500,
        description="words to search for; the last one matches as a prefix unless a space "
        "follows it (search as you type)",
    ),
]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def get_complaints(request: Request) -> Complaints:
    complaints: Complaints = request.app.state.complaints
    return complaints


ComplaintsDep = Annotated[Complaints, Depends(get_complaints)]


def actor_of(principal: Principal) -> Actor:
    """Staff and systems act for everyone; a customer token only for its own customer."""
    if principal.has_any(Role.ADMIN, Role.AGENT, Role.SERVICE):
        return Actor(id=principal.subject)
    return Actor(id=principal.subject, customer_id=principal.customer_id)


class ClockPublic(BaseModel):
    target_minutes: float
    used_minutes: float = Field(description="business time used while the clock was running")
    running: bool = Field(description="false while paused or once met")
    due_at: datetime | None
    warn_at: datetime | None
    met_at: datetime | None
    warned_at: datetime | None
    breached_at: datetime | None


class ComplaintPublic(BaseModel):
    id: str
    customer_id: str
    channel: ContactChannel
    category: str
    subject: str
    description: str
    related_purchase_id: str | None
    priority: Priority
    status: ComplaintStatus
    allowed_transitions: list[str]
    assigned_agent: str | None
    assigned_team: str | None
    escalated: bool
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    sla: dict[SlaClock, ClockPublic]
    sla_calendar: str
    comments: list[Comment]
    resolutions: list[Resolution]
    feedback: list[Feedback]
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None

    @classmethod
    def of(cls, complaint: Complaint) -> ComplaintPublic:
        clocks = {
            name: ClockPublic(
                target_minutes=state.target_seconds / 60,
                used_minutes=round(state.elapsed_seconds / 60, 2),
                running=state.running and state.stopped_at is None,
                due_at=state.due_at,
                warn_at=state.warn_at,
                met_at=state.stopped_at,
                warned_at=state.warned_at,
                breached_at=state.breached_at,
            )
            for name, state in complaint.clocks.items()
        }
        return cls(
            **complaint.model_dump(
                exclude={"clocks", "history", "calendar", "moved_from", "erased", "version"}
            ),
            allowed_transitions=complaint.allowed(),
            first_response_due_at=complaint.due(SlaClock.FIRST_RESPONSE),
            resolution_due_at=complaint.due(SlaClock.RESOLUTION),
            sla=clocks,
            sla_calendar=complaint.calendar,
        )


class ComplaintPage(Page[ComplaintPublic]):
    pass


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["in_progress", "waiting_on_customer"]
    public_comment: LongText | None = Field(
        default=None, description="shown to the customer and carried in the event"
    )


class ReopenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: LongText | None = None


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: LongText
    visibility: Visibility = Visibility.PUBLIC


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    team: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None


class CalendarUpdated(BaseModel):
    name: str
    calendar: BusinessCalendar
    recomputed: int = Field(description="open complaints whose deadlines were worked out again")


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_response_minutes: int = Field(gt=0, le=60 * 24 * 365)
    resolution_minutes: int = Field(gt=0, le=60 * 24 * 365)
    calendar: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "default"


router = APIRouter(prefix="/api/v1", tags=["complaints"])


@router.post("/complaints", status_code=status.HTTP_201_CREATED)
async def open_complaint(
    body: OpenComplaint, ctx: ComplaintsDep, response: Response, principal: CurrentPrincipal
) -> ComplaintPublic:
    """Open a complaint; the answer says when to expect a first response and a resolution."""
    complaint = await handlers.open_complaint(ctx, body, actor_of(principal))
    response.headers["Location"] = f"/api/v1/complaints/{complaint.id}"
    return ComplaintPublic.of(complaint)


@router.get("/complaints")
async def list_complaints(
    ctx: ComplaintsDep,
    principal: CurrentPrincipal,
    status: ComplaintStatus | None = None,
    priority: Priority | None = None,
    category: Annotated[str | None, Query(max_length=500)] = None,
    assignee: Annotated[str | None, Query(max_length=200, description="an agent or a team")] = None,
    customer_id: Annotated[str | None, Query(max_length=200)] = None,
    sla: Annotated[
        SlaFilter | None,
        Query(description="`breached`: a clock ran out; `at_risk`: past its warning, not out"),
    ] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ComplaintPage:
    query = ComplaintQuery(
        status=status,
        priority=priority,
        category=category,
        assignee=assignee,
        customer_id=customer_id,
        sla=sla,
        created_after=created_after,
        created_before=created_before,
    )
    page, more = await handlers.list_complaints(
        ctx, query, actor_of(principal), decode_cursor(cursor), limit
    )
    next_cursor = cursor_after(page, more, lambda c: (c.created_at, c.id))
    return ComplaintPage(items=[ComplaintPublic.of(c) for c in page], next_cursor=next_cursor)


@router.get("/complaints/{complaint_id}")
async def read_complaint(
    complaint_id: ComplaintId, ctx: ComplaintsDep, principal: CurrentPrincipal
) -> ComplaintPublic:
    """A customer sees public comments only, never internal notes."""
    complaint = await handlers.get_complaint(ctx, complaint_id, actor_of(principal))
    return ComplaintPublic.of(complaint)


@router.get("/complaints/{complaint_id}/history")
async def complaint_history(
    complaint_id: ComplaintId, ctx: ComplaintsDep, principal: CurrentPrincipal
) -> list[HistoryEntry]:
    """Everything that happened to the complaint, oldest first."""
    complaint = await handlers.get_complaint(ctx, complaint_id, actor_of(principal))
    return complaint.history


@router.patch("/complaints/{complaint_id}")
async def reclassify(
    complaint_id: ComplaintId, body: Reclassify, ctx: ComplaintsDep, principal: StaffPrincipal
) -> ComplaintPublic:
    """Change priority or category (recorded in the history; SLA targets follow)."""
    complaint = await handlers.reclassify(ctx, complaint_id, body, actor_of(principal))
    return ComplaintPublic.of(complaint)


@router.put("/complaints/{complaint_id}/assignment")
async def assign(
    complaint_id: ComplaintId, body: Assignment, ctx: ComplaintsDep, principal: StaffPrincipal
) -> ComplaintPublic:
    complaint = await handlers.assign(
        ctx, complaint_id, actor_of(principal), body.agent or None, body.team or None
    )
    return ComplaintPublic.of(complaint)


TRANSITION_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"description": "not allowed from the current status; `allowed` names what is"}
}


@router.post("/complaints/{complaint_id}/acknowledge", responses=TRANSITION_RESPONSES)
async def acknowledge(
    complaint_id: ComplaintId, ctx: ComplaintsDep, principal: StaffPrincipal
) -> ComplaintPublic:
    """The first response: stops the first-response clock."""
    return ComplaintPublic.of(await handlers.acknowledge(ctx, complaint_id, actor_of(principal)))


@router.post("/complaints/{complaint_id}/status", responses=TRANSITION_RESPONSES)
async def change_status(
    complaint_id: ComplaintId, body: StatusChange, ctx: ComplaintsDep, principal: StaffPrincipal
) -> ComplaintPublic:
    """In progress or waiting on the customer (the resolution clock pauses meanwhile)."""
    complaint = await handlers.change_status(
        ctx, complaint_id, ComplaintStatus(body.status), actor_of(principal), body.public_comment
    )
    return ComplaintPublic.of(complaint)


@router.post("/complaints/{complaint_id}/resolve", responses=TRANSITION_RESPONSES)
async def resolve(
    complaint_id: ComplaintId, body: Resolve, ctx: ComplaintsDep, principal: StaffPrincipal
) -> ComplaintPublic:
    """A refund or return carries its amount, currency and purchase to the ledger."""
    complaint = await handlers.resolve(ctx, complaint_id, body, actor_of(principal))
    return ComplaintPublic.of(complaint)


@router.post("/complaints/{complaint_id}/reopen", responses=TRANSITION_RESPONSES)
async def reopen(
    complaint_id: ComplaintId,
    ctx: ComplaintsDep,
    principal: CurrentPrincipal,
    body: ReopenRequest | None = None,
) -> ComplaintPublic:
    """Staff, or the customer, within the reopen window after the resolution."""
    actor = actor_of(principal)
    reason = body.reason if body else None
    complaint = await handlers.reopen(ctx, complaint_id, actor, reason)
    return ComplaintPublic.of(complaint.visible_to(actor))


@router.post("/complaints/{complaint_id}/close", responses=TRANSITION_RESPONSES)
async def close(
    complaint_id: ComplaintId, ctx: ComplaintsDep, principal: StaffPrincipal
) -> ComplaintPublic:
    return ComplaintPublic.of(await handlers.close(ctx, complaint_id, actor_of(principal)))


@router.post("/complaints/{complaint_id}/comments", status_code=status.HTTP_201_CREATED)
async def add_comment(
    complaint_id: ComplaintId, body: CommentCreate, ctx: ComplaintsDep, principal: CurrentPrincipal
) -> ComplaintPublic:
    """A public comment (the customer sees it) or, for staff, an internal note."""
    actor = actor_of(principal)
    complaint = await handlers.comment(ctx, complaint_id, actor, body.visibility, body.text)
    return ComplaintPublic.of(complaint.visible_to(actor))


@router.post(
    "/complaints/{complaint_id}/feedback",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "not resolved yet, or feedback already recorded"}},
)
async def record_feedback(
    complaint_id: ComplaintId, body: RecordFeedback, ctx: ComplaintsDep, principal: CurrentPrincipal
) -> ComplaintPublic:
    """CSAT 1-5 (and optionally NPS 0-10), once per resolution."""
    actor = actor_of(principal)
    complaint = await handlers.record_feedback(ctx, complaint_id, body, actor)
    return ComplaintPublic.of(complaint.visible_to(actor))


@router.get("/sla/calendars/{name}", tags=["sla"])
async def read_calendar(name: Name, ctx: ComplaintsDep, _: StaffPrincipal) -> BusinessCalendar:
    return await handlers.get_calendar(ctx, name)


@router.put("/sla/calendars/{name}", tags=["sla"])
async def put_calendar(
    name: Name, body: BusinessCalendar, ctx: ComplaintsDep, _: AdminPrincipal
) -> CalendarUpdated:
    """Working hours per weekday, time zone and holidays; open complaints counting time
    in this calendar get their deadlines worked out again."""
    recomputed = await handlers.put_calendar(ctx, name, body)
    return CalendarUpdated(name=name, calendar=body, recomputed=recomputed)


@router.get("/sla/policies", tags=["sla"])
async def list_policies(ctx: ComplaintsDep, _: StaffPrincipal) -> list[SlaPolicy]:
    """The stored policies and, for priorities without one, the defaults."""
    stored = (await ctx.rules()).policies
    covered = {policy.priority for policy in stored if policy.category is None}
    defaults = [p for priority, p in DEFAULT_POLICIES.items() if priority not in covered]
    return [*stored, *defaults]


@router.put("/sla/policies/{priority}", tags=["sla"])
async def put_priority_policy(
    priority: Priority, body: PolicyBody, ctx: ComplaintsDep, _: AdminPrincipal
) -> SlaPolicy:
    """The targets for every category of this priority (unless a category has its own)."""
    return await handlers.put_policy(ctx, SlaPolicy(priority=priority, **body.model_dump()))


@router.put("/sla/policies/{priority}/{category}", tags=["sla"])
async def put_category_policy(
    priority: Priority,
    category: Annotated[str, Path(min_length=1, max_length=500)],
    body: PolicyBody,
    ctx: ComplaintsDep,
    _: AdminPrincipal,
) -> SlaPolicy:
    policy = SlaPolicy(priority=priority, category=category, **body.model_dump())
    return await handlers.put_policy(ctx, policy)
