"""The customer community: questions, answers, votes, the accepted answer, reports,
moderation and reputation.

Pure: no I/O. Every rule takes the posts as stored and returns them as they become (the
same object when nothing changes, else with ``version`` one up) together with the event
payloads announcing the change; the use cases store both in one transaction, guarded by
the versions they read.

Who acts is a :class:`Member`: a customer (its id is the customer id) or a staff member
(admin or agent; ``staff:<subject>``). Customers see neither hidden posts nor who wrote a
post beyond the author's public nickname, reputation and loyalty tier.

**Reputation** is what others did with a member's posts, counted per post
(:func:`earned`) and kept per member as four counters (:class:`Earned`):
``5 * upvotes on questions + 10 * upvotes on answers + 15 * answers accepted by the
asker (or staff) - 2 * downvotes``, never below 0. A post that is hidden or deleted
earns nothing (its votes stop counting, and count again when it is shown again); an
answer accepted on its author's own question earns no acceptance; a member cannot vote
on their own posts.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from services.complaints.domain.language import Direction, Locale, Revision, Writing, direction_of
from shared.errors import Conflict, Forbidden, InvalidInput
from shared.events.base import EventPayload
from shared.events.community import AcceptedBy, AnswerAccepted, AnswerPosted, QuestionAsked

QUESTION_PREFIX = "cq_"
ANSWER_PREFIX = "ca_"
STAFF_PREFIX = "staff:"
DELETED_TEXT = "[deleted]"
ERASED_TEXT = "[erased]"
MAX_TAGS = 10
EXCERPT_LENGTH = 240

# Reputation points per thing others did with a member's posts.
QUESTION_UPVOTE = 5
ANSWER_UPVOTE = 10
ACCEPTED_ANSWER = 15
DOWNVOTE = -2

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=50)
]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Nickname = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=40, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]

BODY_DESCRIPTION = "plain text or light markdown; the portal renders it"

# What each loyalty tier (analytics' ``loyalty_tier``) gives, as the portal shows it
# beside the tier, in each of the portal's languages; a deployment sets its own
# (``RAPPORT_COMPLAINTS_COMMUNITY_TIER_BENEFITS``).
DEFAULT_TIER_BENEFITS: dict[str, dict[Locale, str]] = {
    "bronze": {
        Locale.EN: "Member prices and the community's answers at any hour.",
        Locale.HR: "Članske cijene i odgovori zajednice u bilo koje doba dana.",
        Locale.CS: "Členské ceny a odpovědi komunity v kteroukoli denní dobu.",
        Locale.SL: "Članske cene in odgovori skupnosti ob kateri koli uri.",
        Locale.FA: "قیمت‌های ویژهٔ اعضا و پاسخ‌های انجمن در هر ساعت از شبانه‌روز.",
    },
    "silver": {
        Locale.EN: "Member prices, free delivery on orders over 50 EUR and early access to sales.",
        Locale.HR: "Članske cijene, besplatna dostava za narudžbe iznad 50 EUR i raniji "
        "pristup sniženjima.",
        Locale.CS: "Členské ceny, doprava zdarma u objednávek nad 50 EUR a dřívější "
        "přístup k výprodejům.",
        Locale.SL: "Članske cene, brezplačna dostava za naročila nad 50 EUR in zgodnejši "
        "dostop do razprodaj.",
        Locale.FA: "قیمت‌های ویژهٔ اعضا، ارسال رایگان برای سفارش‌های بالای ۵۰ یورو و "  # noqa: RUF001 - Persian
        "دسترسی زودهنگام به حراج‌ها.",  # noqa: RUF001 - Persian
    },
    "gold": {
        Locale.EN: "Free delivery, 60-day returns and priority support.",
        Locale.HR: "Besplatna dostava, povrat u roku od 60 dana i prioritetna podrška.",
        Locale.CS: "Doprava zdarma, vrácení zboží do 60 dnů a přednostní podpora.",
        Locale.SL: "Brezplačna dostava, vračilo v 60 dneh in prednostna podpora.",
        Locale.FA: "ارسال رایگان، مهلت ۶۰ روزه برای مرجوع کردن کالا و پشتیبانی با اولویت.",
    },
    "platinum": {
        Locale.EN: "Free express delivery, 90-day returns, a personal advisor and "
        "invitations to product previews.",
        Locale.HR: "Besplatna ekspresna dostava, povrat u roku od 90 dana, osobni savjetnik "
        "i pozivnice na predstavljanja novih proizvoda.",
        Locale.CS: "Expresní doprava zdarma, vrácení zboží do 90 dnů, osobní poradce "
        "a pozvánky na předváděcí akce nových produktů.",
        Locale.SL: "Brezplačna hitra dostava, vračilo v 90 dneh, osebni svetovalec "
        "in vabila na predstavitve novih izdelkov.",
        Locale.FA: "ارسال سریع رایگان، مهلت ۹۰ روزه برای مرجوع کردن کالا، مشاور شخصی "
        "و دعوت‌نامه برای پیش‌نمایش محصولات تازه.",
    },
}


def _with_english(texts: dict[Locale, str]) -> dict[Locale, str]:
    if Locale.EN not in texts:
        raise ValueError("a tier's texts per locale need one in `en`, the fallback")
    return texts


LocalisedText = Annotated[dict[Locale, str], AfterValidator(_with_english)]
"""One text per portal language (``{"en": ..., "hr": ...}``); ``en`` is the fallback."""

TierText = str | Mapping[Locale, str]
"""What a tier gives: one text for every language, or one per language."""

TierBenefits = dict[str, str | LocalisedText]
"""The setting: loyalty tier to what it gives (a plain text, or texts per locale)."""


def benefits_in(text: TierText, locale: Locale) -> str:
    """``text`` as a reader of ``locale`` sees it: theirs if there is one, else English."""
    if isinstance(text, str):
        return text
    return text.get(locale) or text[Locale.EN]


class PostKind(StrEnum):
    QUESTION = "question"
    ANSWER = "answer"


class VoteValue(StrEnum):
    UP = "up"
    DOWN = "down"


class QuestionSort(StrEnum):
    NEWEST = "newest"  # newest first
    VOTES = "votes"  # highest score (up minus down votes) first, then newest


# --- who acts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Who reads: ``member_id`` None for a token that is no member (a service)."""

    member_id: str | None = None
    staff: bool = False


