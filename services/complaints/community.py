"""Community use cases: customers (and staff) ask, answer, vote, accept, report; staff
hide; members choose a nickname; and the events that keep members in step with profiles
(merges, erasure) and analytics (loyalty tiers).

Each change is decided by the pure domain on the posts as stored and written together
with what it earns their authors and the events announcing it (transactional outbox),
guarded by the posts' versions: when another writer got there first, it is decided again
on the fresh state. Search reads the questions' search version first (one ``find_one``)
and builds the process's index again when it was built from another (as the help centre
does), then reads the hits afresh, so a hit is never shown in a state it no longer has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError

from services.complaints import search
from services.complaints.community_store import CommunityStore
from services.complaints.domain import community
from services.complaints.domain.community import (
    DEFAULT_TIER_BENEFITS,
    AcceptAnswer,
    After,
    Answer,
    AnyPost,
    AskQuestion,
    Author,
    HidePost,
    Member,
    MemberProfile,
    PostKind,
    Question,
    QuestionFilter,
    Reader,
    Report,
    ReportPost,
    ReviseQuestion,
    SetNickname,
    TierText,
    Vote,
    VoteValue,
    WriteAnswer,
    benefits_in,
)
from services.complaints.domain.language import Locale
from shared.clock import Clock, to_millisecond, utc_now
from shared.errors import Conflict, Gone, NotFound, PreconditionFailed
from shared.events import Event, new_event
from shared.events.base import EventPayload
from shared.events.customers import CustomerErased, CustomerMerged
from shared.events.insights import SegmentChanged
from shared.identity import End, follow
from shared.mongo import MongoClient, Session, in_transaction, in_transaction_retrying
from shared.outbox import Outbox, OutboxRelay
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork

T = TypeVar("T")
_Revised = TypeVar("_Revised", Question, Answer)

SOURCE = "/rapport/complaints"
ATTEMPTS = 5
# Search asks the index for this many more hits than it shows, for those it drops.
SEARCH_SLACK = 20
SHOWN = "shown"
HIDDEN = "hidden"


class StalePost(Exception):
    """Another writer changed a post between reading and writing it."""


QuestionIndex = search.TextIndex[Question]


def _entry(question: Question) -> search.Entry:
    kind = HIDDEN if question.hidden else SHOWN
    return search.Entry(
        question.id, question.locale, kind, question.title, question.tags, question.body
    )


def _build_index(questions: list[Question], version: int | None) -> QuestionIndex:
    return search.TextIndex(questions, version, _entry)


def _live_index() -> search.LiveIndex[Question, QuestionIndex]:
    return search.LiveIndex(_build_index)


@dataclass
class Community:
    """What the community use cases need: the store, the outbox, the search index, the
    edit window, the loyalty tiers' benefits and the clock."""

    client: MongoClient
    store: CommunityStore
    outbox: Outbox
    relay: OutboxRelay
    index: search.LiveIndex[Question, QuestionIndex] = field(default_factory=_live_index)
    edit_window: timedelta = timedelta(minutes=60)
    tier_benefits: Mapping[str, TierText] = field(default_factory=lambda: DEFAULT_TIER_BENEFITS)
    clock: Clock = utc_now

    def now(self) -> datetime:
        return to_millisecond(self.clock())


@dataclass(frozen=True)
class Decoration:
    """What the posts on a page show beside their text: their authors (nickname,
    reputation, tier) and the reader's own votes."""

    authors: dict[str, Author] = field(default_factory=dict)
    votes: dict[str, VoteValue] = field(default_factory=dict)

    def author(self, post: AnyPost) -> Author:
        return self.authors.get(post.author_id) or community.author_of(post.author_id, None)


@dataclass(frozen=True)
class Thread:
    question: Question
    answers: list[Answer]
    decoration: Decoration


@dataclass(frozen=True)
class MemberView:
    profile: MemberProfile
    benefits: str | None


def _events(payloads: list[EventPayload], now: datetime) -> list[Event[Any]]:
    return [new_event(payload, source=SOURCE, time=now) for payload in payloads]


async def _announce(ctx: Community, session: Session, payloads: list[EventPayload]) -> None:
    if payloads:
        await ctx.outbox.add(session, _events(payloads, ctx.now()))


# --- members ---------------------------------------------------------------------------


