"""Duplicates: exact copies (several files, one content) and near-duplicates (cosine >= a threshold).

Pairs of contents come from the index module: all pairs of the library at once (`similar_pairs`), or one
range search per new content in the daemon (`DupeTracker`). Candidates are found with float32 products
a little below the threshold and then scored exactly: a float64 dot product of two float16 vectors (what
the catalog stores) is exact whatever the summation order, so the daemon and the direct path score
every pair to the last bit alike and list the same groups.

Grouping is complete linkage to the keeper: a group is a keeper and the images that are each at least
`threshold` similar to that keeper. Connected components would chain a slow pan or a series of edits
into one group whose ends share nothing, and a group's whole point is "keep the first, the others are
copies of it"; that holds exactly when every other member is close to the keeper. Within a connected
component the best image (largest pixel count, then oldest taken date, then shortest path) becomes a
keeper, takes its neighbours, and the rest are grouped again the same way.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..paths import is_under
from ..protocol import DupesRequest
from ..store.catalog import Catalog
from ..store.index import VectorIndex, similar_pairs
from ..store.records import FileDetail
from .query import Searcher, path_passes

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.975  # the config default too; measured in benchmarks/RESULTS.md (duplicates)
MARGIN = 0.002  # candidates from float32 products this far below the threshold are scored exactly
TRACKER_WAIT = 90.0  # seconds a request waits for the daemon's first pass before computing itself (client: 120 s)
BURST_GAP = 3.0  # seconds between two shots of one burst, at most
BURST_THRESHOLD = 0.90  # cosine between consecutive shots: a burst's frames differ more than copies do
NEIGHBOUR_LIMIT = 1000  # near-duplicates kept per content by the daemon: a bound for a too-low threshold

Pair = tuple[int, int, float]  # (content a, content b, exact cosine), a < b


def exact_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise cosine of float16-valued unit vectors, exactly.

    Each product of two float16 values is exact in float64 (22 significant bits), and every partial sum
    of a unit-vector dot product is a multiple of 2**-48 below ~1 in size, so it fits float64's 53 bits:
    no rounding anywhere, so no dependence on how a BLAS orders the sum.
    """
    a = np.asarray(first, dtype=np.float16).astype(np.float64)
    b = np.asarray(second, dtype=np.float16).astype(np.float64)
    if a.ndim == 1:
        a, b = a[None], b[None]
    return np.einsum("ij,ij->i", a, b)


def library_pairs(ids: np.ndarray, vectors: np.ndarray, threshold: float) -> list[Pair]:
    """Every pair of the given contents at or above threshold, exactly scored."""
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float16)
    firsts, seconds = similar_pairs(vectors, threshold - MARGIN)
    return _scored(ids[firsts], ids[seconds], vectors[firsts], vectors[seconds], threshold)


def _scored(a: np.ndarray, b: np.ndarray, va: np.ndarray, vb: np.ndarray, threshold: float) -> list[Pair]:
    scores = exact_scores(va, vb)
    keep = scores >= threshold
    low, high = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    return list(zip(low.tolist(), high.tolist(), scores[keep].tolist(), strict=True))


# -- groups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DupeMember:
    """One file of a group and its similarity to the group's keeper (1.0 for the keeper's own content)."""

    path: str
    size: int
    width: int
    height: int
    taken: str | None
    score: float
    same_content: bool  # byte-identical to the keeper (an exact copy)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "taken": self.taken,
            "score": round(self.score, 6),
            "same_content": self.same_content,
        }


@dataclass(frozen=True)
class DupeGroup:
    """Images that are the same picture, the suggested keeper first."""

    kind: str  # "exact" (one content, several files), "near" or "burst"
    members: tuple[DupeMember, ...]

    @property
    def keeper(self) -> DupeMember:
        return self.members[0]

    @property
    def others(self) -> tuple[DupeMember, ...]:
        return self.members[1:]

    @property
    def reclaimable(self) -> int:
        """Bytes the non-keepers take."""
        return sum(m.size for m in self.others)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "keeper": self.keeper.path,
            "reclaimable": self.reclaimable,
            "members": [m.as_dict() for m in self.members],
        }


def keeper_key(detail: FileDetail) -> tuple:
    """Preference order: most pixels, then oldest capture (unknown last), then shortest path."""
    return (
        -detail.width * detail.height,
        detail.taken is None,
        detail.taken or "",
        len(detail.path),
        os.fsencode(detail.path),
    )


