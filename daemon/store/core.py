"""The catalog's connection and what every part of it shares: transactions, meta keys, id-chunked reads.

`Catalog` (catalog.py) is this core plus its parts, each a class over the one connection: the model
change's rows (nextvectors.py), the metadata rows (media.py) and the filtered selection (selection.py).
They are split by table for their size; SQLite is still opened in one place and owned by the catalog.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CatalogError, DiskFull
from .records import FileStat


def path_key(path: str) -> bytes:
    """A path as the catalog stores it: raw bytes, so any file name round-trips."""
    return os.fsencode(path)


def prefix_range(folder: str) -> tuple[bytes, bytes]:
    """Byte range holding every path strictly inside folder (BLOB comparison is memcmp)."""
    prefix = path_key(folder.rstrip(os.sep) + os.sep)
    return prefix, prefix[:-1] + bytes([prefix[-1] + 1])


def same_model(a: tuple[str, int, str | None], b: tuple[str, int, str | None]) -> bool:
    """(name, dim, fingerprint) pairs naming the same vectors: by fingerprint where both have one, else by name."""
    if a[1] != b[1]:
        return False
    if a[2] and b[2]:
        return a[2] == b[2]
    return a[0] == b[0]


class CatalogCore:
    """The connection and the helpers the catalog's parts share; opened by `Catalog`."""

    path: Path
    conn: sqlite3.Connection
    schema_version: int

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; nested calls join the outer one."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may already have rolled back (SQLITE_FULL, a failed COMMIT); a transaction left
            # open here would swallow every later write, since nested calls join it and never commit.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise DiskFull(f"the disk holding the catalog {self.path} is full") from None
            raise

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads that see one committed state, even while a writer commits."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    # -- meta keys --------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """The value stored under a meta key, if any."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a meta key (inside the caller's transaction)."""
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """A counter bumped by every change to the set of vectors: what an index file is checked against."""
        return int(self.get_meta("generation") or 0)

    @property
    def catalog_id(self) -> str | None:
        """This catalog's identity: a new one whenever its vectors are replaced under the same ids."""
        return self.get_meta("catalog_id")

    def _bump_generation(self) -> None:
        self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def model_info(self) -> tuple[str, int] | None:
        """(name, dim) of the model the live vectors were made with."""
        name, dim = self.get_meta("model"), self.get_meta("dim")
        return (name, int(dim)) if name and dim else None

    def _record_model(self, name: str, dim: int, fingerprint: str | None) -> None:
        self.set_meta("model", name)
        self.set_meta("dim", str(dim))
        if fingerprint:
            self.set_meta("fingerprint", fingerprint)
        else:
            self.conn.execute("DELETE FROM meta WHERE key = 'fingerprint'")

    def _require_media(self) -> None:
        if self.schema_version < 2:
            raise CatalogError(
                f"{self.path}: the catalog was written by an older imgd (schema {self.schema_version}) and holds no "
                "image metadata yet; run `imgd index DIR` or start `imgd run` once to upgrade it."
            )

    # -- shared reads and writes --------------------------------------------------------------

    def count_contents(self) -> int:
        """How many unique contents (photos) the catalog holds."""
        return self.conn.execute("SELECT count(*) FROM contents").fetchone()[0]

    def count_vectors(self) -> int:
        """How many vectors the catalog holds: the index's size (a content has one or more)."""
        return self.conn.execute("SELECT count(*) FROM vectors").fetchone()[0]

    def _any_missing(self) -> bool:
        return self.conn.execute("SELECT 1 FROM files WHERE status = 'missing'").fetchone() is not None

    def _rows_for_ids(self, sql: str, ids: list) -> Iterator[tuple]:
        """Rows of `sql` (its "IN ({})" filled with placeholders), 500 ids a query: SQLite caps bound values."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            yield from self.conn.execute(sql.format(",".join("?" * len(chunk))), chunk)

    def _live_files_of(self, ids: list[int]) -> list[tuple[int, list[FileStat]]]:
        """Each of these contents (in this order) with its files that read well, by path: a pass's batch."""
        found: dict[int, list[FileStat]] = {i: [] for i in ids}
        for cid, path, size, mtime_ns in self._rows_for_ids(
            "SELECT content_id, path, size, mtime_ns FROM files WHERE content_id IN ({}) AND +status = 'ok' "
            "ORDER BY path",
            ids,
        ):
            found[cid].append(FileStat(os.fsdecode(path), size, mtime_ns))
        return list(found.items())

    def _decode_vectors(self, blobs: list[bytes], dim: int | None = None) -> np.ndarray:
        """Stored float16 vector blobs as one float32 array."""
        dim = dim or int(self.get_meta("dim") or 0)
        return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), dim).astype(np.float32)

    def delete_contents(self, ids: list[int]) -> list[int]:
        """Drop contents with every row that hangs off them (vectors, metadata, a model change's vectors);
        returns the ids of the vectors dropped, for the index."""
        dropped: list[int] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            vector_ids = [
                r[0] for r in self.conn.execute(f"SELECT id FROM vectors WHERE content_id IN ({marks})", chunk)
            ]
            dropped.extend(vector_ids)
            for part in range(0, len(vector_ids), 500):
                some = vector_ids[part : part + 500]
                self.conn.execute(f"DELETE FROM next_vectors WHERE vector_id IN ({','.join('?' * len(some))})", some)
            self.conn.execute(f"DELETE FROM vectors WHERE content_id IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM contents WHERE id IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM media WHERE content_id IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM words WHERE content_id IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM words_fts WHERE rowid IN ({marks})", chunk)
        if ids:
            self._bump_generation()
        return dropped