@dataclass(frozen=True)
class Member:
    """Who writes, votes or accepts: a customer or a staff member."""

    member_id: str
    staff: bool = False
    customer_id: str | None = None

    @classmethod
    def customer(cls, customer_id: str) -> Member:
        return cls(member_id=customer_id, staff=False, customer_id=customer_id)

    @classmethod
    def staff_member(cls, subject: str) -> Member:
        return cls(member_id=f"{STAFF_PREFIX}{subject}", staff=True)

    @property
    def reader(self) -> Reader:
        return Reader(self.member_id, self.staff)


def default_nickname(member_id: str, *, staff: bool) -> str:
    """A member who chose no nickname shows as this: derived from the id, never a name."""
    digest = hashlib.sha256(member_id.encode()).hexdigest()[:6]
    return f"{'staff' if staff else 'member'}-{digest}"


def nickname_key(nickname: str) -> str:
    """Nicknames are unique ignoring case and spacing: "Ana B" and "ana  b" are one."""
    return " ".join(nickname.casefold().split())


# --- reputation ----------------------------------------------------------------------


class Earned(BaseModel):
    """What others did with a member's posts, counted (the counters a reputation is
    computed from, see the module's documentation)."""

    model_config = ConfigDict(frozen=True)

    question_upvotes: int = 0
    answer_upvotes: int = 0
    downvotes: int = 0
    accepted_answers: int = 0

    @property
    def reputation(self) -> int:
        points = (
            QUESTION_UPVOTE * self.question_upvotes
            + ANSWER_UPVOTE * self.answer_upvotes
            + ACCEPTED_ANSWER * self.accepted_answers
            + DOWNVOTE * self.downvotes
        )
        return max(0, points)

    def __add__(self, other: Earned) -> Earned:
        return Earned(
            question_upvotes=self.question_upvotes + other.question_upvotes,
            answer_upvotes=self.answer_upvotes + other.answer_upvotes,
            downvotes=self.downvotes + other.downvotes,
            accepted_answers=self.accepted_answers + other.accepted_answers,
        )

    def __sub__(self, other: Earned) -> Earned:
        return Earned(
            question_upvotes=self.question_upvotes - other.question_upvotes,
            answer_upvotes=self.answer_upvotes - other.answer_upvotes,
            downvotes=self.downvotes - other.downvotes,
            accepted_answers=self.accepted_answers - other.accepted_answers,
        )

    @property
    def nothing(self) -> bool:
        return self == Earned()


