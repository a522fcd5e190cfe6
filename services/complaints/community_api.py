"""HTTP API of the customer community: questions, answers, votes, the accepted answer,
reports, moderation and members' pages.

A customer token acts as its customer; admin and agent tokens act as staff (their
answers are marked ``by_staff``, they may accept on any question, hide and show posts
and read reports). Any token reads and reports; a service token, which is no member,
does nothing else. Customers never see a hidden post (404, left out of lists and
searches) nor who wrote a post beyond the author's nickname, reputation and tier.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from services.complaints import community
from services.complaints.api import SearchText, is_staff
from services.complaints.community import Community, Decoration
from services.complaints.domain.community import (
    AcceptAnswer,
    After,
    Answer,
    AnyPost,
    AskQuestion,
    Author,
    CastVote,
    Earned,
    HidePost,
    Member,
    PostKind,
    Question,
    QuestionFilter,
    QuestionSort,
    Reader,
    Report,
    ReportPost,
    ReviseQuestion,
    SetNickname,
    VoteValue,
    WriteAnswer,
)
from services.complaints.domain.language import Direction, Locale, locale_or_english
from shared.auth import CurrentPrincipal, Principal, Role, StaffPrincipal
from shared.errors import Forbidden, InvalidInput
from shared.pagination import Page, decode_cursor, page_of

PostId = Annotated[str, Path(min_length=1, max_length=200)]


def get_community(request: Request) -> Community:
    found: Community = request.app.state.community
    return found


CommunityDep = Annotated[Community, Depends(get_community)]


def reader_of(principal: Principal) -> Reader:
    if is_staff(principal):
        return Member.staff_member(principal.subject).reader
    if principal.has_any(Role.CUSTOMER) and principal.customer_id:
        return Reader(principal.customer_id)
    return Reader()


def member_of(principal: Principal) -> Member:
    """Who writes: the token's customer, or a staff member; nobody else."""
    if is_staff(principal):
        return Member.staff_member(principal.subject)
    if principal.has_any(Role.CUSTOMER) and principal.customer_id:
        return Member.customer(principal.customer_id)
    raise Forbidden("the community takes posts and votes from customers and staff only")


# --- what answers look like ------------------------------------------------------------


class AuthorPublic(BaseModel):
    nickname: str = Field(description="the public name the member chose (or one made up)")
    reputation: int = Field(description="what others' votes and acceptances earned them")
    tier: str | None = Field(description="the customer's loyalty tier, if analytics set one")
    staff: bool = Field(description="a member of the support staff")
    member_id: str | None = Field(description="staff only: whose post it is")

    @classmethod
    def of(cls, author: Author, reader: Reader) -> AuthorPublic:
        return cls(
            nickname=author.nickname,
            reputation=author.reputation,
            tier=author.tier,
            staff=author.staff,
            member_id=author.member_id if reader.staff else None,
        )


def _post_fields(
    post: AnyPost, decoration: Decoration, reader: Reader, ctx: Community
) -> dict[str, Any]:
    """What questions and answers show alike."""
    return {
        "id": post.id,
        "body": post.body,
        "author": AuthorPublic.of(decoration.author(post), reader),
        "by_staff": post.by_staff,
        "mine": reader.member_id is not None and post.author_id == reader.member_id,
        "up": post.up,
        "down": post.down,
        "score": post.score,
        "my_vote": decoration.votes.get(post.id),
        "deleted": post.deleted,
        "hidden": post.hidden,
        "hide_reason": post.hide_reason if reader.staff else None,
        "report_count": post.report_count if reader.staff else None,
        "created_at": post.created_at,
        "updated_at": post.updated_at,
        "edited_at": post.edited_at,
        "editable_until": post.editable_until(ctx.edit_window),
        "version": post.version,
    }


class PostPublic(BaseModel):
    id: str
    body: str = Field(description="plain text or light markdown; empty once deleted")
    author: AuthorPublic
    by_staff: bool = Field(description="written by support staff")
    mine: bool = Field(description="written by the reader")
    up: int
    down: int
    score: int = Field(description="up minus down votes")
    my_vote: VoteValue | None = Field(description="the reader's own vote")
    deleted: bool = Field(description="withdrawn by its author: its place stays, not its text")
    hidden: bool = Field(description="hidden by staff (only staff ever see it)")
    hide_reason: str | None = Field(description="staff only")
    report_count: int | None = Field(description="staff only: how many reported it")
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None
    editable_until: datetime = Field(description="its author may edit it until then")
    version: int


