"""Search over the published help-centre articles: the portal's full-text index
(:mod:`services.complaints.search`: SQLite FTS5 in memory, BM25-ranked, diacritics folded,
Snowball stems per language, the word being typed as a prefix) over each article's title,
tags and body, filtered by locale and kind.

An :class:`ArticleIndex` is immutable: :class:`LiveIndex` builds a new one (in a worker
thread) whenever the catalogue's version in MongoDB differs from the one it was built
from, and swaps it in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from services.complaints import search
from services.complaints.domain.articles import Article, ArticleKind
from services.complaints.domain.language import Locale


@dataclass(frozen=True)
class Hit:
    article: Article
    score: float = 0.0  # BM25 relevance: higher is better


def _entry(article: Article) -> search.Entry:
    return search.Entry(
        article.id, article.locale, article.kind.value, article.title, article.tags, article.body
    )


class ArticleIndex:
    """The published articles as of one catalogue version, searchable."""

    def __init__(self, articles: Iterable[Article], version: int | None) -> None:
        self.version = version
        self._index = search.TextIndex(articles, version, _entry)
        self.articles = self._index.items

    def search(
        self,
        text: str,
        locales: Sequence[Locale] = tuple(Locale),
        kind: ArticleKind | None = None,
        limit: int = 20,
    ) -> list[Hit]:
        """The best ``limit`` matches of ``text`` among the articles in ``locales`` (each
        locale's words analysed its own way), best first."""
        found = self._index.search(text, locales, kind.value if kind else None, limit)
        return [Hit(article, score) for article, score in found]


Load = Callable[[], Awaitable[list[Article]]]


class LiveIndex(search.LiveIndex[Article, ArticleIndex]):
    """The index one process searches, built again when the catalogue changed."""

    def __init__(self) -> None:
        super().__init__(ArticleIndex)
