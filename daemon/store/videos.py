"""The catalog's video rows: a video is one content with several vectors, each at its time, and a duration.

Part of the catalog (catalog.py): the content and its media row as a photo's, one vectors row per kept
frame (`at` in seconds), and media.duration (schema 5), which the duration filters read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .core import CatalogCore
from .records import ImageMeta


class VideoRows(CatalogCore):
    """Writes and reads of a video's frames and duration, on the catalog's connection."""

    def add_video(
        self,
        digest: str,
        vectors: np.ndarray,
        times: Sequence[float],
        meta: ImageMeta,
        duration: float,
        next_vectors: np.ndarray | None = None,
    ) -> tuple[int, list[int]]:
        """A new content with one vector per kept frame; returns (content id, vector ids in time order)."""
        content_id = int(
            self.conn.execute(
                "INSERT INTO contents(hash, width, height) VALUES (?, ?, ?)", (digest, meta.width, meta.height)
            ).lastrowid
        )
        vector_ids = []
        for position, (at, vector) in enumerate(zip(times, vectors, strict=True)):
            blob = np.ascontiguousarray(vector, dtype=np.float16).tobytes()
            cursor = self.conn.execute(
                "INSERT INTO vectors(content_id, at, vector) VALUES (?, ?, ?)", (content_id, float(at), blob)
            )
            vector_ids.append(int(cursor.lastrowid))
            if next_vectors is not None:
                self._add_next_vector(vector_ids[-1], next_vectors[position])  # type: ignore[attr-defined]
        self.conn.execute(
            "INSERT INTO media(content_id, width, height) VALUES (?, ?, ?)", (content_id, meta.width, meta.height)
        )
        self.set_media(content_id, meta)  # type: ignore[attr-defined]
        self.conn.execute("UPDATE media SET duration = ? WHERE content_id = ?", (float(duration), content_id))
        self._bump_generation()
        return content_id, vector_ids

    def vector_times(self, vector_ids: Iterable[int]) -> dict[int, float]:
        """The time in seconds of each given vector (0 for a photo's)."""
        ids = sorted({int(i) for i in vector_ids})
        return {vid: float(at) for vid, at in self._rows_for_ids("SELECT id, at FROM vectors WHERE id IN ({})", ids)}

    def durations(self, content_ids: Iterable[int]) -> dict[int, float]:
        """The duration of each given content that is a video; photos are left out."""
        if self.schema_version < 2:
            return {}
        ids = sorted({int(i) for i in content_ids})
        rows = self._rows_for_ids(
            "SELECT content_id, duration FROM media WHERE content_id IN ({}) AND duration IS NOT NULL", ids
        )
        return {cid: float(duration) for cid, duration in rows}

    def frames_of(self, content_id: int) -> list[tuple[int, float]]:
        """(vector id, time) of a content's vectors in time order."""
        rows = self.conn.execute("SELECT id, at FROM vectors WHERE content_id = ? ORDER BY at", (content_id,))
        return [(int(vid), float(at)) for vid, at in rows]

    def vector_at(self, content_id: int, at: float) -> tuple[np.ndarray, float] | None:
        """The stored vector of a content nearest the time `at`, and that vector's time."""
        row = self.conn.execute(
            "SELECT vector, at FROM vectors WHERE content_id = ? ORDER BY abs(at - ?), at LIMIT 1", (content_id, at)
        ).fetchone()
        return None if row is None else (self._decode_vectors([row[0]])[0], float(row[1]))