class AnswerPublic(PostPublic):
    question_id: str
    accepted: bool = Field(description="the answer the asker (or staff) accepted")

    @classmethod
    def of(
        cls, answer: Answer, decoration: Decoration, reader: Reader, ctx: Community
    ) -> AnswerPublic:
        return cls(
            **_post_fields(answer, decoration, reader, ctx),
            question_id=answer.question_id,
            accepted=answer.accepted,
        )


class QuestionPublic(PostPublic):
    locale: Locale
    direction: Direction = Field(description="`rtl` for Persian: lay the page out right to left")
    title: str
    tags: list[str]
    product: str | None
    category: str | None
    answer_count: int = Field(description="answers shown to customers")
    accepted_answer_id: str | None

    @classmethod
    def fields_of(
        cls, question: Question, decoration: Decoration, reader: Reader, ctx: Community
    ) -> dict[str, Any]:
        return {
            **_post_fields(question, decoration, reader, ctx),
            "locale": question.locale,
            "direction": question.direction,
            "title": question.title,
            "tags": question.tags,
            "product": question.product,
            "category": question.category,
            "answer_count": question.answer_count,
            "accepted_answer_id": question.accepted_answer_id,
        }

    @classmethod
    def of(
        cls, question: Question, decoration: Decoration, reader: Reader, ctx: Community
    ) -> QuestionPublic:
        return cls(**cls.fields_of(question, decoration, reader, ctx))


class ThreadPublic(QuestionPublic):
    answers: list[AnswerPublic] = Field(description="the accepted first, then best scored")


class QuestionSummary(BaseModel):
    id: str
    locale: Locale
    direction: Direction
    title: str
    excerpt: str = Field(description="the start of the body")
    tags: list[str]
    product: str | None
    category: str | None
    author: AuthorPublic
    by_staff: bool
    score: int
    answer_count: int
    accepted_answer_id: str | None
    hidden: bool
    created_at: datetime
    relevance: float | None = Field(
        default=None, description="relevance (BM25) in a search, higher is better; null in lists"
    )

    @classmethod
    def of(
        cls,
        question: Question,
        decoration: Decoration,
        reader: Reader,
        relevance: float | None = None,
    ) -> QuestionSummary:
        return cls(
            id=question.id,
            locale=question.locale,
            direction=question.direction,
            title=question.title,
            excerpt=question.excerpt(),
            tags=question.tags,
            product=question.product,
            category=question.category,
            author=AuthorPublic.of(decoration.author(question), reader),
            by_staff=question.by_staff,
            score=question.score,
            answer_count=question.answer_count,
            accepted_answer_id=question.accepted_answer_id,
            hidden=question.hidden,
            created_at=question.created_at,
            relevance=relevance,
        )


class QuestionPage(Page[QuestionSummary]):
    pass


class VotePublic(BaseModel):
    post_id: str
    kind: PostKind
    up: int
    down: int
    score: int
    my_vote: VoteValue | None


class ModerationPublic(BaseModel):
    post_id: str
    kind: PostKind
    question_id: str
    hidden: bool
    hidden_at: datetime | None
    hidden_by: str | None
    hide_reason: str | None
    report_count: int

    @classmethod
    def of(cls, post: AnyPost) -> ModerationPublic:
        return cls(
            post_id=post.id,
            kind=post.kind,
            question_id=post.question_id if isinstance(post, Answer) else post.id,
            hidden=post.hidden,
            hidden_at=post.hidden_at,
            hidden_by=post.hidden_by,
            hide_reason=post.hide_reason,
            report_count=post.report_count,
        )


class ReportPublic(BaseModel):
    post_id: str
    kind: PostKind
    question_id: str
    reason: str
    reported_at: datetime
    reporter_id: str | None = Field(description="staff only: who reported it")

    @classmethod
    def of(cls, report: Report, *, staff: bool) -> ReportPublic:
        return cls(
            **report.model_dump(exclude={"reporter_id"}),
            reporter_id=report.reporter_id if staff else None,
        )


class ReportPage(Page[ReportPublic]):
    pass


