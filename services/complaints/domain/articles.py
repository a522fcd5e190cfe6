"""Help-centre articles: FAQ, product information and best practices, one locale each.

Staff write an article as a draft, publish it (customers then read it), revise it,
unpublish or delete it. Every rule takes the article as stored and returns the article as
it becomes (the same object when nothing changes), with its ``version`` one up; the use
cases store it guarded by the version it was read at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.complaints.domain.language import Direction, Locale, Revision, Writing, direction_of
from shared.errors import InvalidInput

EXCERPT_LENGTH = 240
MAX_TAGS = 20


class ArticleKind(StrEnum):
    FAQ = "faq"
    PRODUCT_INFORMATION = "product_information"
    BEST_PRACTICE = "best_practice"


class ArticleStatus(StrEnum):
    DRAFT = "draft"  # staff only
    PUBLISHED = "published"  # everyone with a token


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50_000)]
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=50)
]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]

BODY_DESCRIPTION = "plain text or light markdown; the portal renders it"


class WriteArticle(Writing):
    """A new article; it starts as a draft."""

    model_config = ConfigDict(extra="forbid")

    kind: ArticleKind
    locale: Locale
    title: Title
    body: Body = Field(description=BODY_DESCRIPTION)
    tags: Tags = Field(default_factory=list)
    product: Ref | None = Field(default=None, description="the product it is about, if one")
    category: Ref | None = Field(default=None, description="the product category, if one")


class ReviseArticle(Revision):
    """The fields to change; `product` and `category` may be set to null to clear them."""

    model_config = ConfigDict(extra="forbid")

    kind: ArticleKind | None = None
    locale: Locale | None = None
    title: Title | None = None
    body: Body | None = Field(default=None, description=BODY_DESCRIPTION)
    tags: Tags | None = None
    product: Ref | None = None
    category: Ref | None = None

    required: ClassVar[tuple[str, ...]] = ("kind", "locale", "title", "body", "tags")


class Article(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    kind: ArticleKind
    locale: Locale
    title: str
    body: str
    tags: list[str] = Field(default_factory=list)
    product: str | None = None
    category: str | None = None
    status: ArticleStatus = ArticleStatus.DRAFT
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None = None
    created_by: str
    updated_by: str
    version: int = 1

    @property
    def direction(self) -> Direction:
        return direction_of(self.locale)

    @property
    def published(self) -> bool:
        return self.status is ArticleStatus.PUBLISHED

    def visible(self, *, staff: bool) -> bool:
        """Staff see drafts too; everyone else only what is published."""
        return staff or self.published

    def excerpt(self, length: int = EXCERPT_LENGTH) -> str:
        """The start of the body on one line, cut at a word, for lists and search hits."""
        flat = " ".join(self.body.split())
        if len(flat) <= length:
            return flat
        cut = flat[: length - 1]
        return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"

    def _next(self, author: str, now: datetime, **changes: Any) -> Article:
        return self.model_copy(
            update={**changes, "updated_at": now, "updated_by": author, "version": self.version + 1}
        )


@dataclass(frozen=True)
class ArticleFilter:
    """Which articles a listing asks for (all given criteria hold)."""

    locale: Locale | None = None
    kind: ArticleKind | None = None
    status: ArticleStatus | None = None
    tag: str | None = None

    def for_reader(self, *, staff: bool) -> ArticleFilter:
        """Whoever is not staff lists published articles only."""
        if staff:
            return self
        if self.status is ArticleStatus.DRAFT:
            raise InvalidInput("drafts are listed for staff only")
        return ArticleFilter(self.locale, self.kind, ArticleStatus.PUBLISHED, self.tag)


def new_article_id() -> str:
    return f"art_{uuid.uuid4().hex}"


def new_article(command: WriteArticle, author: str, now: datetime) -> Article:
    return Article(
        id=new_article_id(),
        **command.model_dump(),
        status=ArticleStatus.DRAFT,
        created_at=now,
        updated_at=now,
        created_by=author,
        updated_by=author,
    )


def revise(article: Article, command: ReviseArticle, author: str, now: datetime) -> Article:
    """The article with ``command``'s changes; the same article when they change nothing."""
    changes = {
        name: value for name, value in command.changes().items() if getattr(article, name) != value
    }
    if not changes:
        return article
    return article._next(author, now, **changes)


def publish(article: Article, author: str, now: datetime) -> Article:
    """Customers see it from now on; publishing a published article changes nothing."""
    if article.published:
        return article
    return article._next(author, now, status=ArticleStatus.PUBLISHED, published_at=now)


def unpublish(article: Article, author: str, now: datetime) -> Article:
    """Back to a draft: customers no longer see it nor find it."""
    if not article.published:
        return article
    return article._next(author, now, status=ArticleStatus.DRAFT, published_at=None)