async def _acting(ctx: Community, member: Member, session: Session) -> Member:
    """The member as they act now: a merged customer acts as the survivor, an erased one
    not at all (410); their member page exists from their first post on."""
    if member.customer_id is not None:
        reached = await follow(member.member_id, lambda key: ctx.store.link(key, session))
        if reached.end is End.ERASED:
            raise Gone(f"customer {member.customer_id} was erased")
        if reached.customer_id != member.member_id:
            member = Member.customer(reached.customer_id)
    await ctx.store.ensure_member(
        member.member_id, member.customer_id, member.staff, ctx.now(), session
    )
    return member


async def decorate(ctx: Community, posts: Iterable[AnyPost], reader: Reader) -> Decoration:
    """The authors of ``posts`` and the reader's votes on them (one read each)."""
    posts = list(posts)
    authors = {post.author_id for post in posts}
    profiles = await ctx.store.members_by_id(authors)
    votes = (
        await ctx.store.votes_of(reader.member_id, [post.id for post in posts])
        if reader.member_id is not None and posts
        else {}
    )
    return Decoration({key: community.author_of(key, profiles.get(key)) for key in authors}, votes)


async def member_page(
    ctx: Community,
    member_id: str,
    *,
    staff: bool = False,
    known: bool = False,
    locale: Locale = Locale.EN,
) -> MemberView:
    """A member's page: nickname, reputation, loyalty tier and its benefits (in
    ``locale``, else English); ``known``: 404 for a member the community never heard of
    (else a blank page)."""
    profile = await ctx.store.member(member_id)
    if profile is None:
        if known:
            raise NotFound(f"no member {member_id}")
        profile = MemberProfile(id=member_id, staff=staff)
    text = ctx.tier_benefits.get(profile.tier) if profile.tier else None
    return MemberView(profile, None if text is None else benefits_in(text, locale))


async def set_nickname(
    ctx: Community, member: Member, command: SetNickname, locale: Locale = Locale.EN
) -> MemberView:
    """The member's public name from now on, beside every post they wrote; their page
    after, its benefits in ``locale``."""

    async def work(session: Session) -> str:
        acting = await _acting(ctx, member, session)
        key = community.nickname_key(command.nickname)
        if not await ctx.store.claim_nickname(key, acting.member_id, session):
            raise Conflict(f"the nickname {command.nickname!r} is taken; choose another")
        await ctx.store.set_nickname(acting.member_id, command.nickname, ctx.now(), session)
        return acting.member_id

    try:
        member_id = await in_transaction(ctx.client, work)
    except DuplicateKeyError:  # a concurrent claim of the same nickname won
        raise Conflict(f"the nickname {command.nickname!r} is taken; choose another") from None
    return await member_page(ctx, member_id, staff=member.staff, locale=locale)


# --- reading ---------------------------------------------------------------------------


async def _visible_question(
    ctx: Community, question_id: str, reader: Reader, session: Session | None = None
) -> Question:
    question = await ctx.store.get(question_id, session)
    if not isinstance(question, Question) or not question.visible_to(reader):
        raise NotFound(f"no question {question_id}")
    return question


async def _visible_post(
    ctx: Community, post_id: str, reader: Reader, session: Session | None = None
) -> AnyPost:
    """The post, if the reader may see it: staff see everything; nobody else a hidden
    post, nor an answer to a hidden question."""
    post = await ctx.store.get(post_id, session)
    if post is None or not post.visible_to(reader):
        raise NotFound(f"no post {post_id}")
    if isinstance(post, Answer) and not reader.staff:
        try:
            await _visible_question(ctx, post.question_id, reader, session)
        except NotFound:
            raise NotFound(f"no post {post_id}") from None
    return post


async def read_thread(ctx: Community, question_id: str, reader: Reader) -> Thread:
    """The question and the answers the reader may see, the accepted one first."""
    question = await _visible_question(ctx, question_id, reader)
    answers = [
        answer for answer in await ctx.store.answers_of(question_id) if answer.visible_to(reader)
    ]
    answers = community.thread_order(answers)
    return Thread(question, answers, await decorate(ctx, [question, *answers], reader))


async def read_answer(ctx: Community, answer_id: str, reader: Reader) -> Answer:
    answer = await _visible_post(ctx, answer_id, reader)
    if not isinstance(answer, Answer):
        raise NotFound(f"no answer {answer_id}")
    return answer


async def list_questions(
    ctx: Community, query: QuestionFilter, after: After | None, limit: int, reader: Reader
) -> list[Question]:
    """Asks for ``limit`` and returns what it found; customers never see hidden ones."""
    return await ctx.store.questions(query.for_reader(reader), after, limit)