class MemberPublic(BaseModel):
    member_id: str
    nickname: str = Field(description="shown beside the member's posts")
    nickname_chosen: bool = Field(description="false while the member shows a made-up one")
    reputation: int
    earned: Earned = Field(description="what the reputation is computed from")
    tier: str | None = Field(description="the customer's loyalty tier (from analytics)")
    benefits: str | None = Field(description="what the tier gives")
    staff: bool

    @classmethod
    def of(cls, view: community.MemberView) -> MemberPublic:
        profile = view.profile
        return cls(
            member_id=profile.id,
            nickname=profile.display_name,
            nickname_chosen=profile.nickname is not None,
            reputation=profile.reputation,
            earned=profile.earned,
            tier=profile.tier,
            benefits=view.benefits,
            staff=profile.staff,
        )


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such post (or, for all but staff, a hidden one)"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"description": "not the post's author (or not a customer or staff token)"},
    409: {"description": "the post was deleted, or the edit window has closed"},
}

router = APIRouter(prefix="/api/v1/community", tags=["community"])


async def _question(ctx: Community, question: Question, reader: Reader) -> QuestionPublic:
    return QuestionPublic.of(
        question, await community.decorate(ctx, [question], reader), reader, ctx
    )


async def _answer(ctx: Community, answer: Answer, reader: Reader) -> AnswerPublic:
    return AnswerPublic.of(answer, await community.decorate(ctx, [answer], reader), reader, ctx)


@router.post("/questions", status_code=status.HTTP_201_CREATED)
async def ask_question(
    body: AskQuestion, ctx: CommunityDep, response: Response, principal: CurrentPrincipal
) -> QuestionPublic:
    """A question to the community, by a customer (as its customer) or staff."""
    member = member_of(principal)
    question = await community.ask_question(ctx, body, member)
    response.headers["Location"] = f"/api/v1/community/questions/{question.id}"
    return await _question(ctx, question, member.reader)


def _after(cursor: str | None, sort: QuestionSort) -> After | None:
    position = decode_cursor(cursor, sort.value)
    if position is None:
        return None
    moment, item = position
    if sort is QuestionSort.NEWEST:
        return After(moment, item)
    score, _, question_id = item.partition(":")
    try:
        return After(moment, question_id, int(score))
    except ValueError:
        raise InvalidInput("cursor is not one this API issued") from None


def _position(sort: QuestionSort) -> Any:
    if sort is QuestionSort.VOTES:
        return lambda q: (q.created_at, f"{q.score}:{q.id}")
    return lambda q: (q.created_at, q.id)


