"""Full-text search of the portal's texts (help-centre articles, community questions):
SQLite FTS5 in memory, BM25-ranked.

The index lives in the service process, built from what MongoDB holds, so search works
the same on the development store (which has no ``$text`` index) and on MongoDB. FTS5
(Python's standard library) does the indexing and the ranking (``bm25()``); its
``unicode61 remove_diacritics 2`` tokenizer folds case and diacritics, so "racun" finds
"račun". Before FTS5 sees a text, each word is reduced to its Snowball stem (PyStemmer)
in the entry's language, so "računa" finds "račun" and "refunds" finds "refund":
Croatian uses the Serbian stemmer (close enough for stemming), Czech and Persian their
own, Slovenian none. The words as written are indexed too (a column of their own, weighed
lightly), so a stemmer's quirk never hides a word spelt exactly as the customer typed it.

Query words are alternatives (OR, as BM25 engines do): an entry matching more of them,
more often, in its title or tags rather than its body, ranks first. The last word of a
query that does not end in a space is still being typed and matches as a prefix.

A :class:`TextIndex` is immutable: :class:`LiveIndex` builds a new one (in a worker
thread) whenever the version of what it indexes, as stored in MongoDB, differs from the
one it was built from, and swaps it in.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import unicodedata
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import Stemmer

from services.complaints.domain.language import Locale

# Snowball algorithms per locale (None: words are indexed as written).
STEMMERS: dict[Locale, str | None] = {
    Locale.EN: "english",
    Locale.HR: "serbian",
    Locale.CS: "czech",
    Locale.SL: None,
    Locale.FA: "persian",
}
TOKENIZER = "unicode61 remove_diacritics 2"
# Title, tags and body hold their words' stems; ``words`` every word as written. ``kind``
# is a filter the owner of the index chooses (an article's kind, a question's visibility).
CREATE = f"""
    CREATE VIRTUAL TABLE entries USING fts5(
        id UNINDEXED, locale UNINDEXED, kind UNINDEXED, title, tags, body, words,
        tokenize = '{TOKENIZER}'
    )"""
INSERT = "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)"
# bm25() weighs each column: a word in the title counts four times one in the body, in
# the tags twice, and the words as written (a second chance beside the stems) half.
SEARCH = """
    SELECT id, bm25(entries, 0, 0, 0, 4.0, 2.0, 1.0, 0.5) AS score FROM entries
    WHERE entries MATCH :query AND locale = :locale AND (:kind IS NULL OR kind = :kind)
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
class Entry:
    """What the index holds of one searchable item."""

    id: str
    locale: Locale
    kind: str
    title: str
    tags: Sequence[str]
    body: str


T = TypeVar("T")


class TextIndex(Generic[T]):
    """Items as of one version, searchable; ``entry`` says what of an item is indexed."""

    def __init__(
        self, items: Iterable[T], version: int | None, entry: Callable[[T], Entry]
    ) -> None:
        self.version = version
        self.items: dict[str, T] = {}
        self._analyzers = {locale: Analyzer(locale) for locale in Locale}
        # Built in a worker thread, searched on the event loop's.
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        # Closed once no search holds the index any more.
        weakref.finalize(self, self._db.close)
        self._db.execute(CREATE)
        rows = []
        for item in items:
            indexed = entry(item)
            self.items[indexed.id] = item
            rows.append(self._row(indexed))
        self._db.executemany(INSERT, rows)
        self._db.commit()

    def _row(self, entry: Entry) -> tuple[str, ...]:
        analyzer = self._analyzers[entry.locale]
        tags = " ".join(entry.tags)
        written = " ".join(words(f"{entry.title} {tags} {entry.body}")).replace(ZWNJ, "")
        return (
            entry.id,
            entry.locale.value,
            entry.kind,
            analyzer.stems(entry.title),
            analyzer.stems(tags),
            analyzer.stems(entry.body),
            written,
        )

    def search(
        self,
        text: str,
        locales: Sequence[Locale] = tuple(Locale),
        kind: str | None = None,
        limit: int = 20,
    ) -> list[tuple[T, float]]:
        """The best ``limit`` matches of ``text`` among the entries in ``locales`` (each
        locale's words analysed its own way), best first, each with its BM25 relevance
        (higher is better)."""
        scored: list[tuple[float, str]] = []
        for locale in dict.fromkeys(locales):
            query = self._analyzers[locale].query(text)
            if query is None:
                continue
            parameters = {"query": query, "locale": locale.value, "kind": kind, "limit": limit}
            scored += [(score, item_id) for item_id, score in self._db.execute(SEARCH, parameters)]
        scored.sort()
        return [(self.items[item_id], round(-rank, 6)) for rank, item_id in scored[:limit]]


class Versioned(Protocol):
    version: int | None


Index = TypeVar("Index", bound=Versioned)


class LiveIndex(Generic[T, Index]):
    """The index one process searches, built again when what it indexes changed."""

    def __init__(self, build: Callable[[list[T], int | None], Index]) -> None:
        self._build = build
        self.current = build([], None)
        self._building = asyncio.Lock()

    async def at(self, version: int, load: Callable[[], Awaitable[list[T]]]) -> Index:
        """The index as of ``version`` (or newer): the current one when it was built from
        that version, else one built from what ``load`` reads now."""
        if self.current.version == version:
            return self.current
        async with self._building:
            if self.current.version != version:  # nobody built it while this one waited
                # ``version`` was read before the items are: a write landing between the
                # two is in the index, and the next search builds it once more.
                items = await load()
                self.current = await asyncio.to_thread(self._build, items, version)
        return self.current
