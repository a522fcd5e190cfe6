"""Help-centre use cases: staff write and publish articles, everyone reads and searches.

Each write stores the article and raises the catalogue's version in one transaction,
guarded by the article's version (a concurrent edit is decided again on the fresh
article, or refused with 412 when the caller named the version it edited). Search first
reads the catalogue's version (one ``find_one``) and, when the process's index was built
from another, builds it again from MongoDB: every replica searches what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.complaints.domain import articles
from services.complaints.domain.articles import (
    Article,
    ArticleFilter,
    ArticleKind,
    ReviseArticle,
    WriteArticle,
)
from services.complaints.domain.language import Locale
from services.complaints.help_centre_search import Hit, LiveIndex
from services.complaints.help_centre_store import ArticleStore
from shared.clock import Clock, to_millisecond, utc_now
from shared.errors import NotFound, PreconditionFailed
from shared.mongo import MongoClient, Session, in_transaction, in_transaction_retrying

SUGGESTIONS = 5
ATTEMPTS = 5


class StaleArticle(Exception):
    """Another writer changed the article between reading and writing it."""


@dataclass
class HelpCentre:
    """What the help-centre use cases need: the store, the search index and the clock."""

    client: MongoClient
    store: ArticleStore
    index: LiveIndex = field(default_factory=LiveIndex)
    clock: Clock = utc_now

    def now(self) -> datetime:
        return to_millisecond(self.clock())


@dataclass(frozen=True)
class ArticleSearch:
    """What a search asks for: ``text`` as typed so far, in a locale or all of them."""

    text: str
    locale: Locale | None = None
    kind: ArticleKind | None = None
    limit: int = 20


async def create_article(hc: HelpCentre, command: WriteArticle, author: str) -> Article:
    """A new draft: staff see it, customers once it is published."""
    article = articles.new_article(command, author, hc.now())

    async def store(session: Session) -> None:
        await hc.store.insert(article, session)
        await hc.store.bump_catalogue(session)

    await in_transaction(hc.client, store)
    return article


async def get_article(hc: HelpCentre, article_id: str, *, staff: bool) -> Article:
    """A draft is not found for anyone but staff."""
    article = await hc.store.get(article_id)
    if article is None or not article.visible(staff=staff):
        raise NotFound(f"no article {article_id}")
    return article


async def list_articles(
    hc: HelpCentre,
    query: ArticleFilter,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    staff: bool,
) -> list[Article]:
    """Newest first; staff see drafts too. Asks for ``limit`` and returns what it found."""
    return await hc.store.page(query.for_reader(staff=staff), after, limit)


Decision = Callable[[Article, datetime], Article]


async def _change(
    hc: HelpCentre, article_id: str, decide: Decision, expected_version: int | None = None
) -> Article:
    """Decide on the stored article and store the outcome with a new catalogue version;
    decided again when a concurrent writer won, unless the caller named its version."""

    async def work(session: Session) -> Article:
        before = await hc.store.get(article_id, session)
        if before is None:
            raise NotFound(f"no article {article_id}")
        if expected_version is not None and expected_version != before.version:
            raise PreconditionFailed(
                f"article {article_id} is at version {before.version}, not {expected_version}",
                current_version=before.version,
            )
        after = decide(before, hc.now())
        if after is before:
            return before
        if not await hc.store.replace(before, after, session):
            raise StaleArticle(article_id)
        await hc.store.bump_catalogue(session)
        return after

    try:
        return await in_transaction_retrying(
            hc.client, work, retry_on=(StaleArticle,), attempts=ATTEMPTS
        )
    except StaleArticle:
        raise PreconditionFailed(f"article {article_id} keeps changing; try again") from None


async def revise_article(
    hc: HelpCentre,
    article_id: str,
    command: ReviseArticle,
    author: str,
    expected_version: int | None = None,
) -> Article:
    return await _change(
        hc,
        article_id,
        lambda article, now: articles.revise(article, command, author, now),
        expected_version,
    )


async def publish_article(hc: HelpCentre, article_id: str, author: str) -> Article:
    return await _change(
        hc, article_id, lambda article, now: articles.publish(article, author, now)
    )


async def unpublish_article(hc: HelpCentre, article_id: str, author: str) -> Article:
    return await _change(
        hc, article_id, lambda article, now: articles.unpublish(article, author, now)
    )


async def delete_article(hc: HelpCentre, article_id: str) -> None:
    async def work(session: Session) -> None:
        if not await hc.store.delete(article_id, session):
            raise NotFound(f"no article {article_id}")
        await hc.store.bump_catalogue(session)

    await in_transaction(hc.client, work)


async def search_articles(hc: HelpCentre, search: ArticleSearch) -> list[Hit]:
    """The published articles that best match ``search.text``, best first."""
    index = await hc.index.at(await hc.store.catalogue_version(), hc.store.published)
    locales = tuple(Locale) if search.locale is None else (search.locale,)
    return index.search(search.text, locales, search.kind, search.limit)


async def suggest(hc: HelpCentre, text: str, locale: Locale | None) -> list[Hit]:
    """The few articles to offer while a customer types a support request."""
    return await search_articles(hc, ArticleSearch(text, locale, limit=SUGGESTIONS))