async def search_questions(
    ctx: Community, text: str, locale: Locale | None, limit: int, reader: Reader
) -> list[tuple[Question, float]]:
    """The questions that best match ``text``, best first, with their relevance."""
    index = await ctx.index.at(await ctx.store.catalogue_version(), ctx.store.searchable)
    locales = tuple(Locale) if locale is None else (locale,)
    kind = None if reader.staff else SHOWN
    hits = index.search(text, locales, kind, limit + SEARCH_SLACK)
    fresh = await ctx.store.get_many(question.id for question, _ in hits)
    found: list[tuple[Question, float]] = []
    for question, score in hits:
        now = fresh.get(question.id)
        if isinstance(now, Question) and not now.deleted and now.visible_to(reader):
            found.append((now, score))
    return found[:limit]


# --- writing ---------------------------------------------------------------------------


async def ask_question(ctx: Community, command: AskQuestion, member: Member) -> Question:
    async def work(session: Session) -> Question:
        acting = await _acting(ctx, member, session)
        question, payloads = community.ask(command, acting, ctx.now())
        await ctx.store.insert(question, session)
        await ctx.store.bump_catalogue(session)
        await _announce(ctx, session, payloads)
        return question

    question = await in_transaction(ctx.client, work)
    ctx.relay.wake()
    return question


async def post_answer(
    ctx: Community, question_id: str, command: WriteAnswer, member: Member
) -> Answer:
    async def work(session: Session) -> Answer:
        acting = await _acting(ctx, member, session)
        question = await _visible_question(ctx, question_id, acting.reader, session)
        answer, counted, payloads = community.answer(question, command, acting, ctx.now())
        await ctx.store.insert(answer, session)
        if not await ctx.store.replace(question, counted, session):
            raise StalePost(question_id)
        await _announce(ctx, session, payloads)
        return answer

    answer = await _retrying(ctx, work, question_id)
    ctx.relay.wake()
    return answer


Decide = Callable[[AnyPost, Member | None, Session], Awaitable[tuple[AnyPost, list[EventPayload]]]]


async def _store_change(ctx: Community, before: AnyPost, after: AnyPost, session: Session) -> None:
    """Store ``after`` over ``before`` with what follows from it: the question's count of
    answers, and search seeing the question's new text or visibility."""
    if not await ctx.store.replace(before, after, session):
        raise StalePost(before.id)
    if isinstance(before, Question) and isinstance(after, Question):
        if community.is_searchable_change(before, after):
            await ctx.store.bump_catalogue(session)
    elif isinstance(before, Answer) and isinstance(after, Answer) and before.live != after.live:
        question = await ctx.store.get(after.question_id, session)
        if isinstance(question, Question):
            counted = community.counted_answers(question, before, after)
            if counted is not question and not await ctx.store.replace(question, counted, session):
                raise StalePost(question.id)


async def _retrying(ctx: Community, work: Callable[[Session], Awaitable[T]], post_id: str) -> T:
    try:
        return await in_transaction_retrying(
            ctx.client, work, retry_on=(StalePost,), attempts=ATTEMPTS
        )
    except StalePost:
        raise PreconditionFailed(f"post {post_id} keeps changing; try again") from None


async def _change(ctx: Community, post_id: str, decide: Decide, member: Member | Reader) -> AnyPost:
    """Decide on the stored post (one the reader may see) and store the outcome. A
    ``member`` acts as who they are now (a merged customer as the survivor)."""

    async def work(session: Session) -> AnyPost:
        acting, reader = None, member
        if isinstance(member, Member):
            acting = await _acting(ctx, member, session)
            reader = acting.reader
        assert isinstance(reader, Reader)
        before = await _visible_post(ctx, post_id, reader, session)
        after, payloads = await decide(before, acting, session)
        if after is before:
            return before
        await _store_change(ctx, before, after, session)
        await _announce(ctx, session, payloads)
        return after

    post = await _retrying(ctx, work, post_id)
    ctx.relay.wake()
    assert isinstance(post, Question | Answer)
    return post


def _as(acting: Member | None) -> Member:
    assert acting is not None, "a change by a member names the member"
    return acting


async def revise_question(
    ctx: Community, question_id: str, command: ReviseQuestion, member: Member
) -> Question:
    return await _revise(ctx, question_id, Question, community.revise_question, command, member)


async def revise_answer(
    ctx: Community, answer_id: str, command: WriteAnswer, member: Member
) -> Answer:
    return await _revise(ctx, answer_id, Answer, community.revise_answer, command, member)


