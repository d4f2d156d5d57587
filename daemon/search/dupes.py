"""Duplicates: exact copies (several files, one content) and near-duplicates (cosine >= a threshold).

Pairs of contents come from the pair join (pairs.py) over the library, or from the daemon's tracker
(service/dupetracker.py), which keeps them current; both score every pair exactly alike, so both
paths list the same groups. Groups hold files, each named by path and content id.

Grouping is complete linkage to the keeper: a group is a keeper and the images that are each at least
`threshold` similar to that keeper. Connected components would chain a slow pan or a series of edits
into one group whose ends share nothing, and a group's whole point is "keep the first, the others are
copies of it"; that holds exactly when every other member is close to the keeper. Within a connected
component the best image (largest pixel count, then oldest taken date, then shortest path) becomes a
keeper, takes its neighbours, and the rest are grouped again the same way.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import is_under
from ..protocol import DupesRequest
from ..store.catalog import Catalog
from ..store.records import FileDetail
from .pairs import PAIR_LIMIT, Pair, exact_scores, library_pairs
from .query import path_passes

DEFAULT_THRESHOLD = 0.975  # the config default too; measured in benchmarks/RESULTS.md (duplicates)
BURST_GAP = 3.0  # seconds between two shots of one burst, at most
BURST_THRESHOLD = 0.90  # cosine between consecutive shots: a burst's frames differ more than copies do


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
    content_id: int  # what the gallery names the file by, so it need not look the path up again

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "taken": self.taken,
            "score": round(self.score, 6),
            "same_content": self.same_content,
            "content_id": self.content_id,
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


Scorer = Callable[[int, list[int]], list[float]]  # exact scores of one content against others


def build_groups(
    pairs: Iterable[Pair],
    files: Mapping[int, Sequence[FileDetail]],
    threshold: float,
    score: Scorer | None = None,
) -> list[DupeGroup]:
    """Groups of the given files: each content's live files, pairs of contents at or above threshold.

    Only contents in `files` take part (a caller narrows the library by folder or filter there).
    Groups come out in the order of their keepers' paths, so both paths print them alike. Pairs are
    kept among each content's PAIR_LIMIT nearest (pairs.py), so a keeper with that many may lack some:
    `score` completes it against the rest of its component.
    """
    neighbours: dict[int, dict[int, float]] = {}
    for a, b, value in pairs:
        if value >= threshold and files.get(a) and files.get(b) and a != b:
            neighbours.setdefault(a, {})[b] = value
            neighbours.setdefault(b, {})[a] = value
    best = {cid: min(details, key=keeper_key) for cid, details in files.items() if details}
    groups: list[DupeGroup] = []
    seen: set[int] = set()
    for start in sorted(neighbours, key=lambda c: keeper_key(best[c])):
        if start in seen:
            continue
        component = _component(start, neighbours)
        seen |= component
        groups.extend(_star_groups(component, neighbours, files, best, threshold, score))
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


def _star_groups(  # noqa: PLR0913 - the grouping's state, passed down as it is
    component: set[int],
    neighbours: Mapping[int, Mapping[int, float]],
    files: Mapping[int, Sequence[FileDetail]],
    best: Mapping[int, FileDetail],
    threshold: float,
    score: Scorer | None = None,
) -> list[DupeGroup]:
    """Split a component into keeper-centred groups, best keeper first (complete linkage to the keeper)."""
    left = sorted(component, key=lambda c: keeper_key(best[c]))
    groups = []
    while left:
        keeper, rest = left[0], left[1:]
        close = neighbours.get(keeper, {})
        if score is not None and len(close) >= PAIR_LIMIT:  # a clump: its nearest only, the rest scored now
            unknown = [c for c in rest if c not in close]
            extra = {c: s for c, s in zip(unknown, score(keeper, unknown), strict=True) if s >= threshold}
            close = {**close, **extra}
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
                DupeMember(
                    detail.path, detail.size, detail.width, detail.height, detail.taken, score, cid == keeper, cid
                )
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
    """(content ids, float16 vectors) of the given contents, or of all, each by its (first) vector: half
    the memory of float32 (1 GB at 1M). Duplicates are a relation of contents, not of vectors."""
    ids = catalog.content_ids() if ids is None else np.asarray(ids, dtype=np.int64)
    parts = [catalog.vectors_for(ids[s : s + 20_000]).astype(np.float16) for s in range(0, len(ids), 20_000)]
    dim = int(catalog.model_info()[1]) if catalog.model_info() else 0
    return ids, np.vstack(parts) if parts else np.empty((0, dim), np.float16)


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
        # A video is a duplicate only of its exact copies: no measured method yet tells a near-copy of a
        # video from a video that merely shares a scene (or a photo of one of its frames).
        videos = set(catalog.durations({c for a, b, _ in pairs for c in (a, b)}))
        pairs = [pair for pair in pairs if pair[0] not in videos and pair[1] not in videos] if videos else pairs
        involved = {c for a, b, _ in pairs for c in (a, b)} | set(catalog.shared_contents())
        if allowed is not None:
            involved &= set(allowed.tolist())
        details = catalog.file_details(involved)
    files = {
        cid: [d for d in found if (keep_path is None or keep_path(d.path)) and os.path.isfile(d.path)]
        for cid, found in details.items()
    }
    groups = build_groups(pairs, files, threshold, score=lambda keeper, others: _scores(catalog, keeper, others))
    if within:
        groups = [g for g in groups if any(under(m.path, within) for m in g.members)]
    return groups


def _scores(catalog: Catalog, keeper: int, others: list[int]) -> list[float]:
    """Exact scores of a keeper against other contents, from the catalog's vectors (as the pairs are scored)."""
    if not others:
        return []
    ids, vectors = catalog_vectors(catalog, np.asarray([keeper, *others], dtype=np.int64))
    return exact_scores(np.repeat(vectors[:1], len(others), axis=0), vectors[1:]).tolist()


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


def request_groups(
    catalog_path: Path,
    request: DupesRequest,
    threshold: float,
    allowed: np.ndarray | None,
    pair_source: PairSource | None,
) -> list[DupeGroup]:
    """The groups a `dupes` request asks for: near and exact ones, then bursts if asked, from one read-only catalog."""
    filters = request.filters
    keep_path = (lambda p: path_passes(filters, p)) if filters.active else None
    catalog = Catalog(catalog_path, readonly=True)
    try:
        groups = find_groups(
            catalog, threshold, allowed=allowed, keep_path=keep_path, within=request.within, pair_source=pair_source
        )
        if request.bursts:
            groups += find_bursts(
                catalog, request.burst_gap, allowed=allowed, keep_path=keep_path, within=request.within
            )
    finally:
        catalog.close()
    return groups
