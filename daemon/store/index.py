"""The vector index: the only FAISS code, with its inverted-file part in ivf.py.

The index is a cache of the catalog's vectors. Its file carries a header (generation, count, dim,
checksum, catalog id) so a missing, truncated, corrupt or foreign file is detected on load and rebuilt
from the catalog instead of being served, and an older save of the same catalog (a crash since) is
brought up to date from it. Writes are atomic: temp file, fsync, rename, fsync the folder.

Small libraries are searched exactly (IndexFlatIP). Past `exact_limit` contents an inverted-file index
with float16 storage (the catalog's own precision) takes over: at 1M vectors exact search takes ~200 ms
a query here and IVF ~5 ms at recall@10 >= 0.98 (benchmarks/RESULTS.md). The daemon builds it in a
background thread from a copy of the live vectors and swaps it in under the lock; searches wait only
while the vectors are copied out and while the changes made meanwhile are merged in.
IVF is used bare, never inside IndexIDMap2: that pairing returns wrong ids after remove_ids.
A daemon that finds no usable index file over a large library answers at once all the same: its index
is built from the catalog on a thread (minutes at 1M) while searches scan the catalog's vectors exactly,
a block at a time, and the changes made meanwhile are merged in when the built index is swapped in.
A query probes the tuned nprobe lists, and more when many centroids score within a tuned margin of its
best one, as for text queries, which sit apart from every picture in CLIP space.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from ..errors import ImgdError
from . import indexfile, ivf
from .catalog import Catalog, ThreadReaders
from .indexfile import IndexFileError

log = logging.getLogger(__name__)

EXACT_LIMIT = 40_000  # exact search passes 10 ms p50 between 25k and 50k vectors on 2 cores
RETRAIN_GROWTH = 4  # re-cluster once the library has grown this much since the last training
CODE_SLACK = 0.02  # an 8-bit code's score errs by less (range search takes this margin below its threshold)
EXACT_SELECTION = 4096  # IVF searches every list for filters selecting at most this many contents
BUILD_BLOCK = 20_000  # vectors the start-up build reads from the catalog at a time
SCAN_BLOCK = 20_000  # vectors a search reads at a time while it scans the catalog (40 MB as float32 at 512)


@dataclass
class StartBuild:
    """The index being built from the catalog at start (no usable file): searches scan the catalog meanwhile.

    The live index holds only what is added meanwhile; `removed` what is removed meanwhile; `count` the
    catalog's vectors (as a search sizes its answer); `step`/`filled`/`total` the progress, for status.
    """

    total: int
    count: int
    step: str = "waiting"
    filled: int = 0
    began: float = field(default_factory=time.monotonic)
    removed: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class IndexHeader:
    generation: int
    count: int
    dim: int
    sha256: str


class IndexListener(Protocol):
    """Something that follows the index's contents as they change."""

    def on_added(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def on_removed(self, ids: list[int]) -> None: ...


class VectorIndex:
    """Inner-product search over L2-normalised vectors, keyed by catalog vector id (not content id)."""

    def __init__(self, dim: int, raw: faiss.Index | None = None) -> None:
        self.dim = dim
        self._index = raw if raw is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lock = threading.RLock()
        self.generation = 0  # catalog generation this index reflects
        self.dirty = False  # changed since the last save
        self.exact_limit = EXACT_LIMIT
        self.trained_on = 0  # contents when the IVF lists were clustered; 0 for exact search
        self.probe_margin: float | None = None  # IVF: also probe lists scoring within this of the best one
        self.background = False  # the daemon rebuilds in a thread; one-shot commands rebuild before saving
        self._builder: threading.Thread | None = None
        self._cancel = threading.Event()
        self.last_build_error: str | None = None
        self._declined_at = 0  # size at which IVF was tried and gave no gain; tried again at twice that
        self._closed = False
        self.catalog_id: str | None = None  # the catalog these vectors come from (ids restart in another)
        self.listeners: list[IndexListener] = []  # told of every add and removal (the daemon's duplicate tracker)
        # The exact (float16) vectors of vector ids, for an IVF's 8-bit codes: the catalog's, set by its owner.
        self.exact_vectors: Callable[[np.ndarray], np.ndarray] | None = None
        self.start_build: StartBuild | None = None  # built from the catalog on a thread: searches scan it
        self.readers: ThreadReaders | None = None  # each thread's own catalog connection, for that scan

    def __len__(self) -> int:
        start = self.start_build
        return start.count if start is not None else int(self._index.ntotal)

    @property
    def scanning(self) -> bool:
        """Searches scan the catalog: the index is being built from it (no usable file at start)."""
        return self.start_build is not None

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "exact"

    @property
    def nprobe(self) -> int | None:
        index = self._index  # read once: a swap may replace it between two reads
        return int(index.nprobe) if isinstance(index, faiss.IndexIVF) else None

    def add(self, ids: np.ndarray, vectors: np.ndarray, generation: int | None = None) -> None:
        if len(ids) == 0:
            return
        # At the catalog's float16 precision, so a rebuilt index answers exactly like the live one.
        vectors = np.asarray(vectors).astype(np.float16).astype(np.float32).reshape(-1, self.dim)
        with self._lock:
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
            self._touch(generation)
            if self.start_build is not None:
                self.start_build.count += len(ids)
        for listener in self.listeners:
            listener.on_added(np.asarray(ids, dtype=np.int64), vectors)
        if self.background:
            self.rebuild_if_due()

    def remove(self, ids: list[int] | np.ndarray, generation: int | None = None) -> int:
        """Remove ids in one call: FAISS scans every stored id per call, so callers batch removals."""
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))
            self._touch(generation)
            start = self.start_build
            if start is not None:  # most are in the catalog's vectors being built into the new index
                start.removed.update(np.asarray(ids, dtype=np.int64).tolist())
                start.count = max(0, start.count - len(ids))
        for listener in self.listeners:
            listener.on_removed(np.asarray(ids, dtype=np.int64).tolist())
        return removed

    def _touch(self, generation: int | None) -> None:
        self.dirty = True
        if generation is not None:
            self.generation = generation

    def search(
        self,
        query: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        fetch: int = 0,
        lookup: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (vector id, cosine) pairs, best first; with `allowed`, only among those vector ids.

        IVF takes ivf.candidates(k) by its 8-bit scores and re-scores them from `lookup` (the catalog's
        float16 vectors by id; else exact_vectors), so its scores are the exact search's.

        A filter is applied inside the search through a FAISS ID selector (a bitmap), never to a top k
        found without it, so if k allowed vectors exist, k come back. IVF probes more lists under a
        filter, and every list (an exact pass that skips the others' vectors) for a narrow one. `fetch`:
        the fetch best of the lists a filtered top k probes at its widest (a post-filter's candidates).
        """
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        if self.start_build is not None and self.readers is not None:
            return self._scan_search(query[0], fetch or k, allowed)
        faiss.omp_set_num_threads(1)  # this thread only: a second thread slowed every one-query search
        selector = ivf.bitmap(allowed) if allowed is not None else None
        with self._lock:
            index = self._index
            k = min(k, int(index.ntotal) if allowed is None else len(allowed))
            if k <= 0:
                return []
            sel = selector[0] if selector is not None else None
            if fetch:
                wanted = min(fetch, int(index.ntotal))
                scores, ids = ivf.around(index, query, k, wanted, self.probe_margin)
                if not isinstance(index, faiss.IndexIVF):
                    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            elif isinstance(index, faiss.IndexIVF):
                wanted, k = k, min(ivf.candidates(k), int(index.ntotal) if allowed is None else len(allowed))
                # A filter letting a share s through puts its top k near the unfiltered top k/s: probe up to
                # 4x more lists for it (measured: recall@10 >= 0.99 at 5% of 1M), none more when s is ~1;
                # a narrow filter searches every list (an exact pass that skips the others' vectors).
                widen = 1 if allowed is None else min(4, max(1, round(int(index.ntotal) / max(1, len(allowed)))))
                if allowed is not None and len(allowed) <= EXACT_SELECTION:
                    every = faiss.SearchParametersIVF(nprobe=index.nlist, sel=sel)
                    scores, ids = index.search(query, k, params=every)
                else:
                    scores, ids, nprobe = ivf.probe(index, query, k, sel, widen, self.probe_margin, wanted)
                    # More lists if the probed ones held fewer than k allowed vectors (a short answer would
                    # read as "nothing more in the library").
                    while int((ids[0] >= 0).sum()) < wanted and nprobe < index.nlist:
                        nprobe = min(index.nlist, nprobe * 4)
                        params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
                        scores, ids = index.search(query, k, params=params)
            else:
                params = faiss.SearchParameters(sel=sel) if sel is not None else None
                scores, ids = index.search(query, k, params=params)
                return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        found, vectors = self._exact(ids[0][ids[0] >= 0], lookup)
        scores = vectors @ query[0]
        best = np.lexsort((found, -scores))[:wanted]  # ties by id, as the exact index orders them
        return [(int(found[i]), float(scores[i])) for i in best]

    def _scan(self) -> Iterator[tuple[np.ndarray, faiss.IndexScalarQuantizer]]:
        """The catalog's vectors a block at a time, through this thread's own connection, as one committed state:
        (their ids, a float16 FAISS index over them, whose ids are positions in the block). Stopped (an
        ImgdError) once the daemon is stopping. FAISS scores the stored float16 as they are: 0.2 s a pass at 1M,
        where numpy's cast to float32 took 2 s."""
        catalog = self.readers.get()  # type: ignore[union-attr]
        block = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        faiss.omp_set_num_threads(1)  # this thread only, as search does
        with catalog.snapshot():
            for ids, vectors in catalog.iter_stored_vectors(SCAN_BLOCK):
                if self._closed:
                    raise ImgdError("the daemon is stopping; search again once it has started.")
                block.reset()
                faiss.copy_array_to_vector(vectors.view(np.uint8).ravel(), block.codes)
                block.ntotal = len(ids)
                yield ids, block

    def _scan_search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """The exact top k of the catalog's vectors (among `allowed`), scanned in blocks with a running top k:
        the answer the exact index gives, while the index is being built."""
        best_ids, best_scores = np.empty(0, np.int64), np.empty(0, np.float32)
        if allowed is not None:
            if not len(allowed):
                return []
            allowed = np.sort(allowed)  # once, so each block looks its ids up by bisection
        for ids, block in self._scan():
            params, count, bits = None, len(ids), None
            if allowed is not None:
                keep = allowed[np.searchsorted(allowed, ids).clip(max=len(allowed) - 1)] == ids
                count = int(keep.sum())
                if not count:
                    continue
                bits = np.packbits(keep, bitorder="little")  # read by the selector during the search
                params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)))
            scores, rows = block.search(query[None, :], min(k, count), params=params)
            found = rows[0] >= 0
            best_ids = np.concatenate([best_ids, ids[rows[0][found]]])
            best_scores = np.concatenate([best_scores, scores[0][found]])
            if len(best_ids) > k:
                order = np.lexsort((best_ids, -best_scores))[:k]  # ties by id, as the exact index orders them
                best_ids, best_scores = best_ids[order], best_scores[order]
        order = np.lexsort((best_ids, -best_scores))[:k]
        return [(int(best_ids[i]), float(best_scores[i])) for i in order]

    def _scan_range(self, queries: np.ndarray, threshold: float, limit: int) -> list[list[tuple[int, float]]]:
        """range_search over the catalog's vectors scanned in blocks, at most `limit` kept per query."""
        found: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64), np.empty(0, np.float32))] * len(queries)
        for ids, block in self._scan():
            lims, scores, rows = block.range_search(queries, threshold)
            for number in range(len(queries)):
                part = slice(int(lims[number]), int(lims[number + 1]))
                if part.start < part.stop:
                    have_ids = np.concatenate([found[number][0], ids[rows[part]]])
                    have_scores = np.concatenate([found[number][1], scores[part]])
                    best = np.lexsort((have_ids, -have_scores))[:limit]
                    found[number] = (have_ids[best], have_scores[best])
        return [list(zip(ids.tolist(), scores.tolist(), strict=True)) for ids, scores in found]

    def _exact(
        self, ids: np.ndarray, lookup: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their exact float32 vectors): from the catalog where one is given, else the codes.

        An id removed from the catalog since the index answered drops out (found by halving the lookup).
        """
        lookup = lookup or self.exact_vectors
        ids = np.asarray(ids, dtype=np.int64)
        if lookup is None or not len(ids):
            return self.reconstruct_many(ids, codes=True)
        parts = ivf.present(lookup, ids)
        if not parts:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        vectors = np.vstack([v for _, v in parts]).astype(np.float32, copy=False).reshape(-1, self.dim)
        return np.concatenate([i for i, _ in parts]), vectors

    def range_search(self, queries: np.ndarray, threshold: float, limit: int = 1000) -> list[list[tuple[int, float]]]:
        """For each query, the stored (id, cosine) pairs at or above threshold, best first, at most limit."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.start_build is not None and self.readers is not None:
            return self._scan_range(queries, threshold, limit) if len(queries) else []
        with self._lock:
            index = self._index
            if index.ntotal == 0 or len(queries) == 0:
                return [[] for _ in range(len(queries))]
            compressed = isinstance(index, faiss.IndexIVF)
            if compressed:
                # Near duplicates lie much closer than a top-10 neighbour: the tuned nprobe reaches them.
                # 8-bit scores err by up to ~0.01: take a margin below, then keep what scores exactly.
                lims, scores, ids = index.range_search(
                    queries, threshold - CODE_SLACK, params=faiss.SearchParametersIVF(nprobe=index.nprobe)
                )
            else:
                lims, scores, ids = index.range_search(queries, threshold)
        if compressed and len(ids):
            present, vectors = self._exact(np.unique(ids))
            rows = np.searchsorted(present, ids).clip(max=len(present) - 1) if len(present) else np.zeros_like(ids)
            known = present[rows] == ids if len(present) else np.zeros(len(ids), dtype=bool)
            exact = np.einsum("ij,ij->i", vectors[rows], np.repeat(queries, np.diff(lims.astype(np.int64)), axis=0))
            scores = np.where(known & (exact >= threshold), exact, -np.inf).astype(np.float32)
        found = []
        for number in range(len(queries)):
            part = slice(int(lims[number]), int(lims[number + 1]))
            if compressed:  # only those that score the threshold exactly
                part = np.arange(part.start, part.stop)[scores[part] > -np.inf]
            # numpy, not Python's sort of (id, score) tuples: a crowded neighbourhood holds thousands.
            best = np.argsort(-scores[part], kind="stable")[:limit]
            found.append(list(zip(ids[part][best].tolist(), scores[part][best].tolist(), strict=True)))
        return found

    def reconstruct_many(self, vector_ids: np.ndarray, codes: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of those ids the index holds, in one call: (ids found, vectors); an IVF's
        from exact_vectors where set (its codes are 8-bit; `codes` asks for them anyway)."""
        vector_ids = np.ascontiguousarray(vector_ids, dtype=np.int64)
        if not codes and self.exact_vectors is not None and (self.kind == "ivf" or self.start_build is not None):
            return self._exact(vector_ids)
        with self._lock:
            try:
                return vector_ids, self._index.reconstruct_batch(vector_ids)
            except RuntimeError:  # some were removed meanwhile: look them up one by one
                found = []
                for vector_id in vector_ids.tolist():
                    with contextlib.suppress(RuntimeError):
                        found.append((vector_id, self._index.reconstruct(vector_id)))
        if not found:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        return np.asarray([i for i, _ in found], dtype=np.int64), np.vstack([v for _, v in found])

    def ids(self) -> np.ndarray:
        with self._lock:
            return ivf.export(self._index, with_vectors=False)[0]

    def reconstruct(self, vector_id: int) -> np.ndarray:
        with self._lock:
            return self._index.reconstruct(int(vector_id))

    def describe(self) -> dict[str, object]:
        """For `imgd status`."""
        builder = self._builder
        start = self.start_build
        return {
            "kind": "approximate" if self.kind == "ivf" else "exact",
            "vectors": len(self),
            "nprobe": self.nprobe,
            "building": builder is not None and builder.is_alive(),
            "build_error": self.last_build_error,
            # Searches scan the catalog while its index is built (no usable file at start): how far it is.
            **({"scan": {"step": start.step, "filled": start.filled, "total": start.total}} if start else {}),
        }

    # -- choosing and rebuilding the structure -----------------------------------------------

    def wanted_kind(self) -> str:
        """Exact below the limit (with slack, so a library near it does not flip back and forth), IVF above."""
        count = len(self)
        if self.kind == "ivf":
            return "exact" if count < self.exact_limit // 2 else "ivf"
        return "ivf" if count >= self.exact_limit else "exact"

    def rebuild_due(self) -> bool:
        if self.wanted_kind() != self.kind:
            return self.kind == "ivf" or len(self) >= 2 * self._declined_at
        return self.kind == "ivf" and len(self) >= RETRAIN_GROWTH * max(self.trained_on, 1)

    def rebuild_if_due(self) -> None:
        """Switch structure or re-cluster when the size calls for it: in a thread for the daemon, else now."""
        if self._closed:
            return
        if self.start_build is not None:
            self._start_building()
            return
        if not self.rebuild_due():
            return
        if not self.background:
            self._rebuild()
            return
        with self._lock:
            if self._builder is not None and self._builder.is_alive():
                return
            self._cancel.clear()
            self._builder = threading.Thread(target=self._rebuild_logged, name="imgd-index-build", daemon=True)
            self._builder.start()

    def _start_building(self) -> None:
        """Build the index from the catalog on a thread, once: a build that failed leaves searches scanning."""
        with self._lock:
            if self._builder is not None or self.last_build_error is not None:
                return
            self._cancel.clear()
            self.start_build.step = "reading"  # type: ignore[union-attr]
            self._builder = threading.Thread(target=self._build_started, name="imgd-index-build", daemon=True)
            self._builder.start()

    def _build_started(self) -> None:
        try:
            self._build_from_catalog()
        except ivf.Cancelled:
            pass
        except Exception as exc:  # noqa: BLE001 - searches go on scanning the catalog, exactly
            self.last_build_error = f"{type(exc).__name__}: {exc}"
            log.exception("building the search index failed; searches go on scanning the catalog")
        finally:
            self.readers.close_mine()  # type: ignore[union-attr]

    def _build_from_catalog(self) -> None:
        """The start-up build: the structure for the catalog's size from its vectors (this thread's own
        connection, one committed state throughout), then swapped in with the changes made meanwhile."""
        assert self.readers is not None
        catalog = self.readers.get()
        with catalog.snapshot():  # what is committed from here on comes through add() and remove()
            fresh, kind, margin, went_in = self._build_from(catalog)
        self._swap_built(fresh, kind, margin, went_in)

    def _build_from(self, catalog: Catalog) -> tuple[faiss.Index, str, float | None, np.ndarray]:
        """(the index, its kind, its probe margin, the ids that went in) from the catalog's vectors."""
        start = self.start_build
        assert start is not None
        ids = catalog.vector_ids()
        built: list[np.ndarray] = []  # the ids that went in: the catalog's as each block was read

        def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            start.step, start.filled = "filling", 0
            built.clear()
            delay = float(os.environ.get("IMGD_INDEX_BUILD_DELAY") or 0)  # a test's slow build, to act midway
            for block_ids, vectors in catalog.iter_vectors(BUILD_BLOCK):
                if self._cancel.wait(delay) if delay else self._cancel.is_set():
                    raise ivf.Cancelled
                yield block_ids, vectors
                built.append(block_ids)
                start.filled += len(block_ids)
            start.step = "tuning"

        kind, margin = ("ivf" if len(ids) >= self.exact_limit else "exact"), None
        if kind == "ivf":
            start.step = "clustering"
            sample = ivf.sample_from(ids, catalog.vectors_by_id)
            fresh, margin = ivf.build(len(ids), sample, blocks(), self._cancel)
            if self._declines(fresh, len(ids)):
                kind = "exact"
                del fresh
        if kind == "exact":
            fresh = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            for block_ids, vectors in blocks():
                fresh.add_with_ids(vectors, block_ids)
        return fresh, kind, margin, np.concatenate(built) if built else np.empty(0, np.int64)

    def _swap_built(self, fresh: faiss.Index, kind: str, margin: float | None, went_in: np.ndarray) -> None:
        """Serve the built index, with what was added and removed while it was built (since its snapshot)."""
        start = self.start_build
        assert start is not None
        with self._lock:
            if self._cancel.is_set():
                raise ivf.Cancelled
            gone = np.intersect1d(np.fromiter(start.removed, np.int64, len(start.removed)), went_in)
            if len(gone):
                fresh.remove_ids(gone)
            added, vectors = ivf.export(self._index)  # what came meanwhile, at the catalog's precision
            new = ~np.isin(added, went_in)
            if new.any():
                fresh.add_with_ids(vectors[new], added[new])  # type: ignore[index]
            self._index = fresh
            self.probe_margin = margin
            self.trained_on = len(went_in) if kind == "ivf" else 0
            self.start_build = None
            self.dirty = True
        self._log_built(fresh, kind, margin, "from the catalog ", time.monotonic() - start.began, scanned=True)

    def _rebuild_logged(self) -> None:
        try:
            self._rebuild()
        except ivf.Cancelled:
            pass
        except Exception as exc:  # noqa: BLE001 - the live index keeps serving; the next add retries
            self.last_build_error = f"{type(exc).__name__}: {exc}"
            log.exception("building the search index failed; exact search goes on")

    def _rebuild(self) -> None:
        """Build the wanted structure from a copy of the live vectors, then swap it in with the changes since."""
        started = time.monotonic()
        with self._lock:
            ids = self.ids()
            kind = self.wanted_kind()
        margin = None
        if kind == "ivf":
            sample = ivf.sample_from(ids, lambda part: self.reconstruct_many(part)[1])
            fresh, margin = ivf.build(len(ids), sample, self._blocks(ids), self._cancel)
            if self._declines(fresh, len(ids)):
                return
        else:
            fresh = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            for block_ids, vectors in self._blocks(ids):
                fresh.add_with_ids(vectors, block_ids)
        with self._lock:
            if self._cancel.is_set():
                raise ivf.Cancelled
            live = ivf.export(self._index, with_vectors=False)[0]
            gone = np.setdiff1d(ids, live, assume_unique=True)
            new = np.setdiff1d(live, ids, assume_unique=True)
            if len(gone):
                fresh.remove_ids(gone)
            if len(new):
                fresh.add_with_ids(*reversed(self.reconstruct_many(new)))
            self._index = fresh
            self.probe_margin = margin
            self.trained_on = len(ids) if kind == "ivf" else 0
            self.dirty = True
        self._log_built(fresh, kind, margin, "", time.monotonic() - started)

    def _declines(self, fresh: faiss.IndexIVF, count: int) -> bool:
        """True (and said once in the log) when the IVF just built saves no work: exact search stays."""
        if ivf.pays(fresh):
            return False
        self._declined_at = count
        log.info("kept exact search: IVF needed %d of %d lists for its recall", fresh.nprobe, fresh.nlist)
        return True

    def _log_built(
        self, fresh: faiss.Index, kind: str, margin: float | None, source: str, seconds: float, scanned: bool = False
    ) -> None:
        log.info(
            "search index is now %s over %d images%s (built %sin %.1fs%s)",
            "approximate (IVF)" if kind == "ivf" else "exact",
            len(self),
            f", {fresh.nlist} lists, nprobe {fresh.nprobe}, margin {margin}" if kind == "ivf" else "",
            source,
            seconds,
            "; searches no longer scan it" if scanned else "",
        )

    def _blocks(self, ids: np.ndarray, size: int = 20_000) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """The live vectors of these ids a block at a time (exact where exact_vectors is set): never all at once."""
        for start in range(0, len(ids), size):
            yield self.reconstruct_many(ids[start : start + size])

    def adopt(self, other: VectorIndex, catalog: Catalog) -> None:
        """Serve `other`'s vectors from now on (a model change's new set), in one step under the lock.

        A background build of the old vectors is stopped first: swapped in afterwards, it would bring
        them back. Listeners are not told: the new set is not a change of contents but another space.
        """
        self._cancel.set()
        builder = self._builder
        if builder is not None:
            builder.join()
        with self._lock:
            self._index = other._index
            self.start_build = None  # the new vectors are whole: no scan, no build of the old ones
            self.dim = other.dim
            self.trained_on = other.trained_on
            self.probe_margin = other.probe_margin
            self._declined_at = 0
            self.generation = catalog.generation
            self.catalog_id = catalog.catalog_id
            self.dirty = True
        if not self._closed:
            self._cancel.clear()
        if self.background and not self._closed:
            self.rebuild_if_due()

    def close(self, wait: float | None = None) -> None:
        """Stop a background build (it checks between k-means rounds and add chunks) and wait for it, at most
        `wait` seconds: one k-means round at 1M takes longer than a SIGTERM may. Cancelled, it swaps nothing
        in; a daemon thread, it does not hold the exit."""
        self._closed = True  # a late add (a worker that outlived its stop) must not start another build
        self._cancel.set()
        builder = self._builder
        if builder is not None:
            builder.join(wait)
            if builder.is_alive():
                self._builder = None  # left to end with the process
                log.info("left the index build to end with the process")

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> bool:
        """Write atomically; a crash at any moment leaves the old file or the new one, never half. False: not
        written, the index being built from the catalog (it holds only what came since the start)."""
        if not self.background:  # `imgd index` leaves the structure the next search should use
            try:
                self.rebuild_if_due()
            except Exception as exc:  # noqa: BLE001 - out of memory, say: the exact index is still good
                self.last_build_error = f"{type(exc).__name__}: {exc}"
                log.warning("could not build the approximate index (%s); saving exact search", exc)

        if self.start_build is not None:  # the next start builds it again: the catalog has every vector
            return False

        def dump(put: Callable[[bytes], int]) -> dict[str, object]:
            with self._lock:  # FAISS walks the live index: no change meanwhile
                indexfile.dump_into(self._index, put)
                self.dirty = False
                kept = {"trained_on": self.trained_on, "probe_margin": self.probe_margin, "catalog_id": self.catalog_id}
                return {"generation": self.generation, "count": len(self), "dim": self.dim, **kept}

        try:
            indexfile.write(Path(path), dump)
        except BaseException:
            self.dirty = True
            raise
        return True

    @classmethod
    def read(cls, path: Path) -> tuple[VectorIndex, IndexHeader]:
        """Load and check the file against its own header; raise IndexFileError if it is damaged."""
        meta, raw = indexfile.read(Path(path))
        header = IndexHeader(int(meta["generation"]), int(meta["count"]), int(meta["dim"]), str(meta["sha256"]))
        index = cls(header.dim, raw)
        index.trained_on = int(meta.get("trained_on", 0)) if isinstance(raw, faiss.IndexIVF) else 0
        margin = meta.get("probe_margin") if isinstance(raw, faiss.IndexIVF) else None
        index.probe_margin = float(margin) if isinstance(margin, int | float) else None  # older saves: nprobe only
        index.generation = header.generation
        index.catalog_id = meta.get("catalog_id")
        return index, header

    def catch_up(self, catalog: Catalog) -> tuple[int, int]:
        """Apply what the catalog did since this index was saved: the difference of the id sets is all of it.

        Vector ids are never reused within a catalog (AUTOINCREMENT) and a stored vector never
        changes, so an id present in both holds the same vector in both.
        """
        live, have = catalog.vector_ids(), self.ids()
        gone = np.setdiff1d(have, live)
        new = np.setdiff1d(live, have)
        self.remove(gone)
        for start in range(0, len(new), 20_000):
            part = new[start : start + 20_000]
            self.add(part, catalog.vectors_by_id(part))
        self.generation = catalog.generation
        self.dirty = True
        return len(new), len(gone)

    @classmethod
    def build(
        cls, catalog: Catalog, dim: int, source: Iterable[tuple[np.ndarray, np.ndarray]] | None = None
    ) -> VectorIndex:
        """Rebuild from the catalog's vectors, the source of truth (or from `source`: a new model's).

        Past EXACT_LIMIT the IVF is built at once, streamed from the catalog: an exact index of 1M
        vectors first would hold 2 GB of float32, and its switch to IVF a second copy.
        """
        index = cls(dim)
        count = catalog.count_vectors() if source is None else 0
        if source is None:  # the catalog's own vectors: an IVF re-scores from them (not a new model's)
            index.exact_vectors, source = catalog.vectors_by_id, catalog.iter_vectors()
        if count >= EXACT_LIMIT:
            sample = ivf.sample_from(catalog.vector_ids(), catalog.vectors_by_id)
            raw, margin = ivf.build(count, sample, catalog.iter_vectors(), index._cancel)
            if ivf.pays(raw):  # else exact search, as _rebuild decides
                index._index, index.probe_margin, index.trained_on, source = raw, margin, count, ()
            else:
                index._declined_at = count
                source = catalog.iter_vectors()
        for ids, vectors in source:
            index.add(ids, vectors)
        index.generation = catalog.generation
        index.catalog_id = catalog.catalog_id
        index.dirty = True
        return index

    @classmethod
    def scanned(cls, catalog: Catalog, dim: int, readers: ThreadReaders) -> VectorIndex:
        """An index to be built from the catalog on a thread (rebuild_if_due starts it) while searches scan the
        catalog through `readers`: it holds what is added meanwhile."""
        index = cls(dim)
        count = catalog.count_vectors()
        index.start_build = StartBuild(total=count, count=count)
        index.readers = readers
        index.exact_vectors = catalog.vectors_by_id
        index.generation = catalog.generation
        index.catalog_id = catalog.catalog_id
        index.dirty = True
        return index

    @classmethod
    def load_verified(
        cls,
        path: Path,
        catalog: Catalog,
        dim: int,
        readers: ThreadReaders | None = None,
        exact_limit: int = EXACT_LIMIT,
    ) -> VectorIndex:
        """The saved index if it matches the catalog exactly, else a fresh one built from the catalog: with
        `readers` (the daemon), past either exact limit, one built on a thread while searches scan the catalog."""
        try:
            index, header = cls.read(path)
            index.exact_vectors = catalog.vectors_by_id  # the owner of a catalog it closes unsets it
            generation, count = catalog.generation, catalog.count_vectors()
            if header.dim != dim:
                raise IndexFileError(f"index file has {header.dim} dims, the model has {dim}")
            if header.generation == generation and header.count == count:
                index.catalog_id = index.catalog_id or catalog.catalog_id
                index.dirty = False
                return index
            if index.catalog_id is None or index.catalog_id != catalog.catalog_id or header.generation > generation:
                raise IndexFileError(
                    f"index file is stale (generation {header.generation}, {header.count} vectors; "
                    f"catalog has generation {generation}, {count} vectors)"
                )
            # An older save of this catalog (a crash since): patch it rather than rebuild and re-cluster.
            added, removed = index.catch_up(catalog)
            log.info("brought the saved index up to date with the catalog (+%d, -%d vectors)", added, removed)
            return index
        except IndexFileError as exc:
            count = catalog.count_vectors()
            scan = readers is not None and count >= min(exact_limit, EXACT_LIMIT)
            if count or Path(path).exists():
                meanwhile = "; searches scan the catalog until it is built" if scan else ""
                log.info("rebuilding the index from the catalog: %s%s", exc, meanwhile)
            return cls.scanned(catalog, dim, readers) if scan else cls.build(catalog, dim)  # type: ignore[arg-type]
