"""MongoDB adapter of the help centre: the articles and the catalogue's version counter.

``help_articles`` holds one document per article; its ``version`` guards every
replacement. ``help_centre`` holds one counter document that every article write raises
in the same transaction: a search process compares it with the version its in-memory
index was built from (one ``find_one`` by ``_id``) to know when to build it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.complaints.domain.articles import Article, ArticleFilter, ArticleStatus
from services.complaints.search_store import CatalogueVersion
from shared.mongo import Database, Session

CATALOGUE = "articles"
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


class ArticleStore:
    def __init__(self, db: Database) -> None:
        self.articles = db["help_articles"]
        self.catalogue = CatalogueVersion(db["help_centre"], CATALOGUE)

    async def ensure_indexes(self) -> None:
        await self.articles.create_index(NEWEST_FIRST)
        await self.articles.create_index([("status", ASCENDING), *NEWEST_FIRST])
        await self.articles.create_index([("locale", ASCENDING), *NEWEST_FIRST])
        await self.catalogue.ensure()

    async def get(self, article_id: str, session: Session | None = None) -> Article | None:
        document = await self.articles.find_one({"_id": article_id}, session=session)
        return None if document is None else _article(document)

    async def insert(self, article: Article, session: Session) -> None:
        await self.articles.insert_one(_document(article), session=session)

    async def replace(self, before: Article, after: Article, session: Session) -> bool:
        """Store ``after`` if the stored version is still ``before``'s; False otherwise."""
        result = await self.articles.replace_one(
            {"_id": before.id, "version": before.version}, _document(after), session=session
        )
        return result.matched_count == 1

    async def delete(self, article_id: str, session: Session) -> bool:
        result = await self.articles.delete_one({"_id": article_id}, session=session)
        return result.deleted_count == 1

    async def page(
        self, query: ArticleFilter, after: tuple[datetime, str] | None, limit: int
    ) -> list[Article]:
        """Newest first, keyset-paginated on (created_at, _id)."""
        clauses: list[dict[str, Any]] = [
            {field: str(value)}
            for field, value in (
                ("locale", query.locale),
                ("kind", query.kind),
                ("status", query.status),
                ("tags", query.tag),
            )
            if value
        ]
        if after is not None:
            moment, article_id = after
            clauses.append(
                {
                    "$or": [
                        {"created_at": {"$lt": moment}},
                        {"created_at": moment, "_id": {"$lt": article_id}},
                    ]
                }
            )
        filters = {"$and": clauses} if clauses else {}
        cursor = self.articles.find(filters).sort(NEWEST_FIRST).limit(limit)
        return [_article(document) async for document in cursor]

    async def published(self) -> list[Article]:
        """Every published article: what the search index is built from."""
        cursor = self.articles.find({"status": ArticleStatus.PUBLISHED.value})
        return [_article(document) async for document in cursor]

    async def bump_catalogue(self, session: Session) -> None:
        await self.catalogue.bump(session)

    async def catalogue_version(self) -> int:
        return await self.catalogue.current()


def _document(article: Article) -> dict[str, Any]:
    document = article.model_dump(mode="python", exclude={"id"})
    for field in ("kind", "locale", "status"):
        document[field] = str(document[field])
    document["_id"] = article.id
    return document


def _article(document: dict[str, Any]) -> Article:
    return Article.model_validate({**document, "id": document["_id"]})