# --- members -------------------------------------------------------------------------


class MemberProfile(BaseModel):
    """A member's page in the community: the public nickname they chose, what they
    earned, and (for a customer) the loyalty tier analytics last announced."""

    model_config = ConfigDict(extra="ignore")

    id: str
    customer_id: str | None = None
    staff: bool = False
    nickname: str | None = None
    earned: Earned = Field(default_factory=Earned)
    tier: str | None = None
    tier_changed_at: datetime | None = None
    erased: bool = False
    merged_into: str | None = None
    nickname_from: str | None = None  # the merged member whose nickname this one took
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def display_name(self) -> str:
        if self.erased:
            return ERASED_TEXT
        return self.nickname or default_nickname(self.id, staff=self.staff)

    @property
    def reputation(self) -> int:
        return self.earned.reputation


@dataclass(frozen=True)
class Author:
    """What every post shows beside its text about who wrote it."""

    member_id: str
    nickname: str
    reputation: int
    tier: str | None
    staff: bool


def author_of(member_id: str, profile: MemberProfile | None) -> Author:
    if profile is None:
        staff = member_id.startswith(STAFF_PREFIX)
        return Author(member_id, default_nickname(member_id, staff=staff), 0, None, staff)
    return Author(member_id, profile.display_name, profile.reputation, profile.tier, profile.staff)


