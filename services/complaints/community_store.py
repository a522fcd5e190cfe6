"""MongoDB adapter of the community: posts, votes, reports, members and nicknames.

- ``community_posts``: questions and answers (``kind``), one document each; ``version``
  guards every replacement. Storing a post also moves what it earns its author: the
  difference of :func:`~services.complaints.domain.community.earned` before and after is
  ``$inc``-ed into the author's counters in the same transaction, so a reputation is
  always the sum over the member's posts.
- ``community_votes`` and ``community_reports``: keyed ``<post id>:<member id>``, so a
  member votes (and reports) a post once whatever the race.
- ``community_members``: each member's nickname, reputation counters and loyalty tier.
- ``community_nicknames``: keyed by the folded nickname, so two members never share one.
- ``community``: the questions' search version, raised with every change search sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne

from services.complaints.domain.community import (
    ERASED_TEXT,
    After,
    Answer,
    AnyPost,
    Earned,
    MemberProfile,
    PostKind,
    Question,
    QuestionFilter,
    QuestionSort,
    Report,
    Vote,
    VoteValue,
    earned,
)
from services.complaints.search_store import CatalogueVersion
from shared.identity import Link, link_of
from shared.mongo import Database, Session, find_in
from shared.unit_of_work import UnitOfWork

CATALOGUE = "questions"
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
BEST_FIRST = [("score", DESCENDING), *NEWEST_FIRST]


class CommunityStore:
    def __init__(self, db: Database) -> None:
        self.posts = db["community_posts"]
        self.votes = db["community_votes"]
        self.reports = db["community_reports"]
        self.members = db["community_members"]
        self.nicknames = db["community_nicknames"]
        self.catalogue = CatalogueVersion(db["community"], CATALOGUE)

    async def ensure_indexes(self) -> None:
        await self.posts.create_index([("kind", ASCENDING), *NEWEST_FIRST])
        await self.posts.create_index([("kind", ASCENDING), *BEST_FIRST])
        await self.posts.create_index([("question_id", ASCENDING), ("created_at", ASCENDING)])
        await self.posts.create_index("author_id")
        await self.posts.create_index("asker_id")
        await self.votes.create_index("voter_id")
        await self.reports.create_index([("reported_at", DESCENDING), ("_id", DESCENDING)])
        await self.reports.create_index("reporter_id")
        await self.nicknames.create_index("member_id")
        await self.catalogue.ensure()

    # --- posts

    async def get(self, post_id: str, session: Session | None = None) -> AnyPost | None:
        document = await self.posts.find_one({"_id": post_id}, session=session)
        return None if document is None else _post(document)

    async def get_many(
        self, post_ids: Iterable[str], session: Session | None = None
    ) -> dict[str, AnyPost]:
        found = await find_in(self.posts, "_id", post_ids, session=session)
        return {document["_id"]: _post(document) for document in found}

    async def insert(self, post: AnyPost, session: Session) -> None:
        await self.posts.insert_one(_document(post), session=session)

    async def replace(self, before: AnyPost, after: AnyPost, session: Session) -> bool:
        """Store ``after`` if the stored version is still ``before``'s (False otherwise),
        and move the difference in what the post earns to its author's counters."""
        result = await self.posts.replace_one(
            {"_id": before.id, "version": before.version}, _document(after), session=session
        )
        if result.matched_count != 1:
            return False
        await self.add_earned(after.author_id, earned(after) - earned(before), session)
        return True

    async def answers_of(self, question_id: str) -> list[Answer]:
        cursor = self.posts.find({"kind": PostKind.ANSWER.value, "question_id": question_id})
        return [Answer.model_validate({**d, "id": d["_id"]}) async for d in cursor]

    async def questions(
        self, query: QuestionFilter, after: After | None, limit: int
    ) -> list[Question]:
        """Questions that were not deleted, newest or best scored first, keyset-paginated
        on (created_at, _id) or (score, created_at, _id)."""
        clauses: list[dict[str, Any]] = [{"kind": PostKind.QUESTION.value, "deleted_at": None}]
        if query.locale is not None:
            clauses.append({"locale": query.locale.value})
        if query.tag is not None:
            clauses.append({"tags": query.tag})
        if query.unanswered:
            clauses.append({"answer_count": 0})
        if query.hidden is not None:
            clauses.append({"hidden": query.hidden})
        if after is not None:
            older: list[dict[str, Any]] = [
                {"created_at": {"$lt": after.created_at}},
                {"created_at": after.created_at, "_id": {"$lt": after.id}},
            ]
            if query.sort is QuestionSort.VOTES:
                clauses.append(
                    {
                        "$or": [
                            {"score": {"$lt": after.score}},
                            *({"score": after.score, **clause} for clause in older),
                        ]
                    }
                )
            else:
                clauses.append({"$or": older})
        order = BEST_FIRST if query.sort is QuestionSort.VOTES else NEWEST_FIRST
        cursor = self.posts.find({"$and": clauses}).sort(order).limit(limit)
        return [_question(document) async for document in cursor]

    async def searchable(self) -> list[Question]:
        """Every question search may find (hidden ones too: staff find those)."""
        cursor = self.posts.find(
            {"kind": PostKind.QUESTION.value, "deleted_at": None, "erased": False}
        )
        return [_question(document) async for document in cursor]

    async def bump_catalogue(self, session: Session) -> None:
        await self.catalogue.bump(session)

    async def catalogue_version(self) -> int:
        return await self.catalogue.current()

    # --- votes

    async def vote(self, key: str, session: Session | None = None) -> Vote | None:
        document = await self.votes.find_one({"_id": key}, session=session)
        return None if document is None else Vote.model_validate(document)

    async def put_vote(self, vote: Vote, session: Session) -> None:
        await self.votes.replace_one(
            {"_id": vote.id}, {"_id": vote.id, **vote.model_dump()}, upsert=True, session=session
        )

    async def delete_vote(self, key: str, session: Session) -> None:
        await self.votes.delete_one({"_id": key}, session=session)

    async def votes_of(self, voter_id: str, post_ids: Iterable[str]) -> dict[str, VoteValue]:
        """The voter's votes on these posts, by post id."""
        found = await find_in(self.votes, "post_id", post_ids, {"voter_id": voter_id})
        return {document["post_id"]: VoteValue(document["value"]) for document in found}

    # --- reports

    async def has_report(self, key: str, session: Session) -> bool:
        return await self.reports.find_one({"_id": key}, {"_id": 1}, session=session) is not None

    async def insert_report(self, report: Report, session: Session) -> None:
        await self.reports.insert_one({"_id": report.id, **report.model_dump()}, session=session)

    async def report_page(self, after: tuple[datetime, str] | None, limit: int) -> list[Report]:
        """Newest first, keyset-paginated on (reported_at, _id)."""
        filters: dict[str, Any] = {}
        if after is not None:
            moment, key = after
            filters = {
                "$or": [
                    {"reported_at": {"$lt": moment}},
                    {"reported_at": moment, "_id": {"$lt": key}},
                ]
            }
        cursor = (
            self.reports.find(filters)
            .sort([("reported_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [Report.model_validate(document) async for document in cursor]

    # --- members

    async def member(self, member_id: str, session: Session | None = None) -> MemberProfile | None:
        document = await self.members.find_one({"_id": member_id}, session=session)
        return None if document is None else _member(document)

    async def link(self, member_id: str, session: Session | None = None) -> Link | None:
        """Whom the member was merged into, and whether they were erased."""
        document = await self.members.find_one(
            {"_id": member_id}, {"merged_into": 1, "erased": 1}, session=session
        )
        return link_of(document, erased="erased")

    async def members_by_id(self, member_ids: Iterable[str]) -> dict[str, MemberProfile]:
        found = await find_in(self.members, "_id", member_ids)
        return {document["_id"]: _member(document) for document in found}

    async def ensure_member(
        self, member_id: str, customer_id: str | None, staff: bool, now: datetime, session: Session
    ) -> None:
        await self.members.update_one(
            {"_id": member_id},
            {
                "$setOnInsert": {
                    "customer_id": customer_id,
                    "staff": staff,
                    "nickname": None,
                    "created_at": now,
                }
            },
            upsert=True,
            session=session,
        )

    async def add_earned(self, member_id: str, delta: Earned, session: Session) -> None:
        if delta.nothing:
            return
        changes = {f"earned.{name}": value for name, value in delta.model_dump().items() if value}
        await self.members.update_one(
            {"_id": member_id}, {"$inc": changes}, upsert=True, session=session
        )

    async def claim_nickname(self, key: str, member_id: str, session: Session) -> bool:
        """Take the nickname ``key`` for ``member_id``; False when another member holds it."""
        holder = await self.nicknames.find_one({"_id": key}, session=session)
        if holder is not None:
            return bool(holder["member_id"] == member_id)
        await self.nicknames.delete_many({"member_id": member_id}, session=session)
        await self.nicknames.insert_one({"_id": key, "member_id": member_id}, session=session)
        return True

    async def set_nickname(
        self, member_id: str, nickname: str | None, now: datetime, session: Session
    ) -> None:
        await self.members.update_one(
            {"_id": member_id},
            {"$set": {"nickname": nickname, "nickname_from": None, "updated_at": now}},
            session=session,
        )

    def set_tier(self, uow: UnitOfWork, customer_id: str, tier: str, changed_at: datetime) -> None:
        """The customer's loyalty tier as of ``changed_at``, unless a later one is known,
        written when ``uow`` commits: one update that decides by itself (a pipeline), so a
        batch of tier changes is one write and no read; a customer not yet a member
        becomes one."""
        later_known = {"$gt": ["$tier_changed_at", changed_at]}  # (a missing date is not)
        uow.write(
            self.members,
            UpdateOne(
                {"_id": customer_id},
                [
                    {
                        "$set": {
                            "customer_id": {"$ifNull": ["$customer_id", customer_id]},
                            "staff": {"$ifNull": ["$staff", False]},
                            "nickname": {"$ifNull": ["$nickname", None]},
                            "created_at": {"$ifNull": ["$created_at", changed_at]},
                            "tier": {"$cond": [later_known, "$tier", tier]},
                            "tier_changed_at": {"$max": ["$tier_changed_at", changed_at]},
                        }
                    }
                ],
                upsert=True,
            ),
            key=customer_id,
        )

    # --- erasure and merges

    async def posts_by(self, member_id: str, session: Session) -> list[AnyPost]:
        cursor = self.posts.find({"author_id": member_id}, session=session)
        return [_post(document) async for document in cursor]

    async def erase_reports(self, reporter_id: str, session: Session) -> None:
        await self.reports.update_many(
            {"reporter_id": reporter_id}, {"$set": {"reason": ERASED_TEXT}}, session=session
        )

    async def erase_member(self, customer_id: str, now: datetime, session: Session) -> None:
        """The member page without a nickname (none may be chosen again)."""
        await self.nicknames.delete_many({"member_id": customer_id}, session=session)
        await self.members.update_one(
            {"_id": customer_id},
            {
                "$set": {"nickname": None, "erased": True, "updated_at": now},
                "$setOnInsert": {"customer_id": customer_id, "staff": False, "created_at": now},
            },
            upsert=True,
            session=session,
        )

    async def move_posts(self, source_id: str, target_id: str, session: Session) -> None:
        """The source member's posts (and the answers to its questions) become the
        target's, remembering where they came from."""
        await self.posts.update_many(
            {"author_id": source_id},
            {"$set": {"author_id": target_id, "moved_from": source_id}, "$inc": {"version": 1}},
            session=session,
        )
        await self.posts.update_many(
            {"asker_id": source_id},
            {
                "$set": {"asker_id": target_id, "asker_moved_from": source_id},
                "$inc": {"version": 1},
            },
            session=session,
        )

    async def move_posts_back(self, source_id: str, target_id: str, session: Session) -> None:
        """An undone merge takes back exactly the posts that moved."""
        await self.posts.update_many(
            {"author_id": target_id, "moved_from": source_id},
            {"$set": {"author_id": source_id, "moved_from": None}, "$inc": {"version": 1}},
            session=session,
        )
        await self.posts.update_many(
            {"asker_id": target_id, "asker_moved_from": source_id},
            {"$set": {"asker_id": source_id, "asker_moved_from": None}, "$inc": {"version": 1}},
            session=session,
        )

    async def votes_by(self, voter_id: str, session: Session) -> list[Vote]:
        cursor = self.votes.find({"voter_id": voter_id}, session=session)
        return [Vote.model_validate(document) async for document in cursor]

    async def rekey_vote(self, before: Vote, after: Vote, session: Session) -> None:
        await self.votes.delete_one({"_id": before.id}, session=session)
        await self.put_vote(after, session)

    async def recount(self, customer_id: str, now: datetime, session: Session) -> None:
        """The customer's counters summed again over their posts (after a merge)."""
        total = Earned()
        for post in await self.posts_by(customer_id, session):
            total += earned(post)
        await self.members.update_one(
            {"_id": customer_id},
            {
                "$set": {"earned": total.model_dump()},
                "$setOnInsert": {
                    "customer_id": customer_id,
                    "staff": False,
                    "nickname": None,
                    "created_at": now,
                },
            },
            upsert=True,
            session=session,
        )

    async def merge_members(
        self, source: MemberProfile, target: MemberProfile, now: datetime, session: Session
    ) -> None:
        """The source acts as the survivor from now on; the survivor takes the source's
        nickname and tier when it has none."""
        await self.members.update_one(
            {"_id": source.id},
            {"$set": {"merged_into": target.id, "updated_at": now}},
            session=session,
        )
        changes: dict[str, Any] = {}
        if target.nickname is None and source.nickname is not None:
            changes |= {"nickname": source.nickname, "nickname_from": source.id}
            await self.nicknames.update_many(
                {"member_id": source.id}, {"$set": {"member_id": target.id}}, session=session
            )
        if target.tier is None and source.tier is not None:
            changes |= {"tier": source.tier, "tier_changed_at": source.tier_changed_at}
        if changes:
            await self.members.update_one(
                {"_id": target.id}, {"$set": {**changes, "updated_at": now}}, session=session
            )

    async def unmerge_members(
        self, source_id: str, target: MemberProfile | None, now: datetime, session: Session
    ) -> None:
        """An undone merge gives the source its nickname back."""
        await self.members.update_one(
            {"_id": source_id}, {"$set": {"merged_into": None}}, session=session
        )
        if target is None or target.nickname_from != source_id:
            return
        await self.nicknames.update_many(
            {"member_id": target.id}, {"$set": {"member_id": source_id}}, session=session
        )
        await self.members.update_one(
            {"_id": target.id},
            {"$set": {"nickname": None, "nickname_from": None, "updated_at": now}},
            session=session,
        )


def _document(post: AnyPost) -> dict[str, Any]:
    document = post.model_dump(mode="python", exclude={"id"})
    for name in ("kind", "locale"):
        if name in document:
            document[name] = str(document[name])
    document["score"] = post.score
    document["_id"] = post.id
    return document


def _post(document: dict[str, Any]) -> AnyPost:
    if document.get("kind") == PostKind.QUESTION.value:
        return _question(document)
    return Answer.model_validate({**document, "id": document["_id"]})


def _question(document: dict[str, Any]) -> Question:
    return Question.model_validate({**document, "id": document["_id"]})


def _member(document: dict[str, Any]) -> MemberProfile:
    return MemberProfile.model_validate({**document, "id": document["_id"]})
