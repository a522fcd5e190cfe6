"""HTTP API of the help centre: articles (FAQ, product information, best practices) and
their search.

Staff (admin, agent) write, publish, unpublish and delete articles and see drafts; every
other token (customers included) reads and searches published articles only, and a draft
is not found for it (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from services.complaints import help_centre
from services.complaints.api import SearchText, is_staff
from services.complaints.domain.articles import (
    Article,
    ArticleFilter,
    ArticleKind,
    ArticleStatus,
    ReviseArticle,
    WriteArticle,
)
from services.complaints.domain.language import Direction, Locale
from services.complaints.help_centre import ArticleSearch, HelpCentre
from services.complaints.help_centre_search import Hit
from shared.auth import CurrentPrincipal, StaffPrincipal
from shared.errors import InvalidInput
from shared.pagination import Page, decode_cursor, page_of

ArticleId = Annotated[str, Path(min_length=1, max_length=200)]


def get_help_centre(request: Request) -> HelpCentre:
    centre: HelpCentre = request.app.state.help_centre
    return centre


HelpCentreDep = Annotated[HelpCentre, Depends(get_help_centre)]


class ArticlePublic(BaseModel):
    id: str
    kind: ArticleKind
    locale: Locale
    direction: Direction = Field(description="`rtl` for Persian: lay the page out right to left")
    title: str
    body: str = Field(description="plain text or light markdown")
    tags: list[str]
    product: str | None
    category: str | None
    status: ArticleStatus
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    created_by: str
    updated_by: str
    version: int = Field(description="also the ETag; send it as If-Match to edit safely")

    @classmethod
    def of(cls, article: Article) -> ArticlePublic:
        return cls(**article.model_dump(), direction=article.direction)


class ArticleSummary(BaseModel):
    id: str
    kind: ArticleKind
    locale: Locale
    direction: Direction
    title: str
    excerpt: str = Field(description="the start of the body")
    tags: list[str]
    product: str | None
    category: str | None
    status: ArticleStatus
    updated_at: datetime
    published_at: datetime | None
    score: float | None = Field(
        default=None, description="relevance (BM25) in a search, higher is better; null in lists"
    )

    @classmethod
    def of(cls, article: Article, score: float | None = None) -> ArticleSummary:
        return cls(
            **article.model_dump(exclude={"body"}),
            direction=article.direction,
            excerpt=article.excerpt(),
            score=score,
        )


class ArticlePage(Page[ArticleSummary]):
    pass


class Suggestion(BaseModel):
    id: str
    title: str
    kind: ArticleKind
    locale: Locale
    direction: Direction
    score: float

    @classmethod
    def of(cls, hit: Hit) -> Suggestion:
        article = hit.article
        return cls(
            id=article.id,
            title=article.title,
            kind=article.kind,
            locale=article.locale,
            direction=article.direction,
            score=hit.score,
        )


def _with_etag(response: Response, article: Article) -> ArticlePublic:
    response.headers["ETag"] = f'"{article.version}"'
    return ArticlePublic.of(article)


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not (tag.isascii() and tag.isdigit()):
        raise InvalidInput(f"If-Match {if_match!r} is not an ETag this API issued")
    return int(tag)


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such article (or, for all but staff, a draft)"}
}

router = APIRouter(prefix="/api/v1/help", tags=["help centre"])


@router.post("/articles", status_code=status.HTTP_201_CREATED)
async def create_article(
    body: WriteArticle, hc: HelpCentreDep, response: Response, principal: StaffPrincipal
) -> ArticlePublic:
    """A new article, as a draft (publish it to show it to customers)."""
    article = await help_centre.create_article(hc, body, principal.subject)
    response.headers["Location"] = f"/api/v1/help/articles/{article.id}"
    return _with_etag(response, article)


@router.get("/articles")
async def list_articles(
    hc: HelpCentreDep,
    principal: CurrentPrincipal,
    q: SearchText | None = None,
    locale: Locale | None = None,
    kind: ArticleKind | None = None,
    status: Annotated[
        ArticleStatus | None, Query(description="staff only: `draft` or `published`")
    ] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ArticlePage:
    """Without `q`: articles newest first, a page at a time (staff see drafts too).
    With `q`: the published articles that best match it, most relevant first (one page)."""
    if q is None:
        query = ArticleFilter(locale, kind, status, tag.strip().lower() if tag else None)
        found = await help_centre.list_articles(
            hc, query, decode_cursor(cursor), limit + 1, staff=is_staff(principal)
        )
        page, next_cursor = page_of(found, limit, lambda a: (a.created_at, a.id))
        return ArticlePage(items=[ArticleSummary.of(a) for a in page], next_cursor=next_cursor)
    if cursor is not None:
        raise InvalidInput("a search answers one page, the best matches first; raise `limit`")
    if status is ArticleStatus.DRAFT or tag is not None:
        raise InvalidInput("a search covers published articles; `status` and `tag` list them")
    hits = await help_centre.search_articles(hc, ArticleSearch(q, locale, kind, limit))
    return ArticlePage(
        items=[ArticleSummary.of(h.article, h.score) for h in hits], next_cursor=None
    )


@router.get("/suggestions")
async def suggestions(
    q: SearchText, hc: HelpCentreDep, _: CurrentPrincipal, locale: Locale | None = None
) -> list[Suggestion]:
    """The few published articles best matching what a customer is typing (e.g. into the
    support request form), most relevant first."""
    return [Suggestion.of(hit) for hit in await help_centre.suggest(hc, q, locale)]


@router.get("/articles/{article_id}", responses=NOT_FOUND)
async def read_article(
    article_id: ArticleId, hc: HelpCentreDep, response: Response, principal: CurrentPrincipal
) -> ArticlePublic:
    article = await help_centre.get_article(hc, article_id, staff=is_staff(principal))
    return _with_etag(response, article)


@router.patch(
    "/articles/{article_id}",
    responses={**NOT_FOUND, 412: {"description": "If-Match names a stale version"}},
)
async def revise_article(
    article_id: ArticleId,
    body: ReviseArticle,
    hc: HelpCentreDep,
    response: Response,
    principal: StaffPrincipal,
    if_match: Annotated[str | None, Header()] = None,
) -> ArticlePublic:
    """Change some fields; a published article stays published."""
    article = await help_centre.revise_article(
        hc, article_id, body, principal.subject, _expected_version(if_match)
    )
    return _with_etag(response, article)


@router.post("/articles/{article_id}/publish", responses=NOT_FOUND)
async def publish_article(
    article_id: ArticleId, hc: HelpCentreDep, response: Response, principal: StaffPrincipal
) -> ArticlePublic:
    """Customers read and find it from now on (publishing twice changes nothing)."""
    article = await help_centre.publish_article(hc, article_id, principal.subject)
    return _with_etag(response, article)


@router.post("/articles/{article_id}/unpublish", responses=NOT_FOUND)
async def unpublish_article(
    article_id: ArticleId, hc: HelpCentreDep, response: Response, principal: StaffPrincipal
) -> ArticlePublic:
    """Back to a draft: hidden from customers and from search."""
    article = await help_centre.unpublish_article(hc, article_id, principal.subject)
    return _with_etag(response, article)


@router.delete(
    "/articles/{article_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND
)
async def delete_article(article_id: ArticleId, hc: HelpCentreDep, _: StaffPrincipal) -> None:
    await help_centre.delete_article(hc, article_id)
