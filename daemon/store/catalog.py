"""The catalog: the only module that opens SQLite, and the source of truth for paths and vectors.

contents: one row per unique image content (BLAKE2b digest, size); vectors: its float16 vectors,
one per (content, time), each with its own id (the FAISS id).
files:    one row per path (stored as raw bytes, so any file name round-trips) pointing at a content,
          or recording why the file failed, or that its folder is missing.
media:    one narrow row per content: what its bytes say (media.py).
next_vectors: a model change's new vectors beside the live ones (nextvectors.py).
siblings: companions (a RAW beside its JPEG, a live photo's video) and the photo listing them (siblings.py).
words, words_fts: the words read in each picture, and their folded text for FTS5 (words.py).
The schema is built and upgraded by the numbered steps in migrations.py, run here at open.
The catalog is one class over one connection: this module (opening, files, contents) and its parts
in core.py, media.py, nextvectors.py and selection.py, split by table for their size.
Identical copies share one content; a move only rewrites a files row; the FAISS file is a cache
that can always be rebuilt from here.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..errors import CatalogError, DiskFull, ModelMismatch
from . import migrations
from .core import path_key, prefix_range, same_model
from .filerows import FILE_COLUMNS, FileRows
from .media import MEDIA_VERSION, MediaRows
from .nextvectors import NextVectors
from .records import FileRecord, FileStat, ImageMeta
from .selection import Selection
from .siblings import SiblingRows
from .videos import VideoRows
from .words import WordRows

__all__ = [
    "APPLICATION_ID",
    "MEDIA_VERSION",
    "RECOVERY_HINT",
    "SCHEMA_VERSION",
    "Catalog",
    "ThreadReaders",
    "same_model",
]

SCHEMA_VERSION = migrations.LATEST
APPLICATION_ID = migrations.APPLICATION_ID

log = logging.getLogger(__name__)

RECOVERY_HINT = "move it aside, or run `imgd index --rebuild DIR...` to set it aside and index the folders anew"


class Catalog(NextVectors, MediaRows, Selection, SiblingRows, VideoRows, WordRows, FileRows):
    """SQLite in WAL mode: one writer at a time, any number of readers that never see half a commit."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise CatalogError(f"{self.path}: no catalog yet; run `imgd index DIR` or `imgd run` first.")
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # Quoted: in a URI, "?", "#" and "%" in the folder name would otherwise open another file.
            uri = f"file:{quote(os.fsencode(self.path))}" + ("?mode=ro" if readonly else "")
            self.conn = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self._check_header()
            if not readonly:
                self.verify()
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
            else:
                self._check_readable()
            self.schema_version = migrations.current_version(self.conn)
            if readonly:
                migrations.read_as_latest(self.conn, self.schema_version)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: catalog is damaged or not a database ({exc}); {RECOVERY_HINT}.") from None
        except OSError as exc:
            raise CatalogError(f"{self.path}: cannot open catalog ({exc.strerror}).") from None

    # -- opening and versioning -------------------------------------------------------------

    def _check_header(self) -> None:
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == APPLICATION_ID:
            return
        if app_id != 0 or tables:
            raise CatalogError(
                f"{self.path}: this SQLite file is not an imgd catalog; point --state-dir elsewhere or {RECOVERY_HINT}."
            )

    def verify(self) -> None:
        """Read every page once, so damage stops us now and not halfway through a run (~0.4 s per 200k images)."""
        try:
            problem = str(self.conn.execute("PRAGMA quick_check(1)").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        if problem != "ok":
            problem = problem.strip().splitlines()[0][:160] if problem.strip() else "unknown damage"
            raise CatalogError(f"{self.path}: catalog is damaged ({problem}); {RECOVERY_HINT}.")

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: catalog is from a newer imgd (schema {version}, this one knows up to "
                f"{SCHEMA_VERSION}); upgrade imgd."
            )

    def _migrate(self) -> None:
        """Bring the schema up to date in place, one recorded transaction per step; never rebuilt, never re-embedded."""
        version = migrations.current_version(self.conn)
        self._refuse_newer(version)
        for step in migrations.pending(version):
            try:
                with self.transaction():
                    migrations.apply(self.conn, step, time.time())
            except (CatalogError, DiskFull):
                raise
            except Exception as exc:
                raise CatalogError(
                    f"{self.path}: could not upgrade the catalog to schema {step.version} ({step.name}): "
                    f"{type(exc).__name__}: {exc}; it is left unchanged at schema {step.version - 1}."
                ) from exc
            if version:  # not for the steps that create a new catalog
                log.info("upgraded the catalog to schema %d: %s", step.version, step.name)

    def _check_readable(self) -> None:
        """A reader cannot migrate: an older schema is read as it is (without metadata), a newer one refused."""
        version = migrations.current_version(self.conn)
        if version == 0:
            raise CatalogError(f"{self.path}: catalog is empty or unfinished; run `imgd index DIR` first.")
        self._refuse_newer(version)

    def model_matches(self, name: str, dim: int, fingerprint: str | None) -> bool:
        """Are the catalog's vectors this model's? By the weights' fingerprint where both sides have
        one, so the same weights under another name or backend match; else (a catalog from before
        fingerprints) by name."""
        info = self.model_info()
        recorded = (info[0], info[1], self.get_meta("fingerprint")) if info else None
        return recorded is not None and same_model(recorded, (name, dim, fingerprint))

    def ensure_model(self, name: str, dim: int, reembed: bool = False, fingerprint: str | None = None) -> bool:
        """Bind the catalog to one model's vectors; vectors of two models never share an index.

        Returns whether the vectors had to be dropped for re-embedding (False when the catalog already
        holds this model's). Dropping is for a catalog whose model is gone; the daemon and `imgd index
        --reembed` change models beside the old vectors instead (begin_model_change).
        """
        info = self.model_info()
        recorded = self.get_meta("fingerprint")
        if self.model_matches(name, dim, fingerprint):
            if (fingerprint and fingerprint != recorded) or info[0] != name:  # type: ignore[index]
                with self.transaction():
                    if fingerprint:
                        self.set_meta("fingerprint", fingerprint)
                    self.set_meta("model", name)
            return False
        if info is not None and not reembed and self.count_contents():
            raise ModelMismatch(self.mismatch_message(name, dim, fingerprint))
        with self.transaction():
            if info is not None:
                # Forget vectors but keep paths: every file is re-embedded by the next reconcile.
                self.conn.execute("UPDATE files SET content_id = NULL, size = -1, mtime_ns = -1")
                self.conn.execute("DELETE FROM vectors")
                self.conn.execute("DELETE FROM contents")
                self.conn.execute("DELETE FROM media")
                self._clear_model_change()
                self._bump_generation()
            self._record_model(name, dim, fingerprint)
        return info is not None

    def mismatch_message(self, name: str, dim: int, fingerprint: str | None) -> str:
        """One sentence on why this model cannot serve the catalog's vectors, and what to do."""
        info = self.model_info() or ("?", 0)
        if info[0] == name and info[1] == dim:
            return (
                f"model '{name}' now holds other weights than the catalog's vectors were made with "
                f"(fingerprint {fingerprint}, not {self.get_meta('fingerprint')}); run `imgd index --reembed DIR...` "
                "to re-embed everything, or put the old model files back."
            )
        return (
            f"the catalog was built with model '{info[0]}' ({info[1]} dims), not '{name}' ({dim} dims); "
            "run `imgd index --reembed DIR...` (or start `imgd run` with the new model) to re-embed everything "
            f"with it while searches go on with the old one, or pass --model {info[0]}."
        )

    # -- reads ------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        rows = dict(self.conn.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        return {
            "files": rows.get("ok", 0),
            "failed": rows.get("failed", 0),
            "missing": rows.get("missing", 0),
            "contents": self.count_contents(),
        }

    @staticmethod
    def _record(row: tuple) -> FileRecord:
        return FileRecord(os.fsdecode(row[0]), row[1], row[2], row[3], row[4], row[5])

    def get_file(self, path: str) -> FileRecord | None:
        row = self.conn.execute(f"SELECT {FILE_COLUMNS} FROM files WHERE path = ?", (path_key(path),)).fetchone()
        return self._record(row) if row else None

    def files_under(self, folder: str) -> Iterator[FileRecord]:
        lo, hi = prefix_range(folder)
        yield from map(
            self._record,
            self.conn.execute(f"SELECT {FILE_COLUMNS} FROM files WHERE path >= ? AND path < ? ORDER BY path", (lo, hi)),
        )

    def all_files(self) -> Iterator[FileRecord]:
        yield from map(self._record, self.conn.execute(f"SELECT {FILE_COLUMNS} FROM files ORDER BY path"))

    def failed_files(self) -> list[FileRecord]:
        rows = self.conn.execute(f"SELECT {FILE_COLUMNS} FROM files WHERE status = 'failed' ORDER BY path")
        return [self._record(r) for r in rows]

    def content_id(self, digest: str) -> int | None:
        row = self.conn.execute("SELECT id FROM contents WHERE hash = ?", (digest,)).fetchone()
        return row[0] if row else None

    def content_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM contents")), dtype=np.int64)

    def paths_for(self, content_ids: Iterable[int]) -> dict[int, list[str]]:
        """Live paths of each content, in path order; missing and failed files are never results."""
        ids = list(dict.fromkeys(int(i) for i in content_ids))
        found: dict[int, list[str]] = {i: [] for i in ids}
        # "+status": without it SQLite picks the status index ('ok' is nearly every row) and scans
        # the whole table: 32 ms a search at 100k files instead of 0.07 ms.
        for cid, path in self._rows_for_ids(
            "SELECT content_id, path FROM files WHERE content_id IN ({}) AND +status = 'ok'", ids
        ):
            found[cid].append(os.fsdecode(path))
        for paths in found.values():
            paths.sort(key=os.fsencode)  # the order of the stored bytes, for names that are not UTF-8
        return found

    def newest_file(self) -> str | None:
        """A live path of the most recently added content: "last indexed" in the gallery's status."""
        row = self.conn.execute(
            "SELECT path FROM files WHERE content_id IS NOT NULL AND +status = 'ok' ORDER BY content_id DESC LIMIT 1"
        ).fetchone()
        return os.fsdecode(row[0]) if row else None

    def vector(self, content_id: int) -> np.ndarray | None:
        """A content's vector (its first, for a content with several)."""
        row = self.conn.execute(
            "SELECT vector FROM vectors WHERE content_id = ? ORDER BY at LIMIT 1", (content_id,)
        ).fetchone()
        return np.frombuffer(row[0], dtype=np.float16).astype(np.float32) if row else None

    def vectors_for(self, content_ids: np.ndarray) -> np.ndarray:
        """Float32 vectors of the given contents (each one's first), in the given order (each must exist)."""
        ids = [int(i) for i in content_ids]
        found: dict[int, bytes] = {}
        for cid, blob in self._rows_for_ids(
            "SELECT content_id, vector FROM vectors WHERE content_id IN ({}) ORDER BY at DESC", ids
        ):
            found[cid] = blob  # the last row seen per content is its first in time
        return self._decode_vectors([found[i] for i in ids])

    def vector_ids(self) -> np.ndarray:
        """Every vector id: what the index holds."""
        return np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM vectors")), dtype=np.int64)

    def vectors_by_id(self, vector_ids: np.ndarray) -> np.ndarray:
        """Float32 vectors of the given vector ids, in the given order (each must exist)."""
        ids = [int(i) for i in vector_ids]
        found = dict(self._rows_for_ids("SELECT id, vector FROM vectors WHERE id IN ({})", ids))
        return self._decode_vectors([found[i] for i in ids])

    def contents_of(self, vector_ids: Iterable[int]) -> dict[int, int]:
        """The content of each vector id still in the catalog."""
        ids = list(dict.fromkeys(int(i) for i in vector_ids))
        return dict(self._rows_for_ids("SELECT id, content_id FROM vectors WHERE id IN ({})", ids))

    def vector_ids_of(self, content_ids: Iterable[int]) -> np.ndarray:
        """Sorted ids of the vectors of the given contents."""
        ids = list(dict.fromkeys(int(i) for i in content_ids))
        rows = self._rows_for_ids("SELECT id FROM vectors WHERE content_id IN ({})", ids)
        return np.unique(np.fromiter((r[0] for r in rows), dtype=np.int64))

    def _vector_rows(self, chunk: int) -> Iterator[tuple[np.ndarray, list[bytes]]]:
        """All (vector ids, their stored blobs) in id order, a chunk at a time."""
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT id, vector FROM vectors WHERE id > ? ORDER BY id LIMIT ?", (last, chunk)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, [r[1] for r in rows]
            last = int(ids[-1])

    def iter_vectors(self, chunk: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (vector ids, float32 vectors) in id order, a chunk at a time, for rebuilding the index."""
        for ids, blobs in self._vector_rows(chunk):
            yield ids, self._decode_vectors(blobs)

    def iter_stored_vectors(self, chunk: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (vector ids, float16 vectors as stored) in id order, a chunk at a time: for a scan that scores them
        as they are (FAISS reads float16), with no float32 copy (numpy's cast alone took 2 s a pass at 1M)."""
        dim = int(self.get_meta("dim") or 0)
        for ids, blobs in self._vector_rows(chunk):
            yield ids, np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(ids), dim)

    def sources(self, content_ids: Iterable[int]) -> list[tuple[int, str, list[FileStat]]]:
        """(id, digest, live files) of each content still in the catalog, in the order given."""
        ids = list(dict.fromkeys(int(i) for i in content_ids))
        digests = dict(self._rows_for_ids("SELECT id, hash FROM contents WHERE id IN ({})", ids))
        found: dict[int, list[FileStat]] = {i: [] for i in digests}
        for cid, path, size, mtime_ns in self._rows_for_ids(
            "SELECT content_id, path, size, mtime_ns FROM files WHERE content_id IN ({}) AND +status = 'ok' "
            "ORDER BY path",
            list(digests),
        ):
            found[cid].append(FileStat(os.fsdecode(path), size, mtime_ns))
        return [(i, digests[i], found[i]) for i in ids if i in digests]

    def shared_contents(self) -> list[int]:
        """Contents that more than one live file holds: exact copies."""
        rows = self.conn.execute(
            "SELECT content_id FROM files WHERE +status = 'ok' AND content_id IS NOT NULL "
            "GROUP BY content_id HAVING count(*) > 1"
        )
        return [r[0] for r in rows]

    def content_ids_under(self, folder: str) -> np.ndarray:
        """Contents with a live file inside folder."""
        lo, hi = prefix_range(folder)
        rows = self.conn.execute(
            "SELECT DISTINCT content_id FROM files WHERE path >= ? AND path < ? AND +status = 'ok'", (lo, hi)
        )
        return np.fromiter((r[0] for r in rows if r[0] is not None), dtype=np.int64)

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    # -- writes (callers group them in transaction()) -----------------------------------------

    def add_content(
        self,
        digest: str,
        vector: np.ndarray,
        width: int,
        height: int,
        meta: ImageMeta | None = None,
        next_vector: np.ndarray | None = None,
    ) -> int:
        """A new content with one vector (a photo's); returns its content id (add_photo gives the vector id too)."""
        return self.add_photo(digest, vector, width, height, meta, next_vector)[0]

    def add_photo(
        self,
        digest: str,
        vector: np.ndarray,
        width: int,
        height: int,
        meta: ImageMeta | None = None,
        next_vector: np.ndarray | None = None,
    ) -> tuple[int, int]:
        """A new content, its one vector and its metadata row (without `meta`, the row waits for
        backfill_media to read it); during a model change, `next_vector` is the new model's.
        Returns (content id, vector id)."""
        cursor = self.conn.execute(
            "INSERT INTO contents(hash, width, height) VALUES (?, ?, ?)",
            (digest, width, height),
        )
        content_id = int(cursor.lastrowid)
        blob = np.ascontiguousarray(vector, dtype=np.float16).tobytes()
        cursor = self.conn.execute(
            "INSERT INTO vectors(content_id, at, vector) VALUES (?, 0, ?)",
            (content_id, blob),
        )
        vector_id = int(cursor.lastrowid)
        self.conn.execute("INSERT INTO media(content_id, width, height) VALUES (?, ?, ?)", (content_id, width, height))
        if meta is not None:
            self.set_media(content_id, meta)
        if next_vector is not None:
            self._add_next_vector(vector_id, next_vector)
        self._bump_generation()
        return content_id, vector_id

    def set_file(self, path: str, size: int, mtime_ns: int, content_id: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO files(path, content_id, size, mtime_ns, status, error, missing_since) "
            "VALUES (?, ?, ?, ?, 'ok', NULL, NULL)",
            (path_key(path), content_id, size, mtime_ns),
        )

    def set_failed(self, path: str, size: int, mtime_ns: int, error: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO files(path, content_id, size, mtime_ns, status, error, missing_since) "
            "VALUES (?, NULL, ?, ?, 'failed', ?, NULL)",
            (path_key(path), size, mtime_ns, error),
        )

    def remove_file(self, path: str) -> bool:
        return self.conn.execute("DELETE FROM files WHERE path = ?", (path_key(path),)).rowcount > 0

    def remove_under(self, folder: str) -> int:
        lo, hi = prefix_range(folder)
        return self.conn.execute("DELETE FROM files WHERE path >= ? AND path < ?", (lo, hi)).rowcount

    def move_file(self, src: str, dest: str) -> bool:
        """Rename one path; a row already at dest is replaced only when src really exists.

        watchdog reports a folder move and then each file in it; by the time the file events
        arrive the folder move has already put the rows at dest, and they must survive.
        """
        if self.conn.execute("SELECT 1 FROM files WHERE path = ?", (path_key(src),)).fetchone() is None:
            return False
        self.conn.execute("DELETE FROM files WHERE path = ?", (path_key(dest),))
        return (
            self.conn.execute("UPDATE files SET path = ? WHERE path = ?", (path_key(dest), path_key(src))).rowcount > 0
        )

    def move_under(self, src_folder: str, dest_folder: str) -> int:
        """Rewrite every path below src_folder to the same place below dest_folder."""
        moved = 0
        for record in list(self.files_under(src_folder)):
            rel = os.path.relpath(record.path, src_folder)
            moved += self.move_file(record.path, os.path.join(dest_folder, rel))
        return moved

    def mark_missing_under(self, folder: str, now: float) -> int:
        lo, hi = prefix_range(folder)
        return self.conn.execute(
            "UPDATE files SET status = 'missing', missing_since = ? WHERE path >= ? AND path < ? AND +status = 'ok'",
            (now, lo, hi),
        ).rowcount

    def restore_missing_under(self, folder: str) -> int:
        lo, hi = prefix_range(folder)
        return self.conn.execute(
            "UPDATE files SET status = 'ok', missing_since = NULL WHERE path >= ? AND path < ? AND status = 'missing'",
            (lo, hi),
        ).rowcount

    def drop_expired_missing(self, older_than: float) -> int:
        return self.conn.execute(
            "DELETE FROM files WHERE status = 'missing' AND missing_since < ?", (older_than,)
        ).rowcount

    def orphan_ids(self) -> list[int]:
        """Contents no path points at any more."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM contents WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.content_id = contents.id)"
            )
        ]

    def orphans_among(self, content_ids: Iterable[int]) -> list[int]:
        """Those of the given contents no path points at any more: the per-event form of orphan_ids, which
        costs what the event released, not what the library holds."""
        ids = sorted({int(i) for i in content_ids})
        return [
            r[0]
            for r in self._rows_for_ids(
                "SELECT id FROM contents WHERE id IN ({}) "
                "AND NOT EXISTS (SELECT 1 FROM files WHERE files.content_id = contents.id)",
                ids,
            )
        ]

    def delete_orphans(self) -> list[int]:
        """Drop contents no path points at any more; returns their vectors' ids, for the index."""
        return self.delete_contents(self.orphan_ids())

    def record_event(self, key: str) -> None:
        self.set_meta(key, str(time.time()))


class ThreadReaders:
    """A read-only connection per thread, opened on first use: SQLite connections are not shared."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def get(self) -> Catalog:
        reader = getattr(self._local, "catalog", None)
        if reader is None:
            reader = self._local.catalog = Catalog(self.path, readonly=True)
        return reader

    def close_mine(self) -> None:
        """Close the calling thread's connection, if it opened one."""
        reader = getattr(self._local, "catalog", None)
        if reader is not None:
            reader.close()
            self._local.catalog = None
