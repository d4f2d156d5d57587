"""The daemon's live duplicates: near-duplicate pairs kept current as contents come and go, and the
status line's summary of them, regrouped only when the library changed (so polling costs no grouping)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..search.dupes import DEFAULT_THRESHOLD, PairSource, find_groups, summary
from ..search.pairpass import run_pass
from ..search.pairs import MARGIN, PAIR_LIMIT, Pair, library_pairs, scored
from ..store.catalog import Catalog
from ..store.dupepass import PassRows
from ..store.index import VectorIndex

log = logging.getLogger(__name__)

TRACKER_WAIT = 90.0  # seconds a request waits for the daemon's first pass before computing itself (client: 120 s)
# Nearest near-duplicates a new content is linked to (and scored against): a library of a thousand
# near-identical frames would otherwise make each new one cost a thousand lookups and links. A real
# group (a burst, a set of edits) is far smaller, so what `imgd dupes` lists does not change for it.
NEIGHBOUR_LIMIT = PAIR_LIMIT
# The first pass gives way to new files between its blocks, but waits at most this long per block, so
# a flood of files (a first index of a big library) holds it back without stopping it, and the changes
# it queues meanwhile stay bounded.
YIELD_LIMIT = 5.0


@dataclass
class _Events:
    added: dict[int, np.ndarray] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)


def library_vectors(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(vector ids, float16 vectors) of the whole library: what the tracker pairs, in the index's ids."""
    id_parts, vector_parts = [], []
    for chunk_ids, chunk in catalog.iter_vectors():
        id_parts.append(chunk_ids)
        vector_parts.append(chunk.astype(np.float16))
    if not id_parts:
        dim = int(catalog.model_info()[1]) if catalog.model_info() else 0
        return np.empty(0, np.int64), np.empty((0, dim), np.float16)
    return np.concatenate(id_parts), np.vstack(vector_parts)


def library_state(catalog: Catalog) -> tuple[object, ...]:
    """What duplicate groups depend on besides the pairs, in one cheap read: contents and metadata
    (the generations) and live, missing and failed files (the counts)."""
    with catalog.snapshot():
        return (*catalog.state(), *sorted(catalog.counts().items()))


