"""The words in pictures as a search sees them: a filter (`--words`, `--words-match`), a second ranking fused
with the vector search's, and the matched lines shown beside each hit.

A phrase asked for is taken literally: folded like the stored words (wordfold.py) and quoted for
FTS5, so `INV-2023` or `17.49` are text, not syntax; an FTS5 expression comes only through
`words_match`. A search's texts also look at the words: the contents whose words hold any of their
words (3 characters or more) are ranked by FTS5's bm25, and the two rankings are fused by reciprocal
rank fusion (each content scores the sum of 1/(RRF_K + its rank) in each list; a content absent from
a list gets no share of it). Scores stay the vector search's cosine; only the order is fused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..protocol import Filters, RequestError, SearchRequest
from ..store.catalog import Catalog
from ..store.records import FileRow
from ..store.selection import CONTENT, Clause, Filter
from ..store.words import WordsQueryError
from ..wordfold import any_of, fold, phrase, tokens

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009): flattens the top ranks' lead
WORD_CANDIDATES = 200  # contents the words ranking contributes to a fused search at most
# Seconds the words ranking may take before a search goes on without it: a text whose words are in
# most pictures of a large library (bm25 over 25k matches at 1M pictures: ~1-2 s here, RESULTS.md)
# must not slow every search down. An explicit --words is never cut short.
FUSION_BUDGET = 0.25
CHECKED = 1000  # ranked contents checked against a search's filters at a time
SNIPPET_LINES = 3  # matched lines shown per hit
_OPERATORS = {"and", "or", "not", "near"}  # FTS5's own words, left out of what an expression highlights


@dataclass(frozen=True)
class WordsMatch(Filter):
    """The words read in a content match an FTS5 query over their folded text.

    `needle` is the folded phrase for a literal `--words`; match() checks it as a substring, as the
    trigram index does. An explicit expression (`--words-match`) is SQLite's to evaluate alone.
    """

    scope: ClassVar[str] = CONTENT
    query: str
    needle: str | None = None

    def clause(self) -> Clause:
        return "m.content_id IN (SELECT rowid FROM words_fts WHERE words_fts MATCH ?)", [self.query]

    def match(self, row: FileRow) -> bool:
        if self.needle is None:
            raise NotImplementedError("an FTS5 expression is evaluated by SQLite only")
        return self.needle in row.words


def filters_of(filters: Filters) -> list[Filter]:
    """The words filters of a request: a literal phrase, an explicit expression, or both."""
    found: list[Filter] = []
    if filters.words is not None:
        found.append(WordsMatch(phrase(filters.words), fold(filters.words)))
    if filters.words_match is not None:
        found.append(WordsMatch(filters.words_match))
    return found


def check(catalog: Catalog, filters: Filters) -> None:
    """Refuse an expression FTS5 cannot parse, in one sentence (before any search runs)."""
    if filters.words_match is not None:
        try:
            catalog.words_matching(filters.words_match, limit=1)
        except WordsQueryError as exc:
            raise RequestError(str(exc)) from None


def search_words(request: SearchRequest) -> list[str]:
    """The folded words of a search's positive texts that the words ranking looks for (none: no fusion)."""
    if not request.options.fuse_words:
        return []
    return tokens([term.value for term in request.terms if term.kind == "text" and term.weight > 0])


def needles(filters: Filters, fused: list[str]) -> list[str]:
    """What a hit's lines are matched against to show them: the phrase, the expression's words, the texts' words."""
    found = list(fused)
    if filters.words is not None:
        found.append(fold(filters.words))
    if filters.words_match is not None:
        found.extend(word for word in tokens([filters.words_match]) if word not in _OPERATORS)
    return list(dict.fromkeys(found))


def ranked(catalog: Catalog, words: list[str], passing: Callable[[list[int]], set[int]] | None) -> list[int]:
    """Contents whose words hold any of `words`, best (bm25) first, among those that pass (None: all)."""
    found = catalog.words_matching(
        any_of(words), limit=WORD_CANDIDATES if passing is None else None, budget=FUSION_BUDGET
    )
    if found is None:
        return []
    if passing is not None:
        kept: list[int] = []
        for start in range(0, len(found), CHECKED):  # the best first, until enough pass
            batch = found[start : start + CHECKED]
            allowed = passing(batch)
            kept.extend(cid for cid in batch if cid in allowed)
            if len(kept) >= WORD_CANDIDATES:
                break
        found = kept[:WORD_CANDIDATES]
    return found


def fuse(hits: list[tuple[float, str, int, int]], by_words: list[int], k: int) -> list[tuple[float, str, int, int]]:
    """The hits (best first, every content's live paths, each with its cosine) in fused order, k contents.

    `hits` holds the vector search's answers followed by those the words ranking adds, each added one
    ranked by the vector search after every answer it gave, in order of its cosine.
    """
    order = list(dict.fromkeys(hit[2] for hit in hits))
    by_vector = {cid: rank for rank, cid in enumerate(order, 1)}
    word_rank = {cid: rank for rank, cid in enumerate(by_words, 1)}

    def score(cid: int) -> float:
        share = 1.0 / (RRF_K + by_vector[cid])
        return share + (1.0 / (RRF_K + word_rank[cid]) if cid in word_rank else 0.0)

    keep = sorted(order, key=lambda cid: (-score(cid), by_vector[cid]))[:k]
    place = {cid: i for i, cid in enumerate(keep)}
    return sorted((hit for hit in hits if hit[2] in place), key=lambda hit: place[hit[2]])


def annotate(catalog: Catalog, rows: list[dict[str, Any]], needles: list[str], min_confidence: float) -> None:
    """Add to each row the searchable lines of its picture's words that hold one of the needles (`words`)."""
    if not needles or not rows:
        return
    lines = catalog.word_lines({row["id"] for row in rows})
    for row in rows:
        matched = [
            line.text
            for line in lines.get(row["id"], [])
            if line.confidence >= min_confidence and any(n in fold(line.text) for n in needles)
        ]
        if matched:
            row["words"] = matched[:SNIPPET_LINES]
