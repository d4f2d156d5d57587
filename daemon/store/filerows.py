"""The files rows below a folder as one read, for a reconcile's compare.

Part of the catalog (catalog.py opens the connection). At a million files nearly every row is only
compared (size, mtime_ns) with what the walk saw: the rows stay as SQLite returns them, and the catalog's
`_record` makes a FileRecord of the few that changed or went away.
"""

from __future__ import annotations

import os

from .core import CatalogCore, prefix_range

FILE_COLUMNS = "path, size, mtime_ns, content_id, status, error"


class FileRows(CatalogCore):
    """The reconcile's side of the compare."""

    def file_rows_under(self, folder: str) -> dict[str, tuple]:
        """Path -> its row as read (path key, size, mtime_ns, content_id, status, error) for every file below folder."""
        lo, hi = prefix_range(folder)
        rows = self.conn.execute(f"SELECT {FILE_COLUMNS} FROM files WHERE path >= ? AND path < ?", (lo, hi))
        decode = os.fsdecode
        return {decode(row[0]): row for row in rows}
