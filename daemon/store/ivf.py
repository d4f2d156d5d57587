"""The index's inverted-file part: clustering, filling and tuning an IVF structure, and probing it.

Used by index.py only (the index stays the one owner of FAISS); apart for its size. An IVF index
here is bare (never inside IndexIDMap2, which returns wrong ids after remove_ids), stores the vectors
themselves in 8 bits a dimension (by_residual off) and finds ids by a hash map; a search takes a few
times more candidates than it returns and re-scores them from the catalog's float16 vectors.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator

import faiss
import numpy as np

MAX_WIDEN = 4  # a filtered search probes up to this many times the lists of an unfiltered one (index.py)
TARGET_RECALL = 0.99  # tuned on perturbed stored vectors; a margin over the promised 0.98
# The probe margin misses a tenth of that on the same queries: a text query's lists score alike, so a
# margin tuned to 0.99 on picture-like queries left combined text queries at 0.90 (RESULTS.md, section 7).
MARGIN_TARGET_RECALL = 0.999
KMEANS_ITERATIONS = 12
TUNING_QUERIES = 256
SAMPLE_PER_LIST = 40  # k-means trains on at most this many vectors a list (FAISS wants >= 39)
STORAGE = faiss.ScalarQuantizer.QT_8bit  # 1 byte a dimension: half of float16; the top candidates are re-scored
RERANK = 4  # candidates per wanted result, re-scored from the catalog's float16 vectors ...
RERANK_MIN = 40  # ... and never fewer than this many
_NPROBES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# Candidate centroid-score margins: a query probes every list whose centroid scores within the margin of its best.
_MARGINS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


# One k-means at a time in the process: the index build's and the duplicates pass's each hold their
# sample and distance buffers, and two at once were seen at 8 GB (issue 21).
_CLUSTERING = threading.Lock()


class Cancelled(Exception):
    """A background build was stopped because the daemon is shutting down."""


@contextlib.contextmanager
def clustering(cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold the process's one k-means turn, giving up (Cancelled) if `cancel` is set while waiting."""
    while not _CLUSTERING.acquire(timeout=0.2):
        if cancel is not None and cancel.is_set():
            raise Cancelled
    try:
        yield
    finally:
        _CLUSTERING.release()


