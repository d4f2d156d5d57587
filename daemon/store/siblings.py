"""The siblings table: files that are the other half of a photo (a RAW beside its JPEG, a live photo's video).

Part of the catalog (catalog.py opens the connection). A companion has no files row of its own, so it
is never embedded, listed, counted or paired as a duplicate; this table names the primary whose path
lists it. Rows are written by the engine from what the disk holds (ingest/companions.py decides) and
looked up by path or by primary, each an index lookup: nothing here costs what the library holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .core import CatalogCore, path_key, prefix_range


class SiblingRows(CatalogCore):
    """Companion -> primary rows, kept beside the files rows."""

    def sibling_primary(self, path: str) -> str | None:
        """The primary a companion belongs to, if path is one."""
        row = self.conn.execute("SELECT primary_path FROM siblings WHERE path = ?", (path_key(path),)).fetchone()
        return os.fsdecode(row[0]) if row else None

    def siblings_of(self, primary: str) -> list[str]:
        """The companions listed through primary, in path order."""
        rows = self.conn.execute("SELECT path FROM siblings WHERE primary_path = ? ORDER BY path", (path_key(primary),))
        return [os.fsdecode(r[0]) for r in rows]

    def siblings_for(self, primaries: Iterable[str]) -> dict[str, list[str]]:
        """The companions of each of the given primaries that has any, in path order."""
        keys = list(dict.fromkeys(path_key(p) for p in primaries))
        found: dict[str, list[str]] = {}
        for primary, path in self._rows_for_ids(
            "SELECT primary_path, path FROM siblings WHERE primary_path IN ({}) ORDER BY path", keys
        ):
            found.setdefault(os.fsdecode(primary), []).append(os.fsdecode(path))
        return found

    def count_siblings(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM siblings").fetchone()[0])

    def set_sibling(self, path: str, primary: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO siblings(path, primary_path) VALUES (?, ?)", (path_key(path), path_key(primary))
        )

    def drop_sibling(self, path: str) -> bool:
        return self.conn.execute("DELETE FROM siblings WHERE path = ?", (path_key(path),)).rowcount > 0

    def replace_siblings_under(self, folder: str, pairs: dict[str, str]) -> None:
        """Make the rows below folder exactly these companion -> primary pairs (a reconcile's verdict)."""
        lo, hi = prefix_range(folder)
        with self.transaction():
            self.conn.execute("DELETE FROM siblings WHERE path >= ? AND path < ?", (lo, hi))
            self.conn.executemany(
                "INSERT OR REPLACE INTO siblings(path, primary_path) VALUES (?, ?)",
                [(path_key(path), path_key(primary)) for path, primary in pairs.items()],
            )

    def drop_siblings_under(self, folder: str) -> int:
        lo, hi = prefix_range(folder)
        return self.conn.execute("DELETE FROM siblings WHERE path >= ? AND path < ?", (lo, hi)).rowcount

    def move_siblings_under(self, src_folder: str, dest_folder: str) -> int:
        """Rewrite both halves of every pair below src_folder to the same place below dest_folder."""
        lo, hi = prefix_range(src_folder)
        rows = self.conn.execute(
            "SELECT path, primary_path FROM siblings WHERE path >= ? AND path < ?", (lo, hi)
        ).fetchall()
        self.conn.execute("DELETE FROM siblings WHERE path >= ? AND path < ?", (lo, hi))
        src, dest = path_key(src_folder.rstrip(os.sep)), path_key(dest_folder.rstrip(os.sep))
        moved = [(dest + path[len(src) :], dest + primary[len(src) :]) for path, primary in rows]
        self.conn.executemany("INSERT OR REPLACE INTO siblings(path, primary_path) VALUES (?, ?)", moved)
        return len(moved)
