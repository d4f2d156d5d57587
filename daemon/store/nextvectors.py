"""The catalog's side of a model change (schema 3): the new model's vectors beside the live ones.

The target model is named in meta (next_model, next_dim, next_fingerprint, next_since); its vectors
sit in next_vectors, one row per content, until the switch makes them the live ones in one
transaction. ingest/modelchange.py drives the change; this part of the catalog keeps its rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import CatalogError
from .core import CatalogCore, same_model


class NextVectors(CatalogCore):
    """The rows of a model change under way, on the catalog's connection."""

    def model_change(self) -> tuple[str, int, str | None] | None:
        """(name, dim, fingerprint) of the model whose vectors are being written beside the live ones."""
        if self.schema_version < 3:
            return None
        name, dim = self.get_meta("next_model"), self.get_meta("next_dim")
        return (name, int(dim), self.get_meta("next_fingerprint")) if name and dim else None

    def begin_model_change(self, name: str, dim: int, fingerprint: str | None) -> int:
        """Start (or go on with) writing this model's vectors beside the live ones; returns how many it has.

        A change to another model than the one under way starts over: its vectors are of no use.
        """
        pending = self.model_change()
        if pending is not None and same_model(pending, (name, dim, fingerprint)):
            if name != pending[0]:
                with self.transaction():
                    self.set_meta("next_model", name)
            return self.conn.execute("SELECT count(*) FROM next_vectors").fetchone()[0]
        with self.transaction():
            self._clear_model_change()
            self.set_meta("next_model", name)
            self.set_meta("next_dim", str(dim))
            if fingerprint:
                self.set_meta("next_fingerprint", fingerprint)
            self.set_meta("next_since", str(time.time()))
        return 0

    def cancel_model_change(self) -> int:
        """Drop a change under way (the old model was asked for again); returns the vectors dropped."""
        with self.transaction():
            dropped = self._clear_model_change()
        return dropped

    def _clear_model_change(self) -> int:
        if self.schema_version < 3:
            return 0
        dropped = self.conn.execute("DELETE FROM next_vectors").rowcount
        self.conn.execute("DELETE FROM meta WHERE key IN ('next_model', 'next_dim', 'next_fingerprint', 'next_since')")
        return dropped

    def model_change_progress(self) -> tuple[int, int]:
        """(vectors with the new model's vector, all vectors): one each per photo."""
        done = self.conn.execute("SELECT count(*) FROM next_vectors").fetchone()[0]
        return done, self.count_vectors()

    def reembed_order(self) -> np.ndarray:
        """Contents with a vector still without the new model's, newest first (EXIF time, else their newest
        file's mtime): the photos people look for first are searchable with the new model first (after the switch)."""
        rows = self.conn.execute(
            "SELECT m.content_id FROM media m "
            "WHERE EXISTS (SELECT 1 FROM vectors v WHERE v.content_id = m.content_id "
            "AND NOT EXISTS (SELECT 1 FROM next_vectors n WHERE n.vector_id = v.id)) "
            "ORDER BY coalesce(CAST(strftime('%s', m.taken) AS INTEGER), "
            "(SELECT max(f.mtime_ns) FROM files f WHERE f.content_id = m.content_id) / 1000000000) DESC, "
            "m.content_id DESC"
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def add_next_vectors(self, content_ids: Iterable[int], vectors: np.ndarray) -> int:
        """Store the new model's vectors of photos (a content's vector at time 0) that still exist; returns
        how many were stored."""
        stored = 0
        for content_id, vector in zip(content_ids, vectors, strict=True):
            blob = np.ascontiguousarray(vector, dtype=np.float16).tobytes()
            stored += self.conn.execute(
                "INSERT OR REPLACE INTO next_vectors(vector_id, vector) "
                "SELECT id, ? FROM vectors WHERE content_id = ? AND at = 0",
                (blob, int(content_id)),
            ).rowcount
        return stored

    def _add_next_vector(self, vector_id: int, vector: np.ndarray) -> None:
        blob = np.ascontiguousarray(vector, dtype=np.float16).tobytes()
        self.conn.execute("INSERT OR REPLACE INTO next_vectors(vector_id, vector) VALUES (?, ?)", (vector_id, blob))

    def iter_next_vectors(self, chunk: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All of the new model's (vector ids, float32 vectors) in id order, for its index before the switch."""
        change = self.model_change()
        dim = change[1] if change else 0
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT vector_id, vector FROM next_vectors WHERE vector_id > ? ORDER BY vector_id LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, self._decode_vectors([r[1] for r in rows], dim)
            last = int(ids[-1])

    def finish_model_change(self) -> list[int]:
        """Make the new model's vectors the live ones, in one transaction; returns the contents dropped.

        A content with a vector still without a new one (none of its files could be read again) is dropped and its
        files are kept with an unknown size, so the next reconcile embeds them anew if they are back.
        The catalog gets a new identity: an index file saved before the switch holds the old vectors
        under the same ids, and must be rebuilt, never patched.
        """
        change = self.model_change()
        if change is None:
            raise CatalogError(f"{self.path}: no model change is under way.")
        name, dim, fingerprint = change
        with self.transaction():
            dropped = [
                r[0]
                for r in self.conn.execute(
                    "SELECT DISTINCT v.content_id FROM vectors v "
                    "WHERE NOT EXISTS (SELECT 1 FROM next_vectors n WHERE n.vector_id = v.id)"
                )
            ]
            for start in range(0, len(dropped), 500):
                chunk = dropped[start : start + 500]
                self.conn.execute(
                    f"UPDATE files SET content_id = NULL, size = -1, mtime_ns = -1 "
                    f"WHERE content_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            self.delete_contents(dropped)
            self.conn.execute("UPDATE vectors SET vector = n.vector FROM next_vectors n WHERE n.vector_id = vectors.id")
            self._clear_model_change()
            self._record_model(name, dim, fingerprint)
            self.set_meta("catalog_id", uuid.uuid4().hex)
            self._bump_generation()
        return dropped