class SetNickname(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nickname: Nickname = Field(
        description="the name shown beside your posts; never taken from your profile"
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> Self:
        self.nickname = " ".join(self.nickname.split())
        if self.nickname in (ERASED_TEXT, DELETED_TEXT):
            raise ValueError(f"{self.nickname} is reserved")
        return self


# --- posts ---------------------------------------------------------------------------


class Post(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    kind: PostKind
    author_id: str
    by_staff: bool = False
    body: str
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None = None
    up: int = 0
    down: int = 0
    hidden: bool = False
    hidden_at: datetime | None = None
    hidden_by: str | None = None
    hide_reason: str | None = None
    deleted_at: datetime | None = None
    erased: bool = False
    report_count: int = 0
    moved_from: str | None = None  # the merged member whose post this was
    version: int = 1

    @property
    def score(self) -> int:
        return self.up - self.down

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def live(self) -> bool:
        """Shown to customers and earning reputation: neither hidden nor deleted."""
        return not (self.hidden or self.deleted)

    def visible_to(self, reader: Reader) -> bool:
        """Staff see hidden posts too; nobody else does."""
        return reader.staff or not self.hidden

    def editable_until(self, window: timedelta) -> datetime:
        return self.created_at + window

    def _next(self, now: datetime, **changes: Any) -> Self:
        return self.model_copy(update={**changes, "updated_at": now, "version": self.version + 1})


class Question(Post):
    kind: Literal[PostKind.QUESTION] = PostKind.QUESTION
    title: str
    locale: Locale
    tags: list[str] = Field(default_factory=list)
    product: str | None = None
    category: str | None = None
    accepted_answer_id: str | None = None
    answer_count: int = Field(default=0, description="answers neither hidden nor deleted")

    @property
    def direction(self) -> Direction:
        return direction_of(self.locale)

    def excerpt(self, length: int = EXCERPT_LENGTH) -> str:
        """The start of the body on one line, cut at a word, for lists and search hits."""
        flat = " ".join(self.body.split())
        if len(flat) <= length:
            return flat
        cut = flat[: length - 1]
        return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


class Answer(Post):
    kind: Literal[PostKind.ANSWER] = PostKind.ANSWER
    question_id: str
    asker_id: str = Field(description="who asked the question (acceptance of one's own earns 0)")
    accepted: bool = False
    asker_moved_from: str | None = None  # the merged member who asked the question


AnyPost = Question | Answer


def earned(post: Post) -> Earned:
    """What a post earns its author (see the module's documentation)."""
    if not post.live:
        return Earned()
    if isinstance(post, Question):
        return Earned(question_upvotes=post.up, downvotes=post.down)
    accepted = isinstance(post, Answer) and post.accepted and post.author_id != post.asker_id
    return Earned(answer_upvotes=post.up, downvotes=post.down, accepted_answers=int(accepted))


def is_searchable_change(before: Question, after: Question) -> bool:
    """Whether a change to a question changes what its search finds."""
    fields = ("title", "body", "tags", "locale", "hidden", "deleted_at", "erased")
    return any(getattr(before, name) != getattr(after, name) for name in fields)


# --- commands ------------------------------------------------------------------------


class AskQuestion(Writing):
    model_config = ConfigDict(extra="forbid")

    locale: Locale
    title: Title
    body: Body = Field(description=BODY_DESCRIPTION)
    tags: Tags = Field(default_factory=list)
    product: Ref | None = Field(default=None, description="the product it is about, if one")
    category: Ref | None = Field(default=None, description="the product category, if one")


class ReviseQuestion(Revision):
    """The fields to change; `product` and `category` may be set to null to clear them."""

    model_config = ConfigDict(extra="forbid")

    locale: Locale | None = None
    title: Title | None = None
    body: Body | None = Field(default=None, description=BODY_DESCRIPTION)
    tags: Tags | None = None
    product: Ref | None = None
    category: Ref | None = None

    required: ClassVar[tuple[str, ...]] = ("locale", "title", "body", "tags")


class WriteAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Body = Field(description=BODY_DESCRIPTION)


class CastVote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: VoteValue


class AcceptAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer_id: Ref


class ReportPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class HidePost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = Field(default=None, description="why, for staff only")


# --- votes and reports ---------------------------------------------------------------


class Vote(BaseModel):
    model_config = ConfigDict(extra="ignore")

    post_id: str
    voter_id: str
    value: VoteValue
    cast_at: datetime
    moved_from: str | None = None

    @property
    def id(self) -> str:
        return vote_id(self.post_id, self.voter_id)


def vote_id(post_id: str, voter_id: str) -> str:
    """One vote per voter per post: the pair is the vote's key."""
    return f"{post_id}:{voter_id}"


class Report(BaseModel):
    model_config = ConfigDict(extra="ignore")

    post_id: str
    kind: PostKind
    question_id: str
    reporter_id: str
    reason: str
    reported_at: datetime

    @property
    def id(self) -> str:
        return vote_id(self.post_id, self.reporter_id)


@dataclass(frozen=True)
class After:
    """Where the next page of questions starts (keyset): past this question."""

    created_at: datetime
    id: str
    score: int = 0


@dataclass(frozen=True)
class QuestionFilter:
    """Which questions a listing asks for (all given criteria hold)."""

    locale: Locale | None = None
    tag: str | None = None
    unanswered: bool = False
    hidden: bool | None = None  # staff: only hidden (True) or only shown (False) ones
    sort: QuestionSort = QuestionSort.NEWEST

    def for_reader(self, reader: Reader) -> QuestionFilter:
        """Whoever is not staff lists the questions that are not hidden."""
        if reader.staff:
            return self
        if self.hidden:
            raise InvalidInput("hidden questions are listed for staff only")
        return QuestionFilter(self.locale, self.tag, self.unanswered, False, self.sort)


# --- rules ---------------------------------------------------------------------------


def new_id(kind: PostKind) -> str:
    prefix = QUESTION_PREFIX if kind is PostKind.QUESTION else ANSWER_PREFIX
    return f"{prefix}{uuid.uuid4().hex}"


def ask(command: AskQuestion, author: Member, now: datetime) -> tuple[Question, list[EventPayload]]:
    question = Question(
        id=new_id(PostKind.QUESTION),
        author_id=author.member_id,
        by_staff=author.staff,
        **command.model_dump(),
        created_at=now,
        updated_at=now,
    )
    payloads: list[EventPayload] = []
    if author.customer_id is not None:
        payloads.append(
            QuestionAsked(
                customer_id=author.customer_id,
                question_id=question.id,
                locale=question.locale.value,
                title=question.title,
                body=question.body,
                tags=question.tags,
                product=question.product,
                category=question.category,
                asked_at=now,
            )
        )
    return question, payloads


def _open(question: Question) -> None:
    if question.deleted:
        raise Conflict(f"question {question.id} was deleted")


def answer(
    question: Question, command: WriteAnswer, author: Member, now: datetime
) -> tuple[Answer, Question, list[EventPayload]]:
    """A new answer, and the question counting it."""
    _open(question)
    if question.hidden:
        raise Conflict(f"question {question.id} is hidden")
    reply = Answer(
        id=new_id(PostKind.ANSWER),
        author_id=author.member_id,
        by_staff=author.staff,
        body=command.body,
        question_id=question.id,
        asker_id=question.author_id,
        created_at=now,
        updated_at=now,
    )
    counted = question._next(now, answer_count=question.answer_count + 1)
    payloads: list[EventPayload] = []
    if author.customer_id is not None:
        payloads.append(
            AnswerPosted(
                customer_id=author.customer_id,
                question_id=question.id,
                answer_id=reply.id,
                body=reply.body,
                posted_at=now,
            )
        )
    return reply, counted, payloads


def _ensure_author(post: Post, member: Member) -> None:
    if post.author_id != member.member_id:
        raise Forbidden(f"only its author may change {post.kind.value} {post.id}")


def _ensure_editable(post: Post, member: Member, now: datetime, window: timedelta) -> None:
    _ensure_author(post, member)
    if post.deleted:
        raise Conflict(f"{post.kind.value} {post.id} was deleted")
    if now > post.editable_until(window):
        raise Conflict(
            f"{post.kind.value} {post.id} could be edited until "
            f"{post.editable_until(window).isoformat()}",
            editable_until=post.editable_until(window).isoformat(),
        )


def revise_question(
    question: Question, command: ReviseQuestion, member: Member, now: datetime, window: timedelta
) -> Question:
    _ensure_editable(question, member, now, window)
    changes = {
        name: value for name, value in command.changes().items() if getattr(question, name) != value
    }
    if not changes:
        return question
    return question._next(now, **changes, edited_at=now)


def revise_answer(
    reply: Answer, command: WriteAnswer, member: Member, now: datetime, window: timedelta
) -> Answer:
    _ensure_editable(reply, member, now, window)
    if reply.body == command.body:
        return reply
    return reply._next(now, body=command.body, edited_at=now)


def delete(post: AnyPost, member: Member, now: datetime) -> AnyPost:
    """The post keeps its place in the thread (and its votes) without its text."""
    _ensure_author(post, member)
    if post.deleted:
        return post
    if isinstance(post, Question):
        return post._next(now, title=DELETED_TEXT, body="", tags=[], deleted_at=now)
    return post._next(now, body="", deleted_at=now)


def counted_answers(question: Question, before: Answer | None, after: Answer) -> Question:
    """The question once one of its answers went from ``before`` to ``after``: it counts
    the answers shown to customers."""
    change = int(after.live) - int(before.live if before is not None else False)
    if change == 0:
        return question
    return question._next(after.updated_at, answer_count=max(0, question.answer_count + change))


def vote(
    post: AnyPost, voter: Member, value: VoteValue | None, previous: VoteValue | None
) -> AnyPost:
    """The post with ``voter``'s vote ``value`` (None: withdrawn) instead of
    ``previous``; the same post when the vote does not change."""
    if post.author_id == voter.member_id:
        raise Conflict("nobody votes on their own post")
    if post.deleted and value is not None:
        raise Conflict(f"{post.kind.value} {post.id} was deleted")
    if value == previous:
        return post
    up = post.up - int(previous is VoteValue.UP) + int(value is VoteValue.UP)
    down = post.down - int(previous is VoteValue.DOWN) + int(value is VoteValue.DOWN)
    return post.model_copy(update={"up": up, "down": down, "version": post.version + 1})


def retract(post: AnyPost, previous: VoteValue) -> AnyPost:
    """The post without one vote (a merged member's second vote on it)."""
    up = post.up - int(previous is VoteValue.UP)
    down = post.down - int(previous is VoteValue.DOWN)
    return post.model_copy(update={"up": up, "down": down, "version": post.version + 1})


@dataclass(frozen=True)
class Acceptance:
    """What accepting an answer changes: the question, the answers, the events."""

    question: Question
    answers: list[Answer] = field(default_factory=list)
    payloads: list[EventPayload] = field(default_factory=list)


def _ensure_may_accept(question: Question, member: Member) -> None:
    if not member.staff and question.author_id != member.member_id:
        raise Forbidden("only the asker (or staff) accepts an answer")
    _open(question)


def accept(
    question: Question,
    chosen: Answer,
    previous: Answer | None,
    member: Member,
    author_customer: str | None,
    now: datetime,
) -> Acceptance:
    """``chosen`` becomes the accepted answer (instead of ``previous``, if one was);
    ``author_customer`` is the chosen answer's author when a customer wrote it."""
    _ensure_may_accept(question, member)
    if chosen.question_id != question.id:
        raise InvalidInput(f"answer {chosen.id} does not answer question {question.id}")
    if not chosen.live:
        raise Conflict(f"answer {chosen.id} is {'deleted' if chosen.deleted else 'hidden'}")
    if question.accepted_answer_id == chosen.id and chosen.accepted:
        return Acceptance(question)
    changed = [chosen._next(now, accepted=True)]
    if previous is not None and previous.id != chosen.id and previous.accepted:
        changed.append(previous._next(now, accepted=False))
    payloads: list[EventPayload] = []
    if author_customer is not None:
        payloads.append(
            AnswerAccepted(
                customer_id=author_customer,
                question_id=question.id,
                answer_id=chosen.id,
                accepted_by=AcceptedBy.STAFF if member.staff else AcceptedBy.ASKER,
                accepted_at=now,
            )
        )
    return Acceptance(question._next(now, accepted_answer_id=chosen.id), changed, payloads)


def withdraw_acceptance(
    question: Question, previous: Answer | None, member: Member, now: datetime
) -> Acceptance:
    """No answer is accepted any more."""
    _ensure_may_accept(question, member)
    if question.accepted_answer_id is None:
        return Acceptance(question)
    changed = [previous._next(now, accepted=False)] if previous and previous.accepted else []
    return Acceptance(question._next(now, accepted_answer_id=None), changed)


def hide(post: AnyPost, moderator: Member, reason: str | None, now: datetime) -> AnyPost:
    """Customers no longer see it (nor find it); staff do, marked hidden."""
    if post.hidden:
        return post
    return post._next(
        now, hidden=True, hidden_at=now, hidden_by=moderator.member_id, hide_reason=reason
    )


def unhide(post: AnyPost, now: datetime) -> AnyPost:
    if not post.hidden:
        return post
    return post._next(now, hidden=False, hidden_at=None, hidden_by=None, hide_reason=None)


def reported(post: AnyPost) -> AnyPost:
    return post.model_copy(
        update={"report_count": post.report_count + 1, "version": post.version + 1}
    )


def erase(post: AnyPost, now: datetime) -> AnyPost:
    """The post without its author's words; its place, votes and acceptance stay."""
    if post.erased:
        return post
    if post.deleted:
        return post._next(now, erased=True)
    if isinstance(post, Question):
        return post._next(now, title=ERASED_TEXT, body=ERASED_TEXT, tags=[], erased=True)
    return post._next(now, body=ERASED_TEXT, erased=True)


def thread_order(answers: list[Answer]) -> list[Answer]:
    """The accepted answer first, then the best scored, then the oldest."""
    return sorted(answers, key=lambda a: (not a.accepted, -a.score, a.created_at, a.id))
