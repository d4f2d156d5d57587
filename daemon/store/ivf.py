"""The index's inverted-file part: clustering, filling and tuning an IVF structure, and probing it.

Used by index.py only (the index stays the one owner of FAISS); apart for its size. An IVF index
here is bare (never inside IndexIDMap2, which returns wrong ids after remove_ids), stores float16
vectors themselves (by_residual off: exact at the catalog's precision) and finds ids by a hash map.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np

MAX_WIDEN = 4  # a filtered search probes up to this many times the lists of an unfiltered one (index.py)
TARGET_RECALL = 0.99  # tuned on perturbed stored vectors; a margin over the promised 0.98
# The probe margin misses a tenth of that on the same queries: a text query's lists score alike, so a
# margin tuned to 0.99 on picture-like queries left combined text queries at 0.90 (RESULTS.md, section 7).
MARGIN_TARGET_RECALL = 0.999
KMEANS_ITERATIONS = 12
TUNING_QUERIES = 256
_NPROBES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# Candidate centroid-score margins: a query probes every list whose centroid scores within the margin of its best.
_MARGINS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


class Cancelled(Exception):
    """A background build was stopped because the daemon is shutting down."""


def export(index: faiss.Index, with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Copy out (ids, float32 vectors) from an exact or IVF index."""
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
                # by_residual is off, so a code is the vector itself in float16.
                codes = faiss.rev_swig_ptr(lists.get_codes(number), size * index.code_size)
                vectors[at : at + size] = codes.view(np.float16).reshape(size, index.d)
            at += size
        return ids, vectors
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    if not with_vectors:
        return ids, None
    return ids, index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.empty((0, index.d), np.float32)


def build(ids: np.ndarray, vectors: np.ndarray, cancel: threading.Event) -> tuple[faiss.IndexIVF, float]:
    """Cluster, fill and tune an IVF index with float16 storage; return it and its probe margin."""
    count, dim = vectors.shape
    rng = np.random.default_rng(count)
    nlist = max(1, min(round(4 * count**0.5), count // 39))  # FAISS wants >= 39 training points a list
    sample = vectors[rng.choice(count, size=min(count, 40 * nlist), replace=False)]
    centroids = sample[rng.choice(len(sample), size=nlist, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):  # one round at a time, so a shutdown need not wait for all
        if cancel.is_set():
            raise Cancelled
        kmeans = faiss.Kmeans(dim, nlist, niter=1, spherical=True, verbose=False, max_points_per_centroid=1 << 20)
        kmeans.train(sample, init_centroids=centroids)
        centroids = kmeans.centroids
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.by_residual = False  # float16 of the vector itself: exact for the catalog's float16 values
    index.train(sample[:nlist])  # the quantizer is ready; this only sets up the float16 codec
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets remove_ids and reconstruct find ids
    index.own_fields = True
    quantizer.this.disown()
    for start in range(0, count, 50_000):
        if cancel.is_set():
            raise Cancelled
        index.add_with_ids(vectors[start : start + 50_000], ids[start : start + 50_000])
    index.nprobe, margin = tune_probes(index, ids, vectors, rng)
    return index, margin


def tune_probes(
    index: faiss.IndexIVF, ids: np.ndarray, vectors: np.ndarray, rng: np.random.Generator
) -> tuple[int, float]:
    """Smallest nprobe whose recall@10 reaches TARGET_RECALL, smallest margin that reaches MARGIN_TARGET_RECALL.

    The queries are stored vectors moved off the data by noise (cosine ~0.8 to where they started), so
    a query's own vector does not make recall look better than it is. The margin also follows a query
    whose neighbours are spread over many lists, as a text query's are.
    """
    count, dim = vectors.shape
    picks = vectors[rng.choice(count, size=min(count, TUNING_QUERIES), replace=False)]
    noise = rng.standard_normal(picks.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = picks + 0.75 * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = min(10, count)
    _, truth = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)  # no copy of the vectors
    truth_ids = ids[truth]
    nprobe = index.nlist
    for candidate in [n for n in _NPROBES if n < index.nlist] + [index.nlist]:
        _, found = index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=candidate))
        hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth_ids, strict=True))
        if hits / truth_ids.size >= TARGET_RECALL:
            nprobe = candidate
            break
    # A true neighbour is found once its list is probed: rank the lists per query by centroid score.
    scores, order = index.quantizer.search(queries, index.nlist)
    rank = np.empty_like(order)
    rank[np.arange(len(order))[:, None], order] = np.arange(index.nlist)
    _, lists = index.quantizer.search(vectors[truth.ravel()], 1)
    needed = rank[np.repeat(np.arange(len(order)), k), lists[:, 0]].reshape(truth.shape)
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
    fetch: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Probe the tuned nprobe lists, or more where many centroids score alike; return scores, ids, lists.

    A text query sits far from every picture (CLIP's modality gap): its centroid scores are flat,
    and its top 10 are spread over far more lists than an image query's (benchmarks/RESULTS.md,
    section 7). Probing every list within the tuned margin of the best adapts to that per query, up
    to a quarter of the lists, so a query that resembles nothing cannot turn into a full scan.
    Both are tuned for the top 10: a longer list probes proportionally more, and so does a filter.
    `fetch`: return that many of the best in the lists probed for the top k (a post-filter's candidates).
    """
    rounds = -(-k // 10) * widen
    k = fetch or k
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
    scores, ids, _ = probe(index, query, k, None, MAX_WIDEN, margin, fetch)
    return scores, ids


def bitmap(allowed: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """A FAISS selector over vector ids, with the bit array it reads (kept alive by the caller)."""
    top = int(allowed.max()) + 1 if len(allowed) else 1
    mask = np.zeros(top, dtype=bool)
    mask[allowed] = True
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits


# -- clustering alone, for the pair join's blocking (search/pairs.py, through index.py) --------------


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
    kmeans.train(np.ascontiguousarray(points, dtype=np.float32))
    return kmeans.centroids


def nearest_centroids(points: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each point's k nearest centroids (L2), nearest first."""
    return faiss.knn(np.ascontiguousarray(points, dtype=np.float32), centroids, k)[1]
