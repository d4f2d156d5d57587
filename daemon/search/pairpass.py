"""The daemon's whole-library duplicates pass in bounded memory, resumable through the catalog.

The pass blocks the library as pairs.py does (k-means lists in a PCA projection, each vector compared
with the members of its nearest lists) but never holds the library's vectors: the plan is each
vector id's lists (24 bytes a vector), and the lists are done a group at a time, reading from the
catalog only the vectors of the group's members and queries (at most GROUP_VECTORS of them, ~64 MB).
Each group's pairs are stored with the next group's number in one transaction (store/dupepass.py),
so a pass stopped or killed resumes at the group it was doing. The plan depends only on the vectors
at its start, so a resumed pass ends with the pairs an uninterrupted one gives.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from ..store.dupepass import PairArrays, PassRows
from .pairs import (
    MARGIN,
    PAIR_LIMIT,
    PAIRS_EXACT_LIMIT,
    PAIRS_PROBES,
    assign,
    blocking,
    exact_scores,
    library_pairs,
    list_count,
    list_pairs,
    nearest_pairs,
    sample_rows,
)

log = logging.getLogger(__name__)

GROUP_VECTORS = 65_536  # member and query vectors read for one group of lists: 64 MB of float16 at 512 dims
GROUP_LISTS = 16  # groups in a pass at least, so progress is kept at a sixteenth of the work or finer
# Vectors added since the last pass are linked by a range search each at start (~2-30 ms at 1M): past
# this share of the library the whole pass is cheaper (~0.1-0.3 ms a vector), so it runs again.
CATCH_UP_SHARE = 0.02
Stopped = Callable[[], bool]


def exact_limit() -> int:
    """Below this many vectors the pass compares every pair in one go (IMGD_PAIRS_EXACT_LIMIT: a test's)."""
    return int(os.environ.get("IMGD_PAIRS_EXACT_LIMIT") or PAIRS_EXACT_LIMIT)


def group_delay() -> float:
    """Seconds to sleep after each group (IMGD_DUPES_GROUP_DELAY: a test's slow pass, to stop it midway)."""
    return float(os.environ.get("IMGD_DUPES_GROUP_DELAY") or 0)


def make_plan(
    rows: PassRows, ids: np.ndarray, stopped: Stopped = lambda: False, probes: int = PAIRS_PROBES
) -> dict[str, np.ndarray] | None:
    """The blocking of these vector ids (sorted): their lists, trained on a sample read by id (None: stopped)."""
    nlist = list_count(len(ids), probes)
    present, sample = rows.vectors(ids[sample_rows(len(ids), nlist)])
    plan = blocking(sample, nlist)
    del sample
    lists = np.full((len(ids), probes), -1, np.int32)  # -1: removed before it was assigned
    for chunk_ids, chunk in rows.iter_vectors(20_000, upto=int(ids[-1])):  # 20 MB of float16 a chunk
        if stopped():  # asked between chunks: the assignment alone takes minutes at 1M
            return None
        at = np.searchsorted(ids, chunk_ids)
        known = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == chunk_ids)
        lists[at[known]] = assign(chunk[known], plan, probes)
    return {"ids": ids, "lists": lists, "nlist": np.array(nlist)}