async def _revise(
    ctx: Community,
    post_id: str,
    kind: type[_Revised],
    rule: Callable[[_Revised, Any, Member, datetime, timedelta], _Revised],
    command: Any,
    member: Member,
) -> _Revised:
    """The author's edit of a question or an answer, within the edit window."""

    async def decide(
        post: AnyPost, acting: Member | None, _: Session
    ) -> tuple[AnyPost, list[EventPayload]]:
        if not isinstance(post, kind):
            raise NotFound(f"no {kind.__name__.lower()} {post_id}")
        return rule(post, command, _as(acting), ctx.now(), ctx.edit_window), []

    revised = await _change(ctx, post_id, decide, member)
    assert isinstance(revised, kind)
    return revised


async def delete_post(ctx: Community, post_id: str, member: Member, kind: PostKind) -> AnyPost:
    """The author withdraws their post: it keeps its place in the thread, not its text."""

    async def decide(
        post: AnyPost, acting: Member | None, _: Session
    ) -> tuple[AnyPost, list[EventPayload]]:
        if post.kind is not kind:
            raise NotFound(f"no {kind.value} {post_id}")
        return community.delete(post, _as(acting), ctx.now()), []

    return await _change(ctx, post_id, decide, member)


async def cast_vote(
    ctx: Community, post_id: str, member: Member, value: VoteValue | None
) -> AnyPost:
    """The member's vote on the post, replacing the one they cast before (None: take it
    back)."""

    async def decide(
        post: AnyPost, acting: Member | None, session: Session
    ) -> tuple[AnyPost, list[EventPayload]]:
        voter = _as(acting)
        key = community.vote_id(post.id, voter.member_id)
        previous = await ctx.store.vote(key, session)
        after = community.vote(post, voter, value, previous.value if previous else None)
        if after is not post:
            if value is None:
                await ctx.store.delete_vote(key, session)
            else:
                cast = Vote(
                    post_id=post.id, voter_id=voter.member_id, value=value, cast_at=ctx.now()
                )
                await ctx.store.put_vote(cast, session)
        return after, []

    return await _change(ctx, post_id, decide, member)


async def hide_post(ctx: Community, post_id: str, moderator: Member, command: HidePost) -> AnyPost:
    async def decide(
        post: AnyPost, acting: Member | None, _: Session
    ) -> tuple[AnyPost, list[EventPayload]]:
        return community.hide(post, _as(acting), command.reason, ctx.now()), []

    return await _change(ctx, post_id, decide, moderator)


async def unhide_post(ctx: Community, post_id: str, moderator: Member) -> AnyPost:
    async def decide(
        post: AnyPost, _acting: Member | None, _: Session
    ) -> tuple[AnyPost, list[EventPayload]]:
        return community.unhide(post, ctx.now()), []

    return await _change(ctx, post_id, decide, moderator)


async def report_post(
    ctx: Community, post_id: str, reporter_id: str, reader: Reader, command: ReportPost
) -> Report:
    """A report for staff to look at; each reporter reports a post once (409 after)."""
    reported: list[Report] = []

    async def decide(
        post: AnyPost, _acting: Member | None, session: Session
    ) -> tuple[AnyPost, list[EventPayload]]:
        if post.deleted:
            raise Conflict(f"{post.kind.value} {post.id} was deleted")
        report = Report(
            post_id=post.id,
            kind=post.kind,
            question_id=post.question_id if isinstance(post, Answer) else post.id,
            reporter_id=reporter_id,
            reason=command.reason,
            reported_at=ctx.now(),
        )
        if await ctx.store.has_report(report.id, session):
            raise Conflict(f"you reported {post.kind.value} {post.id} already")
        await ctx.store.insert_report(report, session)
        reported[:] = [report]
        return community.reported(post), []

    try:
        await _change(ctx, post_id, decide, reader)
    except DuplicateKeyError:  # the same reporter, twice at once
        raise Conflict(f"you reported post {post_id} already") from None
    return reported[0]


async def list_reports(
    ctx: Community, after: tuple[datetime, str] | None, limit: int
) -> list[Report]:
    return await ctx.store.report_page(after, limit)


async def _accepting(
    ctx: Community,
    question_id: str,
    member: Member,
    decide: Callable[[Question, Answer | None, Member, Session], Awaitable[community.Acceptance]],
) -> Question:
    async def work(session: Session) -> Question:
        acting = await _acting(ctx, member, session)
        question = await _visible_question(ctx, question_id, acting.reader, session)
        previous = None
        if question.accepted_answer_id is not None:
            found = await ctx.store.get(question.accepted_answer_id, session)
            previous = found if isinstance(found, Answer) else None
        outcome = await decide(question, previous, acting, session)
        if outcome.question is question:
            return question
        if not await ctx.store.replace(question, outcome.question, session):
            raise StalePost(question_id)
        for after in outcome.answers:
            stored = await ctx.store.get(after.id, session)
            if stored is None or not await ctx.store.replace(stored, after, session):
                raise StalePost(after.id)
        await _announce(ctx, session, outcome.payloads)
        return outcome.question

    question = await _retrying(ctx, work, question_id)
    ctx.relay.wake()
    assert isinstance(question, Question)
    return question


