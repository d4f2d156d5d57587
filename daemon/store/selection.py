"""Filters as the catalog sees them: conditions with a SQL clause, run as one query of content (or vector) ids.

A filter is one rule written twice: `clause()` in SQL over `f` (a live files row) and `m` (its
content's media row), `match()` in Python over a FileRow holding the same columns (beets'
dbcore/query.py is the model). A content passes when one of its live files passes every filter.
The catalog runs the clauses without knowing any filter: the filters themselves are search's
(search/filters.py builds them from a request), and imports flow down, so the contract lives here.
Each filter says which columns it reads (its scope), and the query takes the shape that scope
allows: a path range walks only the files in it; conditions on the content alone are tested once
per content, never per file.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np

from .core import CatalogCore
from .records import FileRow

PATH = "path"  # reads f.path only: few files pass, so the query walks them first; checkable on a bare path
FILE = "file"  # reads f (and maybe m): some live file of the content must pass
CONTENT = "content"  # reads m only: tested once per content

Clause = tuple[str, list[object]]  # SQL with ? placeholders, and their values in order

_LIVE = "+f.status = 'ok'"  # "+": the status index would pick nearly every row ('ok') and scan the table


def any_live_file(clauses: Sequence[Clause]) -> Clause:
    """SQL over `m` alone: some live file of its content passes every clause."""
    sql = " AND ".join([_LIVE, *(text for text, _ in clauses)])
    return f"EXISTS (SELECT 1 FROM files f WHERE f.content_id = m.content_id AND {sql})", [
        value for _, values in clauses for value in values
    ]


class Filter(ABC):
    """One condition on a live file and its content's metadata, as SQL for the catalog and as Python."""

    scope: ClassVar[str] = CONTENT

    @abstractmethod
    def clause(self) -> Clause:
        """The condition in SQL over `f` (a live files row) and `m` (its content's media row)."""

    @abstractmethod
    def match(self, row: FileRow) -> bool:
        """The same condition on one live file and its content's metadata."""

    def any_file(self, live: str) -> Clause:
        """SQL over `m` alone for "some live file passes" (FILE scope); `live`: SQL for "has a live file", or ""
        when every content has one. A filter may override it with a form that needs no lookup per content."""
        return any_live_file([self.clause()])


class Selection(CatalogCore):
    """The catalog's filtered selection: every filter's clause in one query of content ids."""

    def cameras(self) -> list[tuple[str | None, str | None]]:
        """The distinct (make, model) pairs in the catalog: few, so a camera filter matches them in Python."""
        return list(self.conn.execute("SELECT DISTINCT make, model FROM media"))

    def content_ids_matching(self, filters: Sequence[Filter] = ()) -> np.ndarray:
        """Sorted ids of the contents with a live file that passes every filter."""
        query, args = self._matching(filters)
        ids = np.fromiter((r[0] for r in self.conn.execute(query, args)), dtype=np.int64)
        return np.unique(ids)

    def vector_ids_matching(self, filters: Sequence[Filter] = (), budget: float | None = None) -> np.ndarray | None:
        """Sorted ids of the vectors of those contents: what the index is searched among; None when that
        took longer than `budget` seconds (stopped there: too many to be worth selecting)."""
        query, args = self._matching(filters)
        sql = f"SELECT v.id FROM vectors v WHERE v.content_id IN ({query})"
        if budget is None:
            return np.unique(np.fromiter((r[0] for r in self.conn.execute(sql, args)), dtype=np.int64))
        deadline = time.monotonic() + budget
        self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            return np.unique(np.fromiter((r[0] for r in self.conn.execute(sql, args)), dtype=np.int64))
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            return None
        finally:
            self.conn.set_progress_handler(None, 0)

    def content_ids_passing(self, filters: Sequence[Filter], ids: Iterable[int]) -> set[int]:
        """Those of `ids` whose content has a live file that passes every filter: a lookup per content, so a
        search can check its best candidates instead of selecting every content that passes."""
        ids = list(ids)
        found: set[int] = set()
        for start in range(0, len(ids), 500):  # SQLite caps the values bound to one statement
            chunk = ids[start : start + 500]
            query, args = self._matching(filters, (f"m.content_id IN ({','.join('?' * len(chunk))})", chunk))
            found.update(row[0] for row in self.conn.execute(query, args))
        return found

    def _matching(self, filters: Sequence[Filter], among: Clause | None = None) -> Clause:
        """The query of the ids of the contents with a live file that passes every filter; `among`: a clause
        over `m` that names the few contents to look at (every filter is then tested per content)."""
        self._require_media()
        on_path = [f.clause() for f in filters if f.scope == PATH]
        on_file = [f for f in filters if f.scope == FILE]
        on_content = [f.clause() for f in filters if f.scope == CONTENT]
        if among is not None:
            on_content.insert(0, among)
            if on_path:  # the path range would walk every file in it: test the named contents' files instead
                on_file, on_path = [_Clauses([*on_path, *(f.clause() for f in on_file)])], []
        if on_path:
            # Few files under a folder: walk their path range and look each content up, not every content.
            sql, args = _joined([(_LIVE, []), *on_path, *(f.clause() for f in on_file), *on_content])
            query = f"SELECT DISTINCT f.content_id FROM files f CROSS JOIN media m ON m.content_id = f.content_id {sql}"
        else:
            # When nothing is missing every content has a live file, and looking one up per content (a few
            # us each) can go; but for a moment after a removal, before its orphans go: searches skip those.
            live = any_live_file([])[0] if self._any_missing() else ""
            parts = list(on_content)
            if len(on_file) == 1:
                parts.append(on_file[0].any_file(live))
            elif on_file:  # one file must pass them all, not one file each
                parts.append(any_live_file([f.clause() for f in on_file]))
            elif live:
                parts.append((live, []))
            sql, args = _joined(parts)
            query = f"SELECT m.content_id FROM media m {sql}"
        return query.rstrip(), args


class _Clauses(Filter):
    """Several file clauses that one live file must pass together (a content checked among a few)."""

    scope: ClassVar[str] = FILE

    def __init__(self, clauses: list[Clause]) -> None:
        self.clauses = clauses

    def clause(self) -> Clause:
        return " AND ".join(text for text, _ in self.clauses), [v for _, values in self.clauses for v in values]

    def match(self, row: FileRow) -> bool:
        raise NotImplementedError("SQL only: the filters it joins each have their own match()")


def _joined(clauses: Sequence[Clause]) -> Clause:
    """A WHERE of all the clauses ("" for none), with their values in order."""
    if not clauses:
        return "", []
    return "WHERE " + " AND ".join(text for text, _ in clauses), [value for _, values in clauses for value in values]