def export(index: faiss.Index, with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Copy out (ids, float32 vectors) from an exact or IVF index (an IVF's as its codes decode)."""
    if isinstance(index, faiss.IndexIVF):
        lists = index.invlists
        sizes = [lists.list_size(number) for number in range(index.nlist)]
        ids = np.empty(sum(sizes), np.int64)
        vectors = np.empty((len(ids), index.d), np.float32) if with_vectors else None
        at = 0
        for number, size in enumerate(sizes):
            if not size:
                continue
            ids[at : at + size] = faiss.rev_swig_ptr(lists.get_ids(number), size)
            if vectors is not None:
                # by_residual is off, so a code is the vector itself, quantized.
                codes = faiss.rev_swig_ptr(lists.get_codes(number), size * index.code_size)
                vectors[at : at + size] = index.sq.decode(codes.reshape(size, index.code_size))
            at += size
        return ids, vectors
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    if not with_vectors:
        return ids, None
    return ids, index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.empty((0, index.d), np.float32)


def list_count(count: int) -> int:
    """Lists for an IVF over count vectors (FAISS wants >= 39 training points a list)."""
    return max(1, min(round(4 * count**0.5), count // 39))


def pays(index: faiss.IndexIVF) -> bool:
    """Whether the tuned IVF saves work over exact search: it probes at most half its lists. Vectors that do
    not cluster (never seen with CLIP) make it scan most of them; under 8 lists only a test-sized exact_limit
    gets here, and those keep their IVF."""
    return index.nlist < 8 or index.nprobe <= index.nlist // 2


def sample_size(count: int) -> int:
    """Vectors the clustering trains on: a sample, not the library (k-means costs memory and time per point)."""
    return min(count, SAMPLE_PER_LIST * list_count(count))


def build(
    count: int,
    sample: Callable[[], np.ndarray],
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    cancel: threading.Event,
) -> tuple[faiss.IndexIVF, float]:
    """Cluster a sample, then fill an IVF with 8-bit storage from blocks of (ids, vectors), tune its probes.

    Only the sample and one block are held beside the index: at 1M vectors the library as float32
    would be 2 GB (the 9.4 GB build of 1.45M vectors held it three times). The exact top 10 of the
    tuning queries are followed block by block as the vectors go in, so no copy of them is kept either.
    """
    rng = np.random.default_rng(count)
    points = sample()  # the only reference: dropped once the lists are clustered and the codec trained
    dim = points.shape[1]
    nlist = max(1, min(list_count(count), len(points) // 39))
    centroids = points[rng.choice(len(points), size=nlist, replace=False)].copy()
    with clustering(cancel):
        for _ in range(KMEANS_ITERATIONS):  # one round at a time, so a shutdown need not wait for all
            if cancel.is_set():
                raise Cancelled
            kmeans = faiss.Kmeans(dim, nlist, niter=1, spherical=True, verbose=False, max_points_per_centroid=1 << 20)
            kmeans.train(points, init_centroids=centroids)
            centroids = kmeans.centroids
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, STORAGE, faiss.METRIC_INNER_PRODUCT)
    index.by_residual = False  # a code is the vector itself, quantized: the exact score comes from the catalog
    index.train(points)  # the quantizer is ready (nlist centroids): this only trains the 8-bit codec's ranges
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets remove_ids and reconstruct find ids
    index.own_fields = True
    quantizer.this.disown()
    queries = _tuning_queries(points, rng)
    del points
    k = min(10, count)
    truth = _TopK(len(queries), k)
    for ids, vectors in blocks:
        if cancel.is_set():
            raise Cancelled
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        truth.update(queries @ vectors.T, ids)
    index.nprobe, margin = tune_probes(index, queries, truth.ids)
    return index, margin


def sample_from(ids: np.ndarray, read: Callable[[np.ndarray], np.ndarray]) -> Callable[[], np.ndarray]:
    """A deferred draw of sample_size(len(ids)) of these ids' vectors, read 20,000 at a time."""
    picks = np.sort(np.random.default_rng(len(ids)).choice(ids, size=sample_size(len(ids)), replace=False))

    def draw() -> np.ndarray:
        out: np.ndarray | None = None  # filled in place: a vstack of the parts would hold the sample twice
        at = 0
        for start in range(0, len(picks), 20_000):
            part = read(picks[start : start + 20_000])
            if out is None:
                out = np.empty((len(picks), part.shape[1]), dtype=np.float32)
            out[at : at + len(part)] = part
            at += len(part)
        return out[:at] if out is not None else np.empty((0, 0), dtype=np.float32)

    return draw


def candidates(k: int) -> int:
    """How many an IVF search takes to re-score exactly for a top k: 8-bit scores misorder close ones."""
    return max(RERANK_MIN, RERANK * k)


class _TopK:
    """The running exact top k (ids) of a few queries over vectors seen a block at a time."""

    def __init__(self, queries: int, k: int) -> None:
        self.k = k
        self.scores = np.full((queries, k), -np.inf, dtype=np.float32)
        self.ids = np.full((queries, k), -1, dtype=np.int64)

    def update(self, scores: np.ndarray, ids: np.ndarray) -> None:
        both = np.concatenate([self.scores, scores], axis=1)
        both_ids = np.concatenate([self.ids, np.broadcast_to(np.asarray(ids, dtype=np.int64), scores.shape)], axis=1)
        keep = np.argpartition(-both, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(both, keep, axis=1)
        self.ids = np.take_along_axis(both_ids, keep, axis=1)


def _tuning_queries(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stored vectors moved off the data by noise (cosine ~0.8 to where they started), so a query's own
    vector does not make recall look better than it is."""
    picks = points[rng.choice(len(points), size=min(len(points), TUNING_QUERIES), replace=False)]
    noise = rng.standard_normal(picks.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = picks + 0.75 * noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def tune_probes(index: faiss.IndexIVF, queries: np.ndarray, truth_ids: np.ndarray) -> tuple[int, float]:
    """Smallest nprobe whose candidates hold TARGET_RECALL of the true top 10, smallest margin that reaches
    MARGIN_TARGET_RECALL.

    A true neighbour among the candidates is found: they are re-scored exactly. The margin also
    follows a query whose neighbours are spread over many lists, as a text query's are.
    """
    k = truth_ids.shape[1]
    fetch = min(int(index.ntotal), candidates(k))
    nprobe = index.nlist
    for candidate in [n for n in _NPROBES if n < index.nlist] + [index.nlist]:
        _, found = index.search(queries, fetch, params=faiss.SearchParametersIVF(nprobe=candidate))
        hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth_ids, strict=True))
        if hits / truth_ids.size >= TARGET_RECALL:
            nprobe = candidate
            break
    # A true neighbour is found once its list is probed: rank the lists per query by centroid score.
    scores, order = index.quantizer.search(queries, index.nlist)
    rank = np.empty_like(order)
    rank[np.arange(len(order))[:, None], order] = np.arange(index.nlist)
    lists = np.fromiter((faiss.lo_listno(index.direct_map.get(int(i))) for i in truth_ids.ravel()), np.int64)
    needed = rank[np.repeat(np.arange(len(order)), k), lists].reshape(truth_ids.shape)
    for margin in _MARGINS:
        probes = (scores >= scores[:, :1] - margin).sum(axis=1, keepdims=True)
        if (needed < probes).mean() >= MARGIN_TARGET_RECALL:
            return nprobe, margin
    return nprobe, _MARGINS[-1]


def probe(
    index: faiss.IndexIVF,
    query: np.ndarray,
    k: int,
    sel: faiss.IDSelector | None,
    widen: int,
    margin: float | None,
    depth: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Probe the tuned nprobe lists, or more where many centroids score alike; return scores, ids, lists.

    A text query sits far from every picture (CLIP's modality gap): its centroid scores are flat,
    and its top 10 are spread over far more lists than an image query's (benchmarks/RESULTS.md,
    section 7). Probing every list within the tuned margin of the best adapts to that per query, up
    to a quarter of the lists, so a query that resembles nothing cannot turn into a full scan.
    Both are tuned for the top 10: a longer list probes proportionally more, and so does a filter.
    `depth`: probe the lists for the top `depth` and return the k best in them (re-scoring candidates, or
    a post-filter's).
    """
    rounds = -(-(depth or k) // 10) * widen  # lists for the top `depth` wanted; k candidates come back
    nprobe = int(index.nprobe)
    if margin is not None:
        reach = min(index.nlist, max(nprobe, index.nlist // 4))
        centroid_scores, lists = index.quantizer.search(query, reach)
        nprobe = max(nprobe, int((centroid_scores[0] >= centroid_scores[0, 0] - margin).sum()))
        if nprobe * rounds <= reach:  # the coarse pass is done: search those lists only
            n = nprobe * rounds
            scores, ids = np.empty((1, k), np.float32), np.empty((1, k), np.int64)
            assign = np.ascontiguousarray(lists[:, :n])
            distances = np.ascontiguousarray(centroid_scores[:, :n])
            index.search_preassigned_c(
                1,
                faiss.swig_ptr(query),
                k,
                faiss.swig_ptr(assign),
                faiss.swig_ptr(distances),
                faiss.swig_ptr(scores),
                faiss.swig_ptr(ids),
                False,
                faiss.SearchParametersIVF(nprobe=n, sel=sel),
            )
            return scores, ids, n
    n = min(index.nlist, nprobe * rounds)
    scores, ids = index.search(query, k, params=faiss.SearchParametersIVF(nprobe=n, sel=sel))
    return scores, ids, n


def around(
    index: faiss.Index, query: np.ndarray, k: int, fetch: int, margin: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """The fetch best vectors of the lists a filtered top-k search probes at its widest (exact: of all):
    a post-filter that finds k allowed among them has the filtered search's answer, or a closer one."""
    if not isinstance(index, faiss.IndexIVF):
        return index.search(query, fetch)
    scores, ids, _ = probe(index, query, fetch, None, MAX_WIDEN, margin, k)  # lists for the top k, fetch back
    return scores, ids


BITMAPS = 4  # selectors kept for the id arrays last searched (a searcher's cached selections)
_bitmaps: list[tuple[np.ndarray, tuple[faiss.IDSelector, np.ndarray]]] = []  # newest last
_BITMAPS_LOCK = threading.Lock()


def bitmap(allowed: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """A FAISS selector over vector ids, with the bit array it reads (kept alive by the caller).

    Kept for the same array object (a searcher's cached selection, never changed in place): building
    it reads every id, a few milliseconds a query for a quarter of 1M (benchmarks/RESULTS.md, issue 26).
    """
    with _BITMAPS_LOCK:
        for i, (ids, selector) in enumerate(_bitmaps):
            if ids is allowed:  # the object itself, held here, so its id cannot pass to another array
                _bitmaps.append(_bitmaps.pop(i))
                return selector
    top = int(allowed.max()) + 1 if len(allowed) else 1
    mask = np.zeros(top, dtype=bool)
    mask[allowed] = True
    bits = np.packbits(mask, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits
    with _BITMAPS_LOCK:
        _bitmaps.append((allowed, selector))
        del _bitmaps[: max(0, len(_bitmaps) - BITMAPS)]
    return selector


# -- clustering alone, for the pair join's blocking (search/pairs.py) ---------------------------------


def train_centroids(
    points: np.ndarray, count: int, iterations: int, seed: int, max_points_per_centroid: int
) -> np.ndarray:
    """k-means centroids (L2) of float32 points."""
    kmeans = faiss.Kmeans(
        points.shape[1],
        count,
        niter=iterations,
        max_points_per_centroid=max_points_per_centroid,
        seed=seed,
        verbose=False,
    )
    with clustering():
        kmeans.train(np.ascontiguousarray(points, dtype=np.float32))
    return kmeans.centroids


def nearest_centroids(points: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each point's k nearest centroids (L2), nearest first."""
    return faiss.knn(np.ascontiguousarray(points, dtype=np.float32), centroids, k)[1]


def present(lookup: Callable[[np.ndarray], np.ndarray], ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) parts of the ids the lookup still finds: it raises KeyError for a gone one, so halve."""
    try:
        return [(ids, np.asarray(lookup(ids), dtype=np.float32))]
    except KeyError:
        if len(ids) == 1:
            return []
    half = len(ids) // 2
    return present(lookup, ids[:half]) + present(lookup, ids[half:])