async def accept_answer(
    ctx: Community, question_id: str, command: AcceptAnswer, member: Member
) -> Question:
    """The asker (or staff) marks the answer that helped; accepting another one moves
    the mark."""

    async def decide(
        question: Question, previous: Answer | None, acting: Member, session: Session
    ) -> community.Acceptance:
        chosen = await ctx.store.get(command.answer_id, session)
        if not isinstance(chosen, Answer) or not chosen.visible_to(acting.reader):
            raise NotFound(f"no answer {command.answer_id}")
        author = await ctx.store.member(chosen.author_id, session)
        customer = author.customer_id if author is not None else None
        return community.accept(question, chosen, previous, acting, customer, ctx.now())

    return await _accepting(ctx, question_id, member, decide)


async def withdraw_acceptance(ctx: Community, question_id: str, member: Member) -> Question:
    async def decide(
        question: Question, previous: Answer | None, acting: Member, _: Session
    ) -> community.Acceptance:
        return community.withdraw_acceptance(question, previous, acting, ctx.now())

    return await _accepting(ctx, question_id, member, decide)


# --- events from the rest of the platform ----------------------------------------------

routes: Routes[Community] = Routes()


@routes.on(SegmentChanged)
async def segment_changed(ctx: Community, event: Event[SegmentChanged], uow: UnitOfWork) -> None:
    """Analytics moved the customer to a loyalty tier: shown beside their name."""
    changed = event.payload
    if changed.loyalty_tier is not None:
        ctx.store.set_tier(uow, changed.customer_id, changed.loyalty_tier, changed.changed_at)


@routes.on(CustomerErased)
async def customer_erased(ctx: Community, event: Event[CustomerErased], uow: UnitOfWork) -> None:
    """The member's posts keep their place, votes and acceptance, not their words; their
    nickname and the reasons of their reports go too."""
    customer_id = event.payload.customer_id
    session = uow.session
    now = ctx.now()
    for before in await ctx.store.posts_by(customer_id, session):
        after = community.erase(before, now)
        if after is not before:
            await _store_change(ctx, before, after, session)  # search forgets the words too
    await ctx.store.erase_reports(customer_id, session)
    await ctx.store.erase_member(customer_id, now, session)
    # Events not yet published lose the member's words (the complaints' own handler of
    # this event does it too; it is idempotent and keeps the community self-contained).
    await ctx.outbox.erase(session, [customer_id])


@routes.on(CustomerMerged)
async def customer_merged(ctx: Community, event: Event[CustomerMerged], uow: UnitOfWork) -> None:
    """The merged customer's membership (posts, votes, nickname, reputation) goes to the
    survivor, and back when the merge is undone."""
    merged = event.payload
    source, target = merged.source_customer_id, merged.customer_id
    session = uow.session
    now = ctx.now()
    if merged.undone:
        await ctx.store.move_posts_back(source, target, session)
        for vote in await ctx.store.votes_by(target, session):
            if vote.moved_from == source:
                back = vote.model_copy(update={"voter_id": source, "moved_from": None})
                await ctx.store.rekey_vote(vote, back, session)
        await ctx.store.unmerge_members(
            source, await ctx.store.member(target, session), now, session
        )
    else:
        await ctx.store.move_posts(source, target, session)
        survivor_voted = {vote.post_id for vote in await ctx.store.votes_by(target, session)}
        for vote in await ctx.store.votes_by(source, session):
            if vote.post_id in survivor_voted:  # one vote per member: the survivor's stays
                await ctx.store.delete_vote(vote.id, session)
                post = await ctx.store.get(vote.post_id, session)
                if post is not None:
                    await _store_change(ctx, post, community.retract(post, vote.value), session)
            else:
                moved = vote.model_copy(update={"voter_id": target, "moved_from": source})
                await ctx.store.rekey_vote(vote, moved, session)
        for customer_id in (source, target):  # the source's token acts as the survivor
            await ctx.store.ensure_member(customer_id, customer_id, False, now, session)
        source_profile = await ctx.store.member(source, session)
        target_profile = await ctx.store.member(target, session)
        assert source_profile is not None
        assert target_profile is not None
        await ctx.store.merge_members(source_profile, target_profile, now, session)
    for customer_id in (source, target):
        await ctx.store.recount(customer_id, now, session)
