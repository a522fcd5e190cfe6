"""Search over the published help-centre articles: SQLite FTS5 in memory, BM25-ranked.

The index lives in the service process, built from what MongoDB holds, so search works
the same on the development store (which has no ``$text`` index) and on MongoDB. FTS5
(Python's standard library) does the indexing and the ranking (``bm25()``); its
``unicode61 remove_diacritics 2`` tokenizer folds case and diacritics, so "racun" finds
"račun". Before FTS5 sees a text, each word is reduced to its Snowball stem (PyStemmer)
in the article's language, so "računa" finds "račun" and "refunds" finds "refund":
Croatian uses the Serbian stemmer (close enough for stemming), Czech and Persian their
own, Slovenian none. The words as written are indexed too (a column of their own, weighed
lightly), so a stemmer's quirk never hides a word spelt exactly as the customer typed it.

Query words are alternatives (OR, as BM25 engines do): an article matching more of them,
more often, in its title or tags rather than its body, ranks first. The last word of a
query that does not end in a space is still being typed and matches as a prefix.

An :class:`ArticleIndex` is immutable: :class:`LiveIndex` builds a new one (in a worker
thread) whenever the catalogue's version in MongoDB differs from the one it was built
from, and swaps it in.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import unicodedata
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import Stemmer

from services.complaints.domain.articles import Article, ArticleKind, Locale

# Snowball algorithms per locale (None: words are indexed as written).
STEMMERS: dict[Locale, str | None] = {
    Locale.EN: "english",
    Locale.HR: "serbian",
    Locale.CS: "czech",
    Locale.SL: None,
    Locale.FA: "persian",
}
TOKENIZER = "unicode61 remove_diacritics 2"
# Title, tags and body hold their words' stems; ``words`` every word as written.
CREATE = f"""
    CREATE VIRTUAL TABLE articles USING fts5(
        id UNINDEXED, locale UNINDEXED, kind UNINDEXED, title, tags, body, words,
        tokenize = '{TOKENIZER}'
    )"""
INSERT = "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?)"
# bm25() weighs each column: a word in the title counts four times one in the body, in
# the tags twice, and the words as written (a second chance beside the stems) half.
SEARCH = """
    SELECT id, bm25(articles, 0, 0, 0, 4.0, 2.0, 1.0, 0.5) AS score FROM articles
    WHERE articles MATCH :query AND locale = :locale AND (:kind IS NULL OR kind = :kind)
    ORDER BY score LIMIT :limit"""
# A last word shorter than this is matched whole: one letter would match nearly everything.
MIN_PREFIX = 2

# Letters folded before anything else: Persian typed on an Arabic keyboard (the same
# letters at other code points), and the one Croatian letter FTS5 does not fold.
_LETTERS = str.maketrans(
    {
        "\u064a": "\u06cc",  # Arabic yeh: Persian yeh
        "\u0649": "\u06cc",  # alef maksura: Persian yeh
        "\u0643": "\u06a9",  # Arabic kaf: keheh
        "\u0629": "\u0647",  # teh marbuta: heh
        "\u0640": None,  # tatweel (a stretch, not a letter)
        "đ": "d",  # Croatian đ has no decomposition for FTS5 to fold
        "Đ": "D",
    }
)
# A word: letters and digits, Persian words joined with a zero-width non-joiner kept whole.
_WORD = re.compile(r"[^\W_]+(?:\u200c[^\W_]+)*")
ZWNJ = "\u200c"


def words(text: str) -> list[str]:
    """The words of ``text``, lower case, with Arabic vowel marks and tatweel dropped."""
    text = unicodedata.normalize("NFC", text).translate(_LETTERS).lower()
    text = "".join(c for c in text if not ("\u064b" <= c <= "\u065f" or c == "\u0670"))
    return _WORD.findall(text)


class Analyzer:
    """Words to index terms for one locale: each word's stem, and the word itself."""

    def __init__(self, locale: Locale) -> None:
        algorithm = STEMMERS[locale]
        self._stemmer = None if algorithm is None else Stemmer.Stemmer(algorithm)

    def stem(self, word: str) -> str:
        stemmed = word if self._stemmer is None else str(self._stemmer.stemWord(word))
        return stemmed.replace(ZWNJ, "")

    def stems(self, text: str) -> str:
        return " ".join(self.stem(word) for word in words(text))

    def query(self, text: str) -> str | None:
        """An FTS5 query: each word as its stem or as written, the last one as a prefix
        while it is being typed; None when ``text`` has no word."""
        found = words(text)
        typing = bool(text) and not text[-1].isspace()
        alternatives = []
        for position, word in enumerate(found):
            prefix = (
                "*" if typing and position == len(found) - 1 and len(word) >= MIN_PREFIX else ""
            )
            forms = dict.fromkeys([self.stem(word), word.replace(ZWNJ, "")])
            alternatives.append(" OR ".join(f'"{form}"{prefix}' for form in forms if form))
        return " OR ".join(f"({terms})" for terms in alternatives) or None