@router.get("/questions")
async def list_questions(
    ctx: CommunityDep,
    principal: CurrentPrincipal,
    q: SearchText | None = None,
    locale: Locale | None = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    unanswered: Annotated[bool, Query(description="only questions with no answer yet")] = False,
    hidden: Annotated[
        bool | None, Query(description="staff only: only hidden (true) or shown (false) ones")
    ] = None,
    sort: Annotated[
        QuestionSort | None,
        Query(description="`newest` (the default) or `votes` (best scored first)"),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> QuestionPage:
    """Without `q`: questions newest (or best scored) first, a page at a time. With `q`:
    the questions that best match it, most relevant first (one page)."""
    reader = reader_of(principal)
    if q is not None:
        if cursor is not None:
            raise InvalidInput("a search answers one page, the best matches first; raise `limit`")
        if tag is not None or unanswered or hidden is not None or sort is not None:
            raise InvalidInput("a search takes `locale` and `limit`; `tag`, `unanswered`, "
                               "`hidden` and `sort` are for listing")  # fmt: skip
        hits = await community.search_questions(ctx, q, locale, limit, reader)
        decoration = await community.decorate(ctx, [question for question, _ in hits], reader)
        return QuestionPage(
            items=[QuestionSummary.of(qn, decoration, reader, score) for qn, score in hits],
            next_cursor=None,
        )
    order = sort or QuestionSort.NEWEST
    query = QuestionFilter(locale, tag.strip().lower() if tag else None, unanswered, hidden, order)
    found = await community.list_questions(ctx, query, _after(cursor, order), limit + 1, reader)
    page, next_cursor = page_of(found, limit, _position(order), order.value)
    decoration = await community.decorate(ctx, page, reader)
    return QuestionPage(
        items=[QuestionSummary.of(question, decoration, reader) for question in page],
        next_cursor=next_cursor,
    )


@router.get("/questions/{question_id}", responses=NOT_FOUND)
async def read_question(
    question_id: PostId, ctx: CommunityDep, principal: CurrentPrincipal
) -> ThreadPublic:
    """The question and its answers (each with its author's nickname, reputation and
    tier); a hidden one is not found for all but staff."""
    reader = reader_of(principal)
    thread = await community.read_thread(ctx, question_id, reader)
    return ThreadPublic(
        **QuestionPublic.fields_of(thread.question, thread.decoration, reader, ctx),
        answers=[AnswerPublic.of(a, thread.decoration, reader, ctx) for a in thread.answers],
    )


@router.patch("/questions/{question_id}", responses=REFUSED)
async def revise_question(
    question_id: PostId, body: ReviseQuestion, ctx: CommunityDep, principal: CurrentPrincipal
) -> QuestionPublic:
    """Its author changes some fields, within the edit window."""
    member = member_of(principal)
    question = await community.revise_question(ctx, question_id, body, member)
    return await _question(ctx, question, member.reader)


@router.delete(
    "/questions/{question_id}", status_code=status.HTTP_204_NO_CONTENT, responses=REFUSED
)
async def delete_question(
    question_id: PostId, ctx: CommunityDep, principal: CurrentPrincipal
) -> None:
    """Its author withdraws it: the thread stays, the question's text goes."""
    await community.delete_post(ctx, question_id, member_of(principal), PostKind.QUESTION)


@router.post(
    "/questions/{question_id}/answers", status_code=status.HTTP_201_CREATED, responses=REFUSED
)
async def post_answer(
    question_id: PostId,
    body: WriteAnswer,
    ctx: CommunityDep,
    response: Response,
    principal: CurrentPrincipal,
) -> AnswerPublic:
    """An answer, by a customer or staff (marked `by_staff`)."""
    member = member_of(principal)
    answer = await community.post_answer(ctx, question_id, body, member)
    response.headers["Location"] = f"/api/v1/community/answers/{answer.id}"
    return await _answer(ctx, answer, member.reader)


@router.put("/questions/{question_id}/accepted-answer", responses=REFUSED)
async def accept_answer(
    question_id: PostId, body: AcceptAnswer, ctx: CommunityDep, principal: CurrentPrincipal
) -> QuestionPublic:
    """The asker (or staff) accepts the answer that helped; accepting another moves it."""
    member = member_of(principal)
    question = await community.accept_answer(ctx, question_id, body, member)
    return await _question(ctx, question, member.reader)


@router.delete("/questions/{question_id}/accepted-answer", responses=REFUSED)
async def withdraw_acceptance(
    question_id: PostId, ctx: CommunityDep, principal: CurrentPrincipal
) -> QuestionPublic:
    member = member_of(principal)
    question = await community.withdraw_acceptance(ctx, question_id, member)
    return await _question(ctx, question, member.reader)


@router.get("/answers/{answer_id}", responses=NOT_FOUND)
async def read_answer(
    answer_id: PostId, ctx: CommunityDep, principal: CurrentPrincipal
) -> AnswerPublic:
    reader = reader_of(principal)
    return await _answer(ctx, await community.read_answer(ctx, answer_id, reader), reader)


@router.patch("/answers/{answer_id}", responses=REFUSED)
async def revise_answer(
    answer_id: PostId, body: WriteAnswer, ctx: CommunityDep, principal: CurrentPrincipal
) -> AnswerPublic:
    """Its author changes the text, within the edit window."""
    member = member_of(principal)
    answer = await community.revise_answer(ctx, answer_id, body, member)
    return await _answer(ctx, answer, member.reader)


@router.delete("/answers/{answer_id}", status_code=status.HTTP_204_NO_CONTENT, responses=REFUSED)
async def delete_answer(answer_id: PostId, ctx: CommunityDep, principal: CurrentPrincipal) -> None:
    """Its author withdraws it: its place in the thread stays, its text goes."""
    await community.delete_post(ctx, answer_id, member_of(principal), PostKind.ANSWER)


def _vote(post: AnyPost, value: VoteValue | None) -> VotePublic:
    return VotePublic(
        post_id=post.id, kind=post.kind, up=post.up, down=post.down, score=post.score,
        my_vote=value,
    )  # fmt: skip


VOTE_REFUSED: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"description": "not a customer or staff token"},
    409: {"description": "one's own post, or a deleted one"},
}


