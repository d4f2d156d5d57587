"""Changing the model without losing search.

The new model's vectors are written beside the live ones (the catalog's next_vectors), newest photos
first, a batch at a time between the daemon's other work, while every search goes on with the old
model and its vectors. New files meanwhile are embedded by both models (engine.py). Once every image
has its new vector, one catalog transaction makes them the live ones and the index and the query
model are swapped in the same step (Engine.finish_change). Each batch is committed, so a crash or a
restart goes on where it stopped; asking for the old model again gives the change up.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..embedders import Embedder
from ..errors import ImageReadError, display_path
from ..store.catalog import Catalog
from ..store.records import FileStat
from . import imaging, video

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    content_id: int
    image: Any | None = None
    error: str | None = None
    frames: video.Sampled | None = None  # a video's samples, matched to its stored frames by time


class ModelChange:
    """The re-embedding of the whole library with `embedder`, resumable from the catalog."""

    def __init__(
        self,
        catalog: Catalog,
        embedder: Embedder,
        pool: ThreadPoolExecutor,
        max_image_pixels: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.embedder = embedder
        self._pool = pool
        self._max_pixels = max_image_pixels
        self._monotonic = monotonic
        fingerprint = getattr(embedder, "fingerprint", None)
        self.resumed_from = catalog.begin_model_change(embedder.name, embedder.dim, fingerprint)
        self.embedded = 0  # by this process
        self.failed: dict[int, str] = {}  # content id -> why none of its files could be read again
        self._queue: deque[int] = deque()
        self._ahead: tuple[list[int], list[Future[_Prepared]]] | None = None  # the next batch, being decoded
        self._started = monotonic()

    @property
    def name(self) -> str:
        return self.embedder.name

    def pace(self, done: int, total: int) -> dict[str, Any]:
        """For `imgd status`, given the catalog's counts (read elsewhere: this thread owns the writer's
        connection): how fast this run re-embeds, how long is left, how many could not be read. By the
        wall clock, so the time left counts the pauses and the other work between batches."""
        elapsed = self._monotonic() - self._started
        rate = self.embedded / elapsed if elapsed > 0 else 0.0
        left = max(0, total - done - len(self.failed))
        return {
            "failed": len(self.failed),
            "rate": round(rate, 2),
            "eta_s": round(left / rate, 1) if rate > 0 else None,
        }

    def step(self, limit: int) -> int:
        """Re-embed up to `limit` more images, newest first; returns how many were tried, 0 once none is left.

        The next batch is read and decoded in the pool while this one is embedded, as indexing does.
        """
        batch, self._ahead = self._ahead or self._submit(limit, ()), None
        if batch is None:
            return 0
        ids, futures = batch
        self._ahead = self._submit(limit, ids)
        prepared = [future.result() for future in futures]
        ready = [item for item in prepared if item.image is not None]
        self._videos([item for item in prepared if item.frames is not None])
        for item in prepared:
            if item.error is not None:
                self.failed[item.content_id] = item.error
                log.warning("cannot re-embed image %d with the new model: %s", item.content_id, item.error)
        if ready:
            vectors = self.embedder.encode_images([item.image for item in ready])
            with self.catalog.transaction():
                self.embedded += self.catalog.add_next_vectors([item.content_id for item in ready], vectors)
        return len(ids)

    def _videos(self, items: list[_Prepared]) -> None:
        """Each stored frame of each video gets the new model's vector of the sample nearest its time."""
        for item in items:
            assert item.frames is not None
            stored = self.catalog.frames_of(item.content_id)
            times = item.frames.times
            nearest = [min(range(len(times)), key=lambda i, at=at: abs(times[i] - at)) for _, at in stored]
            vectors = self.embedder.encode_images([item.frames.images[i] for i in nearest])
            with self.catalog.transaction():
                for (vector_id, _), vector in zip(stored, vectors, strict=True):
                    self.catalog._add_next_vector(vector_id, vector)
            self.embedded += 1

    def _submit(self, limit: int, in_flight: Collection[int]) -> tuple[list[int], list[Future[_Prepared]]] | None:
        """Start reading the next batch; None once every image has its new vector or was tried."""
        if not self._queue:
            skip = set(self.failed) | set(in_flight)
            self._queue = deque(i for i in map(int, self.catalog.reembed_order()) if i not in skip)
            if not self._queue:
                return None
        ids = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
        return ids, [self._pool.submit(self._prepare, source) for source in self.catalog.sources(ids)]

    def _prepare(self, source: tuple[int, str, list[FileStat]]) -> _Prepared:
        """Read a content from the first of its files that still holds its bytes."""
        content_id, digest, files = source
        if not files:
            return _Prepared(content_id, error="none of its files is on disk now")
        problems: list[str] = []
        for stat in files:
            try:
                if video.is_video(stat.path):
                    if video.hash_file(stat.path) != digest:
                        problems.append(f"{display_path(stat.path)}: changed since it was indexed")
                        continue
                    return _Prepared(content_id, frames=video.prepare(stat.path, self.embedder))
                data, found = imaging.read_and_hash(stat.path)
                if found != digest:  # rewritten since: the watcher indexes it as the new content it is
                    problems.append(f"{display_path(stat.path)}: changed since it was indexed")
                    continue
                image, _ = imaging.decode(stat.path, data, self._max_pixels)
                return _Prepared(content_id, image=self.embedder.prepare(image))
            except ImageReadError as exc:
                problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - one strange file must never stop the change
                problems.append(f"{display_path(stat.path)}: unexpected error ({type(exc).__name__}: {exc})")
        return _Prepared(content_id, error="; ".join(problems))

    def summary(self, dropped: list[int]) -> str:
        seconds = self._monotonic() - self._started
        line = f"{self.embedded} images re-embedded by this run in {seconds:.0f}s"
        if self.resumed_from:
            line += f", {self.resumed_from} before it"
        if dropped:
            line += f"; {len(dropped)} could not be read and are indexed again when they can"
        return line
