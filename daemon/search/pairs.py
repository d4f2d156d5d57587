"""The pair join: every pair of contents at or above a cosine, exactly scored.

Candidates are found with float32 products a little below the threshold and then scored exactly: a
float64 dot product of two float16 vectors (what the catalog stores) is exact whatever the summation
order, so the daemon's tracker (one range search per new content) and the whole-library join here
score every pair to the last bit alike, and both paths list the same groups.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from ..store.ivf import nearest_centroids, train_centroids

MARGIN = 0.002  # candidates from float32 products this far below the threshold are scored exactly
PAIRS_EXACT_LIMIT = 16_384  # below this many vectors every pair is compared (~1 s here)
PAIRS_PROBES = 4  # lists each vector is compared against in the blocked pass
PAIRS_PCA_DIM = 128  # the blocking (k-means, list choice) works in this many PCA dimensions
_PAIRS_ROWS = 2048  # rows of one similarity block: 2048 x 16k float32 = 128 MB at most
_SCORE_ROWS = 16_384  # candidate pairs scored at once: 16k x 512 dims x 2 float64 copies = 134 MB
# Nearest near-duplicates each content keeps a pair with (a pair stays when it is among either end's
# nearest): a clump of n near-identical frames would otherwise give n*n/2 pairs (45M for 10k frames,
# gigabytes in the tracker). A real group is far smaller; a keeper with this many is completed by
# exact scoring when groups are built (dupes.build_groups), so the groups are the same.
PAIR_LIMIT = 64

Pair = tuple[int, int, float]  # (content a, content b, exact cosine), a < b
Blocking = tuple[np.ndarray, np.ndarray, np.ndarray]  # (mean, PCA axes, centroids): a pass's k-means lists
Stopped = Callable[[], bool]  # asked between blocks: True ends the pass early (the daemon is stopping)


def _never() -> bool:
    return False


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


def library_pairs(
    ids: np.ndarray, vectors: np.ndarray, threshold: float, stopped: Stopped = _never, limit: int = PAIR_LIMIT
) -> list[Pair]:
    """The pairs of the given contents at or above threshold, exactly scored, each among the `limit` nearest
    of one of its ends at least (some, if stopped early)."""
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float16)
    firsts, seconds = similar_pairs(vectors, threshold - MARGIN, stopped=stopped)
    kept = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    pruned = 0  # pairs left by the last cut
    # In blocks: a clump of near-identical frames gives millions of candidates, and scoring them at once
    # holds two float64 copies of a vector per candidate (9 GB for 1,500 frames). The pairs found are cut
    # to the nearest `limit` of every content whenever they have doubled since the last cut (a pair cut
    # once never comes back, as more pairs only push it further down), and once at the end.
    for start in range(0, len(firsts), _SCORE_ROWS):
        first, second = firsts[start : start + _SCORE_ROWS], seconds[start : start + _SCORE_ROWS]
        scores = exact_scores(vectors[first], vectors[second])
        keep = scores >= threshold
        a, b = ids[first][keep], ids[second][keep]
        kept = (
            np.concatenate([kept[0], np.minimum(a, b)]),
            np.concatenate([kept[1], np.maximum(a, b)]),
            np.concatenate([kept[2], scores[keep]]),
        )
        if len(kept[0]) > 2 * pruned + 4 * _SCORE_ROWS:
            kept = nearest_pairs(*kept, limit)
            pruned = len(kept[0])
    kept = nearest_pairs(*kept, limit)
    return list(zip(kept[0].tolist(), kept[1].tolist(), kept[2].tolist(), strict=True))


def nearest_pairs(
    a: np.ndarray, b: np.ndarray, scores: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs among the `limit` best of either end (best score first, then lower other id), in input order."""
    if len(a) <= limit:
        return a, b, scores
    # Each pair seen from both its ends, ranked among that end's pairs.
    mine, other = np.concatenate([a, b]), np.concatenate([b, a])
    order = np.lexsort((other, -np.concatenate([scores, scores]), mine))  # by content, then best first
    ranked = mine[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(len(a), dtype=bool)
    keep[order[rank < limit] % len(a)] = True
    return a[keep], b[keep], scores[keep]


def scored(a: np.ndarray, b: np.ndarray, va: np.ndarray, vb: np.ndarray, threshold: float) -> list[Pair]:
    """The candidate pairs (a[i], b[i]) whose exact score reaches threshold, lower id first."""
    scores = exact_scores(va, vb)
    keep = scores >= threshold
    low, high = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    return list(zip(low.tolist(), high.tolist(), scores[keep].tolist(), strict=True))


def similar_pairs(
    vectors: np.ndarray, threshold: float, probes: int = PAIRS_PROBES, stopped: Stopped = _never
) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (i < j) of unit vectors whose inner product is at least threshold.

    Small sets compare every pair. Larger ones are blocked like an IVF index: k-means lists in a PCA
    projection, each vector compared (one matrix product per list) with the members of its `probes`
    nearest lists, so a pair is found when either one's list is among the other's nearest. Near
    duplicates sit far closer than lists are wide, so this misses few of them (benchmarks/bench_dupes.py
    measures the recall) for n*probes*n/nlist products instead of n*n.
    `vectors` may be float16 (the catalog's precision, half the memory); blocks are multiplied in float32.
    Each block asks `stopped` first: the pool's queued blocks would otherwise all run before the process
    may exit (concurrent.futures joins its threads at exit), minutes at 1M.
    """
    vectors = np.asarray(vectors)
    if len(vectors) <= PAIRS_EXACT_LIMIT:
        return _pairs_exact(vectors, threshold, stopped)
    return _pairs_blocked(vectors, threshold, probes, stopped)


def _pairs_exact(vectors: np.ndarray, threshold: float, stopped: Stopped) -> tuple[np.ndarray, np.ndarray]:
    data = np.ascontiguousarray(vectors, dtype=np.float32)

    def rows_from(start: int) -> tuple[np.ndarray, np.ndarray]:
        if stopped():
            return np.empty(0, np.int64), np.empty(0, np.int64)
        block = data[start : start + _PAIRS_ROWS] @ data[start:].T
        rows, cols = np.nonzero(block >= threshold)
        keep = cols > rows  # the block's columns begin at its own first row: the upper triangle
        return rows[keep] + start, cols[keep] + start

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        found = list(pool.map(rows_from, range(0, len(data), _PAIRS_ROWS)))
    return _joined([f for f, _ in found]), _joined([s for _, s in found])


def list_count(count: int, probes: int = PAIRS_PROBES) -> int:
    """How many k-means lists block a pass over `count` vectors: balances list choice against products."""
    return int(max(16, round((2 * count * probes) ** 0.5)))


def sample_rows(count: int, nlist: int) -> np.ndarray:
    """Sorted row numbers of the vectors the blocking is trained on (the same for the same count)."""
    rng = np.random.default_rng(count)
    return np.sort(rng.choice(count, size=min(count, 40 * nlist), replace=False))


def blocking(sample: np.ndarray, nlist: int) -> Blocking:
    """(mean, PCA axes, k-means centroids in the PCA space) trained on a sample of float16 vectors.

    The covariance is summed 20,000 rows at a time: np.cov of the whole sample made float64 copies of it
    (over 1 GB at 1.45M vectors, the largest part of the pass's peak).
    """
    dim = sample.shape[1]
    mean = np.zeros(dim, np.float64)
    for start in range(0, len(sample), 20_000):
        mean += sample[start : start + 20_000].astype(np.float64).sum(axis=0)
    mean /= max(1, len(sample))
    scatter = np.zeros((dim, dim), np.float64)
    for start in range(0, len(sample), 20_000):
        part = sample[start : start + 20_000].astype(np.float64) - mean
        scatter += part.T @ part
    # Principal axes from the sample's covariance (numpy's eigh: FAISS's PCAMatrix takes seconds here).
    axes = np.linalg.eigh(scatter / max(1, len(sample) - 1))[1][:, ::-1][:, : min(PAIRS_PCA_DIM, dim)]
    axes, mean32 = np.ascontiguousarray(axes, dtype=np.float32), mean.astype(np.float32)
    projected = np.empty((len(sample), axes.shape[1]), np.float32)
    for start in range(0, len(sample), 20_000):
        projected[start : start + 20_000] = (sample[start : start + 20_000].astype(np.float32) - mean32) @ axes
    centroids = train_centroids(projected, nlist, iterations=6, seed=1, max_points_per_centroid=40)
    return mean32, axes, centroids


def assign(vectors: np.ndarray, plan: Blocking, probes: int = PAIRS_PROBES) -> np.ndarray:
    """Each vector's `probes` nearest lists, nearest first (int32), 100,000 vectors at a time."""
    mean, axes, centroids = plan
    lists = np.empty((len(vectors), probes), np.int32)
    for start in range(0, len(vectors), 100_000):
        part = (vectors[start : start + 100_000].astype(np.float32) - mean) @ axes
        lists[start : start + 100_000] = nearest_centroids(part, centroids, probes)
    return lists


def list_pairs(
    vectors: np.ndarray, members: np.ndarray, queries: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (lower first) of queries and members whose float32 product reaches threshold."""
    firsts, seconds = [], []
    if len(members):
        stored = vectors[members].astype(np.float32)
        for start in range(0, len(queries), _PAIRS_ROWS):
            rows = queries[start : start + _PAIRS_ROWS]
            hit_rows, hit_cols = np.nonzero(vectors[rows].astype(np.float32) @ stored.T >= threshold)
            first, second = rows[hit_rows], members[hit_cols]
            keep = first != second
            firsts.append(np.minimum(first[keep], second[keep]))
            seconds.append(np.maximum(first[keep], second[keep]))
    return _joined(firsts), _joined(seconds)


def _pairs_blocked(
    vectors: np.ndarray, threshold: float, probes: int, stopped: Stopped
) -> tuple[np.ndarray, np.ndarray]:
    count = len(vectors)
    nlist = list_count(count, probes)
    lists = assign(vectors, blocking(vectors[sample_rows(count, nlist)], nlist), probes).astype(np.int64)
    primary = lists[:, 0]
    member_order = np.argsort(primary, kind="stable")
    member_bounds = np.searchsorted(primary[member_order], np.arange(nlist + 1))
    probed = lists.ravel()
    query_order = np.argsort(probed, kind="stable") // probes  # row of each (row, list) pair, by list
    query_bounds = np.searchsorted(np.sort(probed), np.arange(nlist + 1))

    def one_list(number: int) -> tuple[np.ndarray, np.ndarray]:
        if stopped():
            return _joined([]), _joined([])
        members = member_order[member_bounds[number] : member_bounds[number + 1]]
        queries = query_order[query_bounds[number] : query_bounds[number + 1]]
        return list_pairs(vectors, members, queries, threshold)

    # One list per task, each product single-threaded: BLAS threads that spin-wait between small
    # products made this 3x slower on a busy 2-core machine than one thread (benchmarks/RESULTS.md).
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        found = list(pool.map(one_list, range(nlist)))
    firsts = [f for f, _ in found]
    seconds = [s for _, s in found]
    first, second = _joined(firsts), _joined(seconds)
    unique = np.unique(first * count + second)  # a pair found from both sides, or through two lists
    return unique // count, unique % count


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