def build_groups(
    pairs: Iterable[Pair],
    files: Mapping[int, Sequence[FileDetail]],
    threshold: float,
) -> list[DupeGroup]:
    """Groups of the given files: each content's live files, pairs of contents at or above threshold.

    Only contents in `files` take part (a caller narrows the library by folder or filter there).
    Groups come out in the order of their keepers' paths, so both paths print them alike.
    """
    neighbours: dict[int, dict[int, float]] = {}
    for a, b, score in pairs:
        if score >= threshold and files.get(a) and files.get(b) and a != b:
            neighbours.setdefault(a, {})[b] = score
            neighbours.setdefault(b, {})[a] = score
    best = {cid: min(details, key=keeper_key) for cid, details in files.items() if details}
    groups: list[DupeGroup] = []
    seen: set[int] = set()
    for start in sorted(neighbours, key=lambda c: keeper_key(best[c])):
        if start in seen:
            continue
        component = _component(start, neighbours)
        seen |= component
        groups.extend(_star_groups(component, neighbours, files, best))
    for cid, details in files.items():  # exact copies with no near-duplicate
        if cid not in seen and len(details) > 1:
            groups.append(_group([cid], {}, files))
    groups.sort(key=lambda g: os.fsencode(g.keeper.path))
    return groups


def _component(start: int, neighbours: Mapping[int, Mapping[int, float]]) -> set[int]:
    found, todo = {start}, [start]
    while todo:
        for other in neighbours[todo.pop()]:
            if other not in found:
                found.add(other)
                todo.append(other)
    return found


def _star_groups(
    component: set[int],
    neighbours: Mapping[int, Mapping[int, float]],
    files: Mapping[int, Sequence[FileDetail]],
    best: Mapping[int, FileDetail],
) -> list[DupeGroup]:
    """Split a component into keeper-centred groups, best keeper first (complete linkage to the keeper)."""
    left = sorted(component, key=lambda c: keeper_key(best[c]))
    groups = []
    while left:
        keeper, rest = left[0], left[1:]
        close = neighbours.get(keeper, {})
        taken = [c for c in rest if c in close]
        left = [c for c in rest if c not in close]
        if taken or len(files[keeper]) > 1:
            groups.append(_group([keeper, *taken], close, files))
    return groups


def _group(contents: list[int], scores: Mapping[int, float], files: Mapping[int, Sequence[FileDetail]]) -> DupeGroup:
    """The keeper's own files first, then each other content's files together, in keeper order."""
    keeper = contents[0]
    members = []
    for cid in sorted(contents, key=lambda c: (c != keeper, min(map(keeper_key, files[c])))):
        score = 1.0 if cid == keeper else scores[cid]
        for detail in sorted(files[cid], key=keeper_key):
            members.append(
                DupeMember(detail.path, detail.size, detail.width, detail.height, detail.taken, score, cid == keeper)
            )
    return DupeGroup("exact" if len(contents) == 1 else "near", tuple(members))


def _seconds(taken: str) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(taken)
    except ValueError:
        return None
    return (moment.replace(tzinfo=None) - _EPOCH).total_seconds()


_EPOCH = datetime.datetime(1970, 1, 1)


def build_bursts(
    files: Mapping[int, Sequence[FileDetail]],
    vectors: Mapping[int, np.ndarray],
    gap: float = BURST_GAP,
    threshold: float = BURST_THRESHOLD,
) -> list[DupeGroup]:
    """Shots of one camera, each within `gap` seconds of the one before and alike (cosine >= threshold).

    A burst is a sequence, so it chains from shot to shot; it is keyed on the capture time on the
    camera's clock, so contents without one never join. The keeper is chosen like a group's, and each
    member's score is to the keeper.
    """
    shots = []
    for cid, details in files.items():
        if not details or cid not in vectors:
            continue
        best = min(details, key=keeper_key)
        seconds = _seconds(best.taken) if best.taken else None
        if seconds is not None:
            shots.append((best.camera or "", seconds, keeper_key(best), cid))
    shots.sort()
    runs: list[list[int]] = []
    previous: tuple[str, float, tuple, int] | None = None
    for shot in shots:
        camera, seconds, _, cid = shot
        joins = (
            previous is not None
            and previous[0] == camera
            and seconds - previous[1] <= gap
            and exact_scores(vectors[previous[3]], vectors[cid])[0] >= threshold
        )
        if joins:
            runs[-1].append(cid)
        else:
            runs.append([cid])
        previous = shot
    groups = []
    for run in runs:
        if len(run) < 2:
            continue
        ordered = sorted(run, key=lambda c: min(map(keeper_key, files[c])))
        keeper = ordered[0]
        scores = {c: float(exact_scores(vectors[keeper], vectors[c])[0]) for c in ordered[1:]}
        group = _group(ordered, scores, files)
        groups.append(DupeGroup("burst", group.members))
    groups.sort(key=lambda g: os.fsencode(g.keeper.path))
    return groups


