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

from abc import ABC, abstractmethod
from collections.abc import Sequence
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

    def vector_ids_matching(self, filters: Sequence[Filter] = ()) -> np.ndarray:
        """Sorted ids of the vectors of those contents: what the index is searched among."""
        query, args = self._matching(filters)
        rows = self.conn.execute(f"SELECT v.id FROM vectors v WHERE v.content_id IN ({query})", args)
        return np.unique(np.fromiter((r[0] for r in rows), dtype=np.int64))

    def _matching(self, filters: Sequence[Filter]) -> Clause:
        """The query of the ids of the contents with a live file that passes every filter."""
        self._require_media()
        on_path = [f.clause() for f in filters if f.scope == PATH]
        on_file = [f for f in filters if f.scope == FILE]
        on_content = [f.clause() for f in filters if f.scope == CONTENT]
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


def _joined(clauses: Sequence[Clause]) -> Clause:
    """A WHERE of all the clauses ("" for none), with their values in order."""
    if not clauses:
        return "", []
    return "WHERE " + " AND ".join(text for text, _ in clauses), [value for _, values in clauses for value in values]