class DupeTracker:
    """Near-duplicate pairs of the whole library at or above `floor`, kept current as contents come and go.

    The first answer is computed from the catalog in a background thread, whose blocks give way while
    new files wait (`busy`); contents added or removed meanwhile are queued and applied once it is done.
    Each content keeps pairs with its PAIR_LIMIT nearest (pairs.py), in the first pass as in the upkeep.
    After that, a new content costs one range search over the live index and a removed one a dictionary
    deletion. Moves and extra copies change no
    content, so they need no upkeep here: files are read from the catalog when groups are listed.
    The pairs are kept between the index's vector ids, the only ids its events carry (a removed
    vector's content is gone from the catalog by then); `owners` maps them to contents when pairs are
    asked for (None: the ids are content ids already).
    """

    def __init__(
        self,
        index: VectorIndex,
        load_vectors: Callable[[], tuple[np.ndarray, np.ndarray]],
        floor: float = DEFAULT_THRESHOLD,
        owners: Callable[[Iterable[int]], dict[int, int]] | None = None,
        busy: Callable[[], bool] = lambda: False,
        catalog_path: Path | None = None,
    ) -> None:
        self.index = index
        self._catalog_path = catalog_path  # the daemon's: the pass is kept there and resumed (pairpass.py)
        self._busy = busy  # new files wait to be embedded: the first pass's blocks wait too
        self._owners = owners
        self.floor = floor
        self._load_vectors = load_vectors
        self._neighbours: dict[int, dict[int, float]] = {}
        self._version = 0  # counts changes to the pairs: a summary made before one is stale
        self._summary: tuple[tuple[object, ...], dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._pending: _Events | None = _Events()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._build_logged, name="imgd-dupes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the first pass early (the daemon is stopping): its blocks not yet begun are skipped."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _build_logged(self) -> None:
        try:
            self.build()
        except Exception as exc:  # noqa: BLE001 - dupes falls back to computing on request
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("finding duplicates failed; `imgd dupes` computes them on request")
        finally:
            self._ready.set()

    def build(self) -> None:
        """Pairs of the whole library, then the changes made while they were computed."""
        if self._catalog_path is not None:
            self._build_kept(self._catalog_path)
            return
        ids, vectors = self._load_vectors()
        pairs = library_pairs(ids, vectors, self.floor, stopped=self._gate)
        del vectors
        if self._stop.is_set():
            self.error = "stopped before the first pass was done"
            return
        with self._lock:
            for a, b, score in pairs:
                self._link(a, b, score)
            events, self._pending = self._pending, None
        if events is not None:
            self._apply(events)
        self._ready.set()
        log.info("duplicates: %d pairs among %d images", self.pair_count(), len(ids))

    def _build_kept(self, catalog_path: Path) -> None:
        """The pass kept in the catalog: resumed where it stopped, or read back once done, then the vectors
        added since linked by a range search each (stored, so the next start skips them)."""
        rows = PassRows(catalog_path)
        try:
            key = f"{rows.identity()}|{self.floor}"
            if not run_pass(rows, key, self.floor, self._gate):
                self.error = "stopped before the first pass was done"
                return
            first, second, scores = rows.pairs()
            state = rows.state(key)
            added = rows.vector_ids(above=int(state["high_water"])) if state else np.empty(0, np.int64)  # type: ignore[call-overload]
            with self._lock:
                for a, b, score in zip(first.tolist(), second.tolist(), scores.tolist(), strict=True):
                    self._link(a, b, score)
            for start in range(0, len(added), 1000):
                if self._gate():
                    self.error = "stopped before the first pass was done"
                    return
                present, vectors = rows.vectors(added[start : start + 1000])
                rows.caught_up(key, self._add(present, vectors), int(added[min(start + 1000, len(added)) - 1]))
            with self._lock:
                events, self._pending = self._pending, None
        finally:
            rows.close()
        if events is not None:
            self._apply(events)
        self._ready.set()
        log.info("duplicates: %d pairs among %d vectors", self.pair_count(), len(self.index))

    def _gate(self) -> bool:
        """Asked before each block of the first pass: wait while new files wait (YIELD_LIMIT at most), then
        say whether to stop."""
        deadline = time.monotonic() + YIELD_LIMIT
        while self._busy() and not self._stop.is_set() and time.monotonic() < deadline:
            self._stop.wait(0.05)
        return self._stop.is_set()

    # -- upkeep (the worker thread) -------------------------------------------------------------

    def on_added(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """New contents, already in the index: one range search each, linked to at most NEIGHBOUR_LIMIT nearest."""
        with self._lock:
            if self._pending is not None:
                for cid, vector in zip(np.asarray(ids).tolist(), vectors, strict=True):
                    self._pending.added[int(cid)] = np.asarray(vector, dtype=np.float16)
                return
        self._add(np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float16))

    def on_removed(self, ids: Iterable[int]) -> None:
        with self._lock:
            if self._pending is not None:
                for cid in ids:
                    self._pending.added.pop(int(cid), None)
                    self._pending.removed.add(int(cid))
                return
            for cid in ids:
                self._unlink(int(cid))

    def _apply(self, events: _Events) -> None:
        with self._lock:
            for cid in events.removed:
                self._unlink(cid)
        if events.added:
            ids = np.fromiter(events.added, dtype=np.int64, count=len(events.added))
            self._add(ids, np.vstack(list(events.added.values())))

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> list[Pair]:
        """Link new vectors to their nearest pairs; returns the pairs."""
        if len(ids) == 0:
            return []
        found = self.index.range_search(vectors.astype(np.float32), self.floor - MARGIN, limit=NEIGHBOUR_LIMIT + 1)
        firsts = np.fromiter(
            (position for position, hits in enumerate(found) for other, _ in hits if other != ids[position]), np.int64
        )
        seconds = np.fromiter(
            (other for position, hits in enumerate(found) for other, _ in hits if other != ids[position]), np.int64
        )
        pairs: list[Pair] = []
        if len(seconds):
            # Stored vectors are the catalog's float16 values, so the exact score matches the direct path's;
            # one batch lookup (ids removed since the range search, a queued change, drop out).
            present, stored = self.index.reconstruct_many(np.unique(seconds))
            rows = np.isin(seconds, present)
            others = stored[np.searchsorted(present, seconds[rows])]
            pairs = scored(ids[firsts[rows]], seconds[rows], vectors[firsts[rows]], others, self.floor)
        with self._lock:
            for a, b, score in pairs:
                self._link(a, b, score)
        return pairs

    def _link(self, a: int, b: int, score: float) -> None:
        self._neighbours.setdefault(a, {})[b] = score
        self._neighbours.setdefault(b, {})[a] = score
        self._version += 1

    def _unlink(self, cid: int) -> None:
        for other in self._neighbours.pop(cid, {}):
            links = self._neighbours.get(other)
            if links is not None:
                links.pop(cid, None)
                if not links:
                    del self._neighbours[other]
            self._version += 1

    # -- answers (any thread) -----------------------------------------------------------------------

    def serves(self, threshold: float) -> bool:
        """Can this threshold be answered from memory? (Lower ones are computed on request.)"""
        return self.ready and self.error is None and threshold >= self.floor

    def source_for(self, threshold: float) -> PairSource | None:
        """The pairs to group for a `dupes` request, once the first pass is done; None: compute them on request."""
        return self.pairs if self.wait_ready(TRACKER_WAIT) and self.serves(threshold) else None

    def pairs(self, threshold: float, scope: np.ndarray | None = None) -> list[Pair]:
        """Pairs of contents at or above threshold (not below the floor), both ends in scope (content ids) if
        one is given; two contents paired by several of their vectors count once, at their best score."""
        if threshold < self.floor:
            raise ValueError(f"threshold {threshold} is below the tracked floor {self.floor}")
        with self._lock:
            found = [
                (a, b, score)
                for a, links in self._neighbours.items()
                for b, score in links.items()
                if a < b and score >= threshold
            ]
        if self._owners is not None:
            owner = self._owners({v for a, b, _ in found for v in (a, b)})
            best: dict[tuple[int, int], float] = {}
            for a, b, score in found:
                first, second = owner.get(a), owner.get(b)
                if first is None or second is None or first == second:
                    continue  # removed meanwhile, or two moments of one content
                key = (min(first, second), max(first, second))
                best[key] = max(score, best.get(key, score))
            found = [(a, b, score) for (a, b), score in best.items()]
        allowed = set(scope.tolist()) if scope is not None else None
        return [(a, b, s) for a, b, s in found if allowed is None or (a in allowed and b in allowed)]

    def pair_count(self) -> int:
        with self._lock:
            return sum(len(links) for links in self._neighbours.values()) // 2

    def summary(self, catalog_path: Path, threshold: float) -> dict[str, Any]:
        """`imgd status`'s duplicates: groups at threshold and the bytes besides their keepers, without
        waiting for the first pass. Regrouped (a stat of every member) only when the pairs or the library
        changed since the last summary; a rename alone leaves it as it was."""
        if not self.ready:
            return {"computing": True}
        if self.error is not None:
            return {"error": self.error}
        catalog = Catalog(catalog_path, readonly=True)
        try:
            key = (threshold, self._version, *library_state(catalog))  # read before the groups: stale, never wrong
            kept = self._summary
            if kept is not None and kept[0] == key:
                return dict(kept[1])
            groups = find_groups(catalog, threshold, pair_source=self.pairs)
        finally:
            catalog.close()
        value = {"threshold": threshold, **summary(groups)}
        self._summary = (key, value)
        return dict(value)