def under(path: str, folders: Sequence[str]) -> bool:
    return any(is_under(path, f) for f in folders)


def catalog_vectors(catalog: Catalog, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float16 vectors) of the given contents, or of all: half the memory of float32 (1 GB at 1M)."""
    if ids is not None:
        ids = np.asarray(ids, dtype=np.int64)
        parts = [catalog.vectors_for(ids[s : s + 20_000]).astype(np.float16) for s in range(0, len(ids), 20_000)]
        dim = int(catalog.model_info()[1]) if catalog.model_info() else 0
        return ids, np.vstack(parts) if parts else np.empty((0, dim), np.float16)
    id_parts, vector_parts = [], []
    for chunk_ids, chunk in catalog.iter_vectors():
        id_parts.append(chunk_ids)
        vector_parts.append(chunk.astype(np.float16))
    if not id_parts:
        dim = int(catalog.model_info()[1]) if catalog.model_info() else 0
        return np.empty(0, np.int64), np.empty((0, dim), np.float16)
    return np.concatenate(id_parts), np.vstack(vector_parts)


PairSource = Callable[[float, np.ndarray | None], list[Pair]]


def find_groups(
    catalog: Catalog,
    threshold: float = DEFAULT_THRESHOLD,
    allowed: np.ndarray | None = None,
    keep_path: Callable[[str], bool] | None = None,
    within: Sequence[str] = (),
    pair_source: PairSource | None = None,
) -> list[DupeGroup]:
    """Duplicate groups among the live files of the `allowed` contents (all when None).

    `keep_path` drops single files (a filter on folder or type: one copy may pass and another not);
    `within` keeps only the groups with a file under one of those folders. `pair_source(threshold,
    allowed)` gives the near-duplicate pairs (the daemon's tracker); without one they are computed
    here from the catalog's vectors. Files no longer on disk are left out.
    """
    with catalog.snapshot():
        if pair_source is not None:
            pairs = pair_source(threshold, allowed)
        else:
            pairs = library_pairs(*catalog_vectors(catalog, allowed), threshold)
        involved = {c for a, b, _ in pairs for c in (a, b)} | set(catalog.shared_contents())
        if allowed is not None:
            involved &= set(allowed.tolist())
        details = catalog.file_details(involved)
    files = {
        cid: [d for d in found if (keep_path is None or keep_path(d.path)) and os.path.isfile(d.path)]
        for cid, found in details.items()
    }
    groups = build_groups(pairs, files, threshold)
    if within:
        groups = [g for g in groups if any(under(m.path, within) for m in g.members)]
    return groups


def find_bursts(
    catalog: Catalog,
    gap: float = BURST_GAP,
    allowed: np.ndarray | None = None,
    keep_path: Callable[[str], bool] | None = None,
    within: Sequence[str] = (),
) -> list[DupeGroup]:
    """Bursts among the allowed contents: only shots with a neighbour of the same camera within `gap`
    seconds are read further, so the cost follows the number of candidates, not the library."""
    with catalog.snapshot():
        shots = catalog.capture_times()
        if allowed is not None:
            keep = set(allowed.tolist())
            shots = [s for s in shots if s[0] in keep]
        timed = sorted(
            (camera, seconds, cid) for cid, taken, camera in shots if (seconds := _seconds(taken)) is not None
        )
        candidates: set[int] = set()
        for before, after in zip(timed, timed[1:], strict=False):
            if before[0] == after[0] and after[1] - before[1] <= gap:
                candidates.update((before[2], after[2]))
        ids = np.asarray(sorted(candidates), dtype=np.int64)
        details = catalog.file_details(ids.tolist())
        vectors = dict(zip(ids.tolist(), catalog_vectors(catalog, ids)[1], strict=True)) if len(ids) else {}
    files = {
        cid: [d for d in found if (keep_path is None or keep_path(d.path)) and os.path.isfile(d.path)]
        for cid, found in details.items()
    }
    groups = build_bursts(files, vectors, gap, BURST_THRESHOLD)
    if within:
        groups = [g for g in groups if any(under(m.path, within) for m in g.members)]
    return groups


def summary(groups: Sequence[DupeGroup]) -> dict[str, int]:
    """For `imgd status`: how many groups, and the bytes their non-keepers take."""
    return {"groups": len(groups), "reclaimable": sum(g.reclaimable for g in groups)}


# -- the daemon's running answer --------------------------------------------------------------


@dataclass
class _Events:
    added: dict[int, np.ndarray] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)


class DupeTracker:
    """Near-duplicate pairs of the whole library at or above `floor`, kept current as contents come and go.

    The first answer is computed from the catalog in a background thread; contents added or removed
    meanwhile are queued and applied once it is done. After that, a new content costs one range search
    over the live index and a removed one a dictionary deletion. Moves and extra copies change no
    content, so they need no upkeep here: files are read from the catalog when groups are listed.
    """

    def __init__(
        self,
        index: VectorIndex,
        load_vectors: Callable[[], tuple[np.ndarray, np.ndarray]],
        floor: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.index = index
        self.floor = floor
        self._load_vectors = load_vectors
        self._neighbours: dict[int, dict[int, float]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._pending: _Events | None = _Events()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._build_logged, name="imgd-dupes", daemon=True)
        self._thread.start()

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
        ids, vectors = self._load_vectors()
        pairs = library_pairs(ids, vectors, self.floor)
        del vectors
        with self._lock:
            for a, b, score in pairs:
                self._link(a, b, score)
            events, self._pending = self._pending, None
        if events is not None:
            self._apply(events)
        self._ready.set()
        log.info("duplicates: %d pairs among %d images", self.pair_count(), len(ids))

    # -- upkeep (the worker thread) -------------------------------------------------------------

    def on_added(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """New contents, already in the index: one range search each."""
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

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
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
            pairs = _scored(ids[firsts[rows]], seconds[rows], vectors[firsts[rows]], others, self.floor)
        with self._lock:
            for a, b, score in pairs:
                self._link(a, b, score)

    def _link(self, a: int, b: int, score: float) -> None:
        self._neighbours.setdefault(a, {})[b] = score
        self._neighbours.setdefault(b, {})[a] = score

    def _unlink(self, cid: int) -> None:
        for other in self._neighbours.pop(cid, {}):
            links = self._neighbours.get(other)
            if links is not None:
                links.pop(cid, None)
                if not links:
                    del self._neighbours[other]

    # -- answers (any thread) -----------------------------------------------------------------------

    def serves(self, threshold: float) -> bool:
        """Can this threshold be answered from memory? (Lower ones are computed on request.)"""
        return self.ready and self.error is None and threshold >= self.floor

    def pairs(self, threshold: float, scope: np.ndarray | None = None) -> list[Pair]:
        """Pairs at or above threshold (not below the floor), both ends in scope if one is given."""
        if threshold < self.floor:
            raise ValueError(f"threshold {threshold} is below the tracked floor {self.floor}")
        allowed = set(scope.tolist()) if scope is not None else None
        with self._lock:
            return [
                (a, b, score)
                for a, links in self._neighbours.items()
                for b, score in links.items()
                if a < b and score >= threshold and (allowed is None or (a in allowed and b in allowed))
            ]

    def pair_count(self) -> int:
        with self._lock:
            return sum(len(links) for links in self._neighbours.values()) // 2


# -- the request handler (daemon and direct path alike) -----------------------------------------


def answer(config: Config, request: DupesRequest, searcher: Searcher | None, tracker: DupeTracker | None) -> dict:
    """The `dupes` operation: groups as dicts, from the tracker when it can serve, else computed here."""
    threshold = request.threshold if request.threshold is not None else config.dupes_threshold
    filters = request.filters
    allowed = searcher.allowed(filters) if filters.active and searcher is not None else None
    source: PairSource | None = None
    if tracker is not None and tracker.wait_ready(TRACKER_WAIT) and tracker.serves(threshold):
        source = tracker.pairs
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        groups = find_groups(
            catalog,
            threshold,
            allowed=allowed,
            keep_path=(lambda p: path_passes(filters, p)) if filters.active else None,
            within=request.within,
            pair_source=source,
        )
        if request.bursts:
            groups += find_bursts(
                catalog,
                request.burst_gap,
                allowed=allowed,
                keep_path=(lambda p: path_passes(filters, p)) if filters.active else None,
                within=request.within,
            )
    finally:
        catalog.close()
    return {"threshold": threshold, "groups": [g.as_dict() for g in groups]}
