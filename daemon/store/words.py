"""The catalog's words rows: what the words pass read in each picture (schema 5, `words` and `words_fts`).

One `words` row per content read (its lines, with confidence and box, as JSON), and for a content
with words one `words_fts` row of its folded text (wordfold.py), whose rowid is the content id. The
pass reads the newest contents first; a read-only open of an older catalog sees empty tables.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ImgdError
from ..wordfold import fold_lines
from .core import CatalogCore
from .records import FileStat


@dataclass(frozen=True)
class WordLine:
    """One line of words read in a picture: its text, the recogniser's confidence, its box (fractions, upright)."""

    text: str
    confidence: float
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1


class WordsQueryError(ImgdError):
    """A words query SQLite's FTS5 cannot parse (an explicit match expression)."""


class WordRows(CatalogCore):
    """Reads and writes of the words rows, on the catalog's connection."""

    def words_backlog_count(self) -> int:
        """Contents whose words are not read yet."""
        return self.conn.execute(
            "SELECT count(*) FROM contents c WHERE NOT EXISTS (SELECT 1 FROM words w WHERE w.content_id = c.id)"
        ).fetchone()[0]

    def words_read_count(self) -> tuple[int, int]:
        """(contents read, contents in which words were found)."""
        read = self.conn.execute("SELECT count(*) FROM words").fetchone()[0]
        found = self.conn.execute("SELECT count(*) FROM words_fts").fetchone()[0]
        return read, found

    def words_backlog(self, above: int, below: int, limit: int) -> list[tuple[int, list[FileStat]]]:
        """Up to `limit` unread contents with above < id < below, newest (highest id) first, with their live paths."""
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT c.id FROM contents c WHERE c.id > ? AND c.id < ? "
                "AND NOT EXISTS (SELECT 1 FROM words w WHERE w.content_id = c.id) ORDER BY c.id DESC LIMIT ?",
                (above, below, limit),
            )
        ]
        return self._live_files_of(ids)

    def newest_content(self) -> int:
        """The highest content id given so far (0 for none)."""
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM contents").fetchone()[0]

    def set_words(self, content_id: int, lines: list[WordLine], min_confidence: float, now: float) -> None:
        """Record a content's lines (all of them, with their confidence); those at or above `min_confidence`
        become searchable. A content gone meanwhile (its last file removed) is left alone."""
        if self.conn.execute("SELECT 1 FROM contents WHERE id = ?", (content_id,)).fetchone() is None:
            return
        rows = [[line.text, round(line.confidence, 4), *(round(v, 4) for v in line.box)] for line in lines]
        self.conn.execute(
            "INSERT OR REPLACE INTO words(content_id, read_at, lines) VALUES (?, ?, ?)",
            (content_id, now, json.dumps(rows, ensure_ascii=False)),
        )
        self.conn.execute("DELETE FROM words_fts WHERE rowid = ?", (content_id,))
        text = fold_lines([line.text for line in lines if line.confidence >= min_confidence])
        if text:
            self.conn.execute("INSERT INTO words_fts(rowid, text) VALUES (?, ?)", (content_id, text))
            # What a words filter selects changed; the index did not (see MediaRows.state).
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES ('media_generation', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )

    def words_matching(self, query: str, limit: int | None = None, budget: float | None = None) -> list[int] | None:
        """Ids of the contents whose words match an FTS5 query, best (bm25) first; None when it took
        longer than `budget` seconds (stopped there)."""
        sql = "SELECT rowid FROM words_fts WHERE words_fts MATCH ? ORDER BY rank"
        if budget is not None:
            deadline = time.monotonic() + budget
            self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            if limit is None:
                return [r[0] for r in self.conn.execute(sql, (query,))]
            return [r[0] for r in self.conn.execute(sql + " LIMIT ?", (query, limit))]
        except sqlite3.OperationalError as exc:
            if budget is not None and "interrupted" in str(exc):
                return None
            reason = str(exc).removeprefix("fts5: ")
            raise WordsQueryError(f"the words expression {query!r} is not valid FTS5 syntax ({reason}).") from None
        finally:
            if budget is not None:
                self.conn.set_progress_handler(None, 0)

    def words_texts(self, content_ids: Iterable[int]) -> dict[int, str]:
        """The searchable (folded) text of each of these contents that has words: what a literal phrase
        is looked for in when a search checks its candidates one by one (rowid lookups, no MATCH)."""
        return dict(self._rows_for_ids("SELECT rowid, text FROM words_fts WHERE rowid IN ({})", list(content_ids)))

    def word_lines(self, content_ids: Iterable[int]) -> dict[int, list[WordLine]]:
        """The lines read in each of these contents (a content not read, or without words, is left out)."""
        found: dict[int, list[WordLine]] = {}
        for cid, lines in self._rows_for_ids(
            "SELECT content_id, lines FROM words WHERE content_id IN ({}) AND lines != '[]'", list(content_ids)
        ):
            found[cid] = [WordLine(row[0], row[1], tuple(row[2:6])) for row in json.loads(lines)]
        return found