@router.put("/posts/{post_id}/vote", responses=VOTE_REFUSED)
async def cast_vote(
    post_id: PostId, body: CastVote, ctx: CommunityDep, principal: CurrentPrincipal
) -> VotePublic:
    """Vote a question or an answer up or down; a second vote replaces the first."""
    post = await community.cast_vote(ctx, post_id, member_of(principal), body.value)
    return _vote(post, body.value)


@router.delete("/posts/{post_id}/vote", responses=VOTE_REFUSED)
async def withdraw_vote(
    post_id: PostId, ctx: CommunityDep, principal: CurrentPrincipal
) -> VotePublic:
    post = await community.cast_vote(ctx, post_id, member_of(principal), None)
    return _vote(post, None)


@router.post(
    "/posts/{post_id}/reports",
    status_code=status.HTTP_201_CREATED,
    responses={**NOT_FOUND, 409: {"description": "reported by this token's member already"}},
)
async def report_post(
    post_id: PostId, body: ReportPost, ctx: CommunityDep, principal: CurrentPrincipal
) -> ReportPublic:
    """Tell staff a post breaks the rules (any token, once per post)."""
    reader = reader_of(principal)
    reporter = reader.member_id or f"service:{principal.subject}"
    report = await community.report_post(ctx, post_id, reporter, reader, body)
    return ReportPublic.of(report, staff=reader.staff)


@router.post("/posts/{post_id}/hide", responses=NOT_FOUND)
async def hide_post(
    post_id: PostId,
    ctx: CommunityDep,
    principal: StaffPrincipal,
    body: HidePost | None = None,
) -> ModerationPublic:
    """Customers no longer see the post nor find it; staff still do, marked hidden."""
    post = await community.hide_post(ctx, post_id, member_of(principal), body or HidePost())
    return ModerationPublic.of(post)


@router.post("/posts/{post_id}/unhide", responses=NOT_FOUND)
async def unhide_post(
    post_id: PostId, ctx: CommunityDep, principal: StaffPrincipal
) -> ModerationPublic:
    return ModerationPublic.of(await community.unhide_post(ctx, post_id, member_of(principal)))


@router.get("/reports")
async def list_reports(
    ctx: CommunityDep,
    _: StaffPrincipal,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ReportPage:
    """Reports, newest first, a page at a time."""
    found = await community.list_reports(ctx, decode_cursor(cursor, "reports"), limit + 1)
    page, next_cursor = page_of(found, limit, lambda r: (r.reported_at, r.id), "reports")
    return ReportPage(
        items=[ReportPublic.of(report, staff=True) for report in page], next_cursor=next_cursor
    )


BenefitsLocale = Annotated[
    str | None,
    Query(
        max_length=35,
        description="the language of `benefits` (`en`, `hr`, `cs`, `sl`, `fa`; `hr-HR` "
        "reads as `hr`); any other, or none: English",
    ),
]


@router.get("/members/me")
async def read_my_page(
    ctx: CommunityDep, principal: CurrentPrincipal, locale: BenefitsLocale = None
) -> MemberPublic:
    """The reader's page: nickname, reputation, loyalty tier and what it gives."""
    member = member_of(principal)
    page = await community.member_page(
        ctx, member.member_id, staff=member.staff, locale=locale_or_english(locale)
    )
    return MemberPublic.of(page)


@router.put("/members/me", responses={409: {"description": "another member has it"}})
async def set_nickname(
    body: SetNickname,
    ctx: CommunityDep,
    principal: CurrentPrincipal,
    locale: BenefitsLocale = None,
) -> MemberPublic:
    """Choose the nickname shown beside your posts (unique, whatever the case)."""
    member = member_of(principal)
    return MemberPublic.of(
        await community.set_nickname(ctx, member, body, locale_or_english(locale))
    )


@router.get("/members/{member_id}")
async def read_member(
    member_id: Annotated[str, Path(min_length=1, max_length=300)],
    ctx: CommunityDep,
    _: StaffPrincipal,
) -> MemberPublic:
    """A member's page (staff: who is behind a nickname)."""
    return MemberPublic.of(await community.member_page(ctx, member_id, known=True))