@dataclass(frozen=True)
class Hit:
    article: Article
    score: float = 0.0  # BM25 relevance: higher is better


class ArticleIndex:
    """The published articles as of one catalogue version, searchable."""

    def __init__(self, articles: Iterable[Article], version: int | None) -> None:
        self.version = version
        self.articles = {article.id: article for article in articles}
        self._analyzers = {locale: Analyzer(locale) for locale in Locale}
        # Built in a worker thread, searched on the event loop's.
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        # Closed once no search holds the index any more.
        weakref.finalize(self, self._db.close)
        self._db.execute(CREATE)
        self._db.executemany(INSERT, (self._row(article) for article in self.articles.values()))
        self._db.commit()

    def _row(self, article: Article) -> tuple[str, ...]:
        analyzer = self._analyzers[article.locale]
        tags = " ".join(article.tags)
        written = " ".join(words(f"{article.title} {tags} {article.body}")).replace(ZWNJ, "")
        return (
            article.id,
            article.locale.value,
            article.kind.value,
            analyzer.stems(article.title),
            analyzer.stems(tags),
            analyzer.stems(article.body),
            written,
        )

    def search(
        self,
        text: str,
        locales: Sequence[Locale] = tuple(Locale),
        kind: ArticleKind | None = None,
        limit: int = 20,
    ) -> list[Hit]:
        """The best ``limit`` matches of ``text`` among the articles in ``locales`` (each
        locale's words analysed its own way), best first."""
        scored: list[tuple[float, str]] = []
        for locale in dict.fromkeys(locales):
            query = self._analyzers[locale].query(text)
            if query is None:
                continue
            parameters = {
                "query": query,
                "locale": locale.value,
                "kind": kind.value if kind else None,
                "limit": limit,
            }
            scored += [
                (score, article_id) for article_id, score in self._db.execute(SEARCH, parameters)
            ]
        scored.sort()
        return [
            Hit(self.articles[article_id], round(-rank, 6)) for rank, article_id in scored[:limit]
        ]


Load = Callable[[], Awaitable[list[Article]]]


class LiveIndex:
    """The index one process searches, built again when the catalogue changed."""

    def __init__(self) -> None:
        self.current = ArticleIndex([], version=None)
        self._building = asyncio.Lock()

    async def at(self, version: int, load: Load) -> ArticleIndex:
        """The index as of catalogue ``version`` (or newer): the current one when it was
        built from that version, else one built from what ``load`` reads now."""
        if self.current.version == version:
            return self.current
        async with self._building:
            if self.current.version != version:  # nobody built it while this one waited
                # ``version`` was read before the articles are: a write landing between
                # the two is in the index, and the next search builds it once more.
                articles = await load()
                built = await asyncio.to_thread(ArticleIndex, articles, version)
                self.current = built
        return self.current