def groups(plan: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """The plan's lists cut into ranges [start, end) of at most GROUP_VECTORS members and queries."""
    nlist, lists = int(plan["nlist"]), plan["lists"]
    load = np.bincount(lists[lists >= 0].ravel(), minlength=nlist)  # queries; members are among them
    most = max(1, nlist // GROUP_LISTS)
    cuts, start, held = [], 0, 0
    for number in range(nlist):
        if number > start and (held + load[number] > GROUP_VECTORS or number - start >= most):
            cuts.append((start, number))
            start, held = number, 0
        held += int(load[number])
    cuts.append((start, nlist))
    return cuts


def group_pairs(
    rows: PassRows, plan: dict[str, np.ndarray], span: tuple[int, int], threshold: float, stopped: Stopped
) -> PairArrays | None:
    """Exactly scored pairs (vector ids) at or above threshold found through the lists of one group
    (None: stopped before it was done). Each list asks `stopped` first, which waits while new files do."""
    ids, lists = plan["ids"], plan["lists"]
    start, end = span
    inside = (lists >= start) & (lists < end)
    wanted = np.flatnonzero(inside.any(axis=1))
    present, vectors = rows.vectors(ids[wanted])
    local = np.searchsorted(ids[wanted], present)  # rows of the present ones among `wanted`
    row_lists = lists[wanted[local]]

    def one_list(number: int) -> tuple[np.ndarray, np.ndarray]:
        if stopped():
            return np.empty(0, np.int64), np.empty(0, np.int64)
        members = np.flatnonzero(row_lists[:, 0] == number)
        queries = np.flatnonzero((row_lists == number).any(axis=1))
        return list_pairs(vectors, members, queries, threshold - MARGIN)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        found = list(pool.map(one_list, range(start, end)))
    if stopped():
        return None
    first = np.concatenate([f for f, _ in found]) if found else np.empty(0, np.int64)
    second = np.concatenate([s for _, s in found]) if found else np.empty(0, np.int64)
    unique = np.unique(first * len(present) + second)  # a pair found through two lists counts once
    first, second = unique // max(1, len(present)), unique % max(1, len(present))
    scores = exact_scores(vectors[first], vectors[second]) if len(first) else np.empty(0, np.float64)
    keep = scores >= threshold
    # Cut to each end's `limit` nearest within the group: a pair cut here has `limit` better ones for
    # both its ends, so the whole pass would cut it too.
    return nearest_pairs(present[first[keep]], present[second[keep]], scores[keep], PAIR_LIMIT)


def run_pass(rows: PassRows, key: str, threshold: float, stopped: Stopped) -> bool:
    """Do (or finish) the pass stored under `key`; True once its pairs are all stored, False if stopped."""
    state = rows.state(key)
    if state is not None and state["finished"]:
        total, added = rows.vector_count(), len(rows.vector_ids(above=int(state["high_water"])))  # type: ignore[call-overload]
        if added > max(exact_limit(), CATCH_UP_SHARE * total):
            state = None  # a range search each would cost more than the pass: a first index since, say
    if state is None or (not state["finished"] and state["plan"] is None):
        ids = rows.vector_ids()
        high_water = int(ids[-1]) if len(ids) else 0
        if len(ids) <= exact_limit():  # small: every pair compared in one go (about a second)
            present, vectors = rows.vectors(ids)
            rows.begin(key, high_water, None)
            found = library_pairs(present, vectors, threshold, stopped=stopped)
            if stopped():
                return False
            rows.finish(key, _arrays(found))
            return True
        plan = make_plan(rows, ids, stopped)
        if plan is None:
            return False
        rows.begin(key, high_water, plan)
        state = rows.state(key)
        assert state is not None
    if state["finished"]:
        return True
    plan = state["plan"]
    assert isinstance(plan, dict)
    spans = groups(plan)
    following = int(state["next"])  # type: ignore[call-overload]
    if following:
        log.info("duplicates: resuming the pass at group %d of %d", following + 1, len(spans))
    for number in range(following, len(spans)):
        found = group_pairs(rows, plan, spans[number], threshold, stopped)
        if found is None:
            return False
        if not rows.done_group(key, found, number + 1):
            return False  # another pass (a new model's) took over the rows
        if group_delay():
            time.sleep(group_delay())
        log.debug("duplicates: group %d of %d done", number + 1, len(spans))
    rows.finish(key, nearest_pairs(*rows.pairs(), PAIR_LIMIT))
    return True


def _arrays(pairs: list[tuple[int, int, float]]) -> PairArrays:
    a = np.fromiter((p[0] for p in pairs), np.int64, count=len(pairs))
    b = np.fromiter((p[1] for p in pairs), np.int64, count=len(pairs))
    return a, b, np.fromiter((p[2] for p in pairs), np.float64, count=len(pairs))
