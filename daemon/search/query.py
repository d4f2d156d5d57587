"""Answering searches: terms become one vector, filters become a set of content ids, hits become lines.

`Searcher` serves any thread (per-thread read-only catalog connections, one shared index) in the
daemon and in the direct path alike, so both give the same answer to the same request.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..config import Config
from ..embedders import Embedder
from ..errors import CatalogError, ImageReadError
from ..protocol import Filters, Options, RequestError, SearchRequest, SimilarRequest, Term
from ..store.catalog import Catalog, ThreadReaders
from ..store.index import VectorIndex
from ..store.records import FileRow, FileStat
from . import postfilter, words
from .filters import from_request, on_path
from .near import place_fields

AUTO_CUT_SAMPLE = 2000  # library vectors scored to learn what "unrelated" scores like for a query
FILTER_CACHE = 16
NARROW_SELECTION = 4096  # a filter selecting at most this many is scored from its own vectors (<= 8 MB each)


def combine(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The normalised weighted sum of normalised vectors; negative weights subtract."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float32))
    for vector, weight in zip(vectors, weights, strict=True):
        vector = np.asarray(vector, dtype=np.float32)
        total += weight * vector / max(float(np.linalg.norm(vector)), 1e-12)
    norm = float(np.linalg.norm(total))
    return total / norm if norm > 1e-6 else total


def auto_cut(scores: np.ndarray, background: np.ndarray) -> int:
    """How many of the best-first scores form the group that stands out from the rest of the library.

    One fixed threshold fails (CLIP's scores shift per query; both peers' maintainers say so), so the
    cut comes from this query's own scores: of the answers scoring above the library's upper quartile
    for it, Otsu's split (the one maximising the between-group variance) keeps the upper group. A
    single outlier at the top does not end the list there: its group would be too small to matter.
    """
    top = scores[scores > np.quantile(background, 0.75)]
    count = len(top)
    if count < 3:
        return count
    sums = np.cumsum(top, dtype=np.float64)
    upper = np.arange(1, count)
    mean_upper = sums[:-1] / upper
    mean_lower = (sums[-1] - sums[:-1]) / (count - upper)
    between = upper * (count - upper) * (mean_upper - mean_lower) ** 2
    return int(np.argmax(between)) + 1


def path_passes(filters: Filters, path: str) -> bool:
    """The per-path part of a filter: a content may have one copy inside --in and one outside."""
    row = FileRow(path)
    return all(check.match(row) for check in on_path(filters))


class SwitchLock:
    """Any number of searches at once, or one model switch: a search never mixes a query vector of one
    model with the stored vectors of the other. Not reentrant: take it once per request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._searches = 0
        self._switching = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._switching)
            self._searches += 1
        try:
            yield
        finally:
            with self._cond:
                self._searches -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._switching)
            self._switching = True  # new searches wait from here on
            self._cond.wait_for(lambda: self._searches == 0)
        try:
            yield
        finally:
            with self._cond:
                self._switching = False
                self._cond.notify_all()


class Searcher:
    """Queries from any thread: per-thread read-only catalog connections, a shared index."""

    TEXT_CACHE = 256

    def __init__(self, config: Config, index: VectorIndex, embedder_factory: Callable[[], Embedder]) -> None:
        self.config = config
        self.index = index
        self._embedder_factory = embedder_factory
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._readers = ThreadReaders(config.catalog_path)
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._filter_cache: OrderedDict[tuple[Filters, int, int], np.ndarray] = OrderedDict()
        self._narrow: dict[bytes, np.ndarray] = {}  # a narrow filter's vectors, by its ids
        self._too_many: dict[tuple, bool] = {}  # filters past postfilter.SELECT_BUDGET: check (True) or select
        self._later = postfilter.Later()  # filters checked on candidates, selected whole in the background
        self._sample: tuple[int, np.ndarray] | None = None
        self._cache_lock = threading.Lock()
        self._switch = SwitchLock()

    @property
    def catalog(self) -> Catalog:
        return self._readers.get()

    @property
    def embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = self._embedder_factory()
            return self._embedder

    @contextlib.contextmanager
    def switching(self, embedder: Embedder) -> Iterator[None]:
        """Hold searches off while catalog and index change model; afterwards answer with `embedder`."""
        with self._switch.exclusive():
            yield
            with self._embedder_lock:
                self._embedder = embedder
            with self._cache_lock:  # every cached vector and selection belongs to the old model
                self._text_cache.clear()
                self._filter_cache.clear()
                self._narrow.clear()
                self._too_many.clear()
                self._later = postfilter.Later()
                self._sample = None

    # -- vectors ------------------------------------------------------------------------------

    def text_vector(self, text: str) -> np.ndarray:
        """Encode a query, remembering recent ones: people repeat and refine searches."""
        text = text.strip()
        with self._cache_lock:
            if text in self._text_cache:
                self._text_cache.move_to_end(text)
                return self._text_cache[text]
        vector = self.embedder.encode_texts([text])[0]
        with self._cache_lock:
            self._text_cache[text] = vector
            while len(self._text_cache) > self.TEXT_CACHE:
                self._text_cache.popitem(last=False)
        return vector

    def image_vector(self, path: str) -> tuple[np.ndarray, int | None]:
        """A reference image's vector and its content id: the stored one if catalogued, else embedded.
        A video's is its first frame's, or with `@1:23` after its path the frame nearest that time."""
        from ..ingest import imaging, video  # not at the top: a text search never decodes (~50 ms of plug-ins)

        path, at = video.split_time(path)
        if not os.path.isfile(path):
            raise ImageReadError(path, "no such file" if not os.path.exists(path) else "not a regular file")
        record = self.catalog.get_file(path)
        info = os.stat(path)
        if record is not None and record.unchanged(FileStat(path, info.st_size, info.st_mtime_ns), indexed=True):
            vector = self._stored(record.content_id, at) if record.content_id is not None else None
            if vector is not None:  # no read, no decode, no image model
                return vector, record.content_id
        if video.is_video(path):
            return self._video_vector(video.read_video(path).frames, at), None
        data, digest = imaging.read_and_hash(path)
        content_id = self.catalog.content_id(digest)
        if content_id is not None:
            vector = self.catalog.vector(content_id)
            if vector is not None:
                return vector, content_id
        image, _ = imaging.decode(path, data, self.config.max_image_pixels)
        embedder = self.embedder
        return embedder.encode_images([embedder.prepare(image)])[0], None

    def _stored(self, content_id: int, at: float | None) -> np.ndarray | None:
        """A content's stored vector: its first, or a video's nearest the time `at`."""
        if at is None:
            return self.catalog.vector(content_id)
        found = self.catalog.vector_at(content_id, at)
        return found[0] if found is not None else None

    def _video_vector(self, frames: list[Any], at: float | None) -> np.ndarray:
        """An uncatalogued video's frame embedded: its first, or the sampled one nearest `at`."""
        frame = min(frames, key=lambda f: abs(f.at - (at or 0.0)))
        embedder = self.embedder
        return embedder.encode_images([embedder.prepare(frame.image)])[0]

    def term_vector(self, term: Term) -> np.ndarray:
        return self.text_vector(term.value) if term.kind == "text" else self.image_vector(term.value)[0]

    # -- answering ----------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> list[dict[str, Any]]:
        with self._switch.shared():
            self._require_images()
            vectors = [self.term_vector(term) for term in request.terms]
            query = combine(vectors, [term.weight for term in request.terms])
            return self.run(query, request.options, fused=words.search_words(request))

    def similar(self, request: SimilarRequest) -> list[dict[str, Any]]:
        with self._switch.shared():
            self._require_images()
            if request.content_id is not None:
                vector, content_id = self.content_vector(request.content_id), request.content_id
            else:
                vector, content_id = self.image_vector(request.path)
            return self.run(vector, request.options, exclude=frozenset({content_id} - {None}))

    def content_vector(self, content_id: int) -> np.ndarray:
        """A catalogued content's stored vector: no path, no file, no image model."""
        vector = self.catalog.vector(content_id)
        if vector is None:
            raise RequestError("that image is no longer in the catalog.")
        return vector

    def _require_images(self) -> None:
        if len(self.index) == 0:
            raise CatalogError("the catalog holds no images yet; run `imgd index DIR` or `imgd run DIR` first.")

    def run(
        self, query: np.ndarray, options: Options, exclude: frozenset[int] = frozenset(), fused: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The k best live paths for a query vector under the options' filters, cut-off and order; `fused`: words
        whose matches in pictures' words are fused into the ranking (search/words.py)."""
        words.check(self.catalog, options.filters)
        allowed, hits = None, None
        if postfilter.wanted(options, len(self.index)):  # too many to select within the budget: check candidates
            allowed = self._selected(options.filters, "vectors", postfilter.SELECT_BUDGET)
            if allowed is None:
                checker = postfilter.check(self.catalog, options.filters)
                hits = self._live_hits(query, options.k, options.filters, None, exclude, options.min_score, checker)
                key = ("vectors", options.filters, *self.catalog.state())
                if len(checker.checked) >= postfilter.SAMPLE:  # few pass: each query would check a thousand
                    with self._cache_lock:
                        self._too_many[key] = False
                elif hits is not None and self._later.due(key):  # the filter is reused: select it aside
                    postfilter.in_background(self._select_whole, options.filters, self._readers.close_mine)
        if hits is None:
            allowed = allowed if allowed is not None else self._allowed_vectors(options.filters)
            hits = self._live_hits(query, options.k, options.filters, allowed, exclude, options.min_score)
        if options.auto_cut and hits:
            best = {content_id: score for score, _, content_id, _ in reversed(hits)}  # each content's score
            order = list(dict.fromkeys(content_id for _, _, content_id, _ in hits))
            scores = np.array([best[content_id] for content_id in order], dtype=np.float32)
            keep = set(order[: auto_cut(scores, self._background(query, allowed))])
            hits = [hit for hit in hits if hit[2] in keep]
        if fused:
            hits = self._fuse(query, hits, fused, options, exclude)
        rows = self._present(hits, options.sort, options.filters, options.frames)
        words.annotate(
            self.catalog, rows, words.needles(options.filters, fused or []), self.config.words_min_confidence
        )
        return rows

    def _fuse(
        self,
        query: np.ndarray,
        hits: list[tuple[float, str, int, int]],
        fused: list[str],
        options: Options,
        exclude: frozenset,
    ) -> list[tuple[float, str, int, int]]:
        """The hits with the contents whose words match fused in (each scored by its own cosine)."""
        catalog = self.catalog
        filters = options.filters
        wanted = postfilter.wanted(options, len(self.index))
        checker = postfilter.check(catalog, filters) if wanted else postfilter.of_selection(self.allowed(filters))
        by_words = [cid for cid in words.ranked(catalog, fused, checker) if cid not in exclude]
        if not by_words:
            return hits
        known = {hit[2] for hit in hits}
        extra = [cid for cid in by_words if cid not in known]
        if extra:
            with catalog.snapshot():  # a content removed meanwhile takes its words with it
                owners = catalog.contents_of(catalog.vector_ids_of(extra).tolist())  # vector id -> content
                first = {cid: vid for vid, cid in sorted(owners.items(), reverse=True)}  # a photo's one vector
                extra = list(dict.fromkeys(cid for cid in by_words if cid in first))
                cosines = catalog.vectors_for(np.array(extra, dtype=np.int64)) @ np.asarray(query, dtype=np.float32)
                paths = catalog.paths_for(extra)
            for cid, cosine in sorted(zip(extra, cosines.tolist(), strict=True), key=lambda pair: -pair[1]):
                if options.min_score is not None and cosine < options.min_score:
                    continue
                live = [p for p in paths.get(cid, []) if path_passes(options.filters, p) and os.path.isfile(p)]
                hits = hits + [(cosine, path, cid, first[cid]) for path in live]
        return words.fuse(hits, by_words, options.k)

    def cut_score(self, query: np.ndarray, filters: Filters, k: int = 200) -> float | None:
        """The score where `auto` ends this query's answers over the library now: midway between the last
        answer it keeps and the first it leaves (a saved search's default threshold); None: no images."""
        with self._switch.shared():
            if len(self.index) == 0:
                return None
            allowed = self._allowed_vectors(filters)
            hits = self._live_hits(query, k, filters, allowed, frozenset(), None)
            best = {content_id: score for score, _, content_id, _ in reversed(hits)}
            scores = np.array(sorted(best.values(), reverse=True), dtype=np.float32)
            if not len(scores):
                return None
            keep = auto_cut(scores, self._background(query, allowed))
            if keep == 0:  # nothing stands out yet: a picture must beat the best of the library
                return float(scores[0])
            return float((scores[keep - 1] + scores[keep]) / 2) if keep < len(scores) else float(scores[-1])

    def _select_whole(self, filters: Filters) -> None:
        """Select a filter's vectors whole and cache them (in the background): later queries search its bitmap."""
        with self._switch.shared():
            self._selected(filters, "vectors")

    def allowed(self, filters: Filters) -> np.ndarray | None:
        """Content ids a filter lets through (None: no filter), cached per catalog state."""
        return self._selected(filters, "contents")

    def _allowed_vectors(self, filters: Filters) -> np.ndarray | None:
        """Vector ids of the contents a filter lets through (None: no filter): what the index searches."""
        return self._selected(filters, "vectors")

    def _selected(self, filters: Filters, kind: str, budget: float | None = None) -> np.ndarray | None:
        """A filter's selection of content or vector ids, cached per catalog state: people refine the words
        of a query far more often than its filters. None with no filter, or past `budget` seconds (vectors)."""
        if not filters.active:
            return None
        catalog = self.catalog
        # Backfilled metadata changes what a filter selects without a new generation: the state counts both.
        key = (kind, filters, *catalog.state())
        with self._cache_lock:
            if key in self._filter_cache:
                self._filter_cache.move_to_end(key)
                return self._filter_cache[key]
            if budget is not None and key in self._too_many:  # it ran past the budget before: not again,
                if self._too_many[key]:
                    return None
                budget = None  # unless few of its candidates passed: then selected once, and cached
        chosen = from_request(filters, catalog.cameras)
        if kind == "contents":
            ids, vectors = catalog.content_ids_matching(chosen), None
        else:
            ids = catalog.vector_ids_matching(chosen, budget) if budget != 0 else None
            if ids is None:
                with self._cache_lock:
                    self._too_many[key] = True
                    while len(self._too_many) > FILTER_CACHE:
                        del self._too_many[next(iter(self._too_many))]
                return None
            # A narrow filter's own vectors, scored directly: cheaper than any pass over the index.
            vectors = catalog.vectors_by_id(ids) if len(ids) <= NARROW_SELECTION else None
        with self._cache_lock:
            if vectors is not None:
                self._narrow[ids.tobytes()] = vectors
            self._filter_cache[key] = ids
            while len(self._filter_cache) > FILTER_CACHE:
                dropped = self._filter_cache.popitem(last=False)[1]
                self._narrow.pop(dropped.tobytes(), None)
        return ids

    def _candidates(
        self, query: np.ndarray, fetch: int, allowed: np.ndarray | None, k: int = 0
    ) -> list[tuple[int, float]]:
        """The fetch best (vector id, score) pairs: from a narrow filter's own vectors, else the index; with
        `k`, the fetch best of the lists a filtered top-k search probes (a post-filter's candidates)."""
        narrow = allowed is not None and len(allowed) <= NARROW_SELECTION  # not a broad one's 8 MB hashed a round
        vectors = self._narrow.get(allowed.tobytes()) if narrow else None  # type: ignore[union-attr]
        if vectors is None:  # an IVF re-scores its candidates from this thread's catalog reader
            lookup = self.catalog.vectors_by_id
            return self.index.search(query, k or fetch, allowed, fetch=fetch if k else 0, lookup=lookup)
        scores = vectors @ np.asarray(query, dtype=np.float32)
        best = np.argsort(-scores, kind="stable")[:fetch]
        return [(int(allowed[i]), float(scores[i])) for i in best]

    def _background(self, query: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
        """This query's scores over a random sample of the (filtered) library."""
        if allowed is not None:
            rng = np.random.default_rng(len(allowed))
            picks = allowed if len(allowed) <= AUTO_CUT_SAMPLE else rng.choice(allowed, AUTO_CUT_SAMPLE, replace=False)
            vectors = self.catalog.vectors_by_id(np.sort(picks))
        else:
            vectors = self._library_sample()
        return vectors @ np.asarray(query, dtype=np.float32) if len(vectors) else np.zeros(1, dtype=np.float32)

    def _library_sample(self) -> np.ndarray:
        """Up to AUTO_CUT_SAMPLE stored vectors, drawn again when the library's size changed by a tenth."""
        size = len(self.index)
        with self._cache_lock:
            cached = self._sample
        if cached is not None and abs(cached[0] - size) <= size // 10:
            return cached[1]
        ids = self.catalog.vector_ids()
        rng = np.random.default_rng(size)
        picks = ids if len(ids) <= AUTO_CUT_SAMPLE else rng.choice(ids, AUTO_CUT_SAMPLE, replace=False)
        vectors = self.catalog.vectors_by_id(np.sort(picks))
        with self._cache_lock:
            self._sample = (size, vectors)
        return vectors

    def _live_hits(
        self,
        query: np.ndarray,
        k: int,
        filters: Filters,
        allowed: np.ndarray | None,
        exclude: frozenset[int],
        threshold: float | None,
        checker: postfilter.Check | None = None,
    ) -> list[tuple[float, str, int, int]] | None:
        """Best-first (score, path, content id, best vector id) of the k best contents with a live path that passes;
        `checker`: the filters are checked on the candidates (None when too few of them pass)."""
        fetch = k + len(exclude)  # no slack: IVF probes more lists per started ten; a short answer fetches again
        fetch *= postfilter.SPARE if checker else 1
        limit = len(self.index) if allowed is None else len(allowed)
        known: dict[int, int] = {}  # vector id -> content, over the rounds: a round looks up only what is new
        while True:
            raw = self._candidates(query, fetch, allowed, k + len(exclude) if checker else 0)
            known.update(self.catalog.contents_of(vid for vid, _ in raw if vid not in known))
            owners = {vid: known[vid] for vid, _ in raw if vid in known}
            if checker:
                passing = checker(owners.values())
                owners = {vid: cid for vid, cid in owners.items() if cid in passing}
            paths = self.catalog.paths_for(owners.values())
            hits: list[tuple[float, str, int, int]] = []
            contents = 0
            seen: set[int] = set()  # a content with several vectors (a video's frames) counts at its best
            for vector_id, score in raw:
                if threshold is not None and score < threshold:
                    return hits
                content_id = owners.get(vector_id)
                if content_id is None or content_id in exclude or content_id in seen:
                    continue
                seen.add(content_id)
                live = [p for p in paths.get(content_id, []) if path_passes(filters, p) and os.path.isfile(p)]
                if not live:
                    continue
                contents += 1
                hits.extend((score, path, content_id, vector_id) for path in live)
                if contents >= k:
                    return hits
            if checker and (postfilter.hopeless(fetch, contents, k) or (len(raw) < fetch and self.index.kind == "ivf")):
                return None  # too few pass, or the lists probed ran out (exact: the library did): select after all
            if len(raw) < fetch or fetch >= limit:
                return hits
            fetch *= 4

    def _present(
        self, hits: list[tuple[float, str, int, int]], sort: str, filters: Filters, frames: bool = False
    ) -> list[dict[str, Any]]:
        """Result rows: score, path, content id and what the catalog knows of the file; a video's best time."""
        catalog = self.catalog
        # An older catalog opened read-only (the direct path) holds no metadata until a writer upgrades it.
        details = catalog.media_for(path for _, path, _, _ in hits) if catalog.schema_version >= 2 else {}
        siblings = catalog.siblings_for(path for _, path, _, _ in hits)  # a RAW or a live photo's video beside it
        videos = catalog.durations(hit[2] for hit in hits)
        times = catalog.vector_times(hit[3] for hit in hits if hit[2] in videos)
        rows = []
        for score, path, content_id, vector_id in hits:
            row: dict[str, Any] = {"score": round(min(1.0, max(-1.0, score)), 6), "path": path}
            if path in siblings:
                row["sibling"] = siblings[path][0]  # the first in path order, as one name always said
                row["siblings"] = siblings[path]  # every one: a still may have both a RAW and a live video
            row["id"] = content_id
            meta = details.get(path)
            if meta is not None:
                camera = " ".join(part for part in (meta.make, meta.model) if part) or None
                row.update(
                    size=meta.size,
                    width=meta.width,
                    height=meta.height,
                    type=meta.file_type,
                    taken=meta.taken,
                    taken_source=meta.taken_source,
                    camera=camera,
                )
                row.update(place_fields(meta, filters))
            if content_id in videos:  # only videos: a photo's rows stay as they were
                row.update(time=times.get(vector_id, 0.0), duration=round(videos[content_id], 3))
                if frames:
                    row["frames"] = [round(at, 3) for _, at in catalog.frames_of(content_id)]
            rows.append(row)
        if sort == "path":
            rows.sort(key=lambda r: os.fsencode(r["path"]))
        elif sort == "date":  # oldest first; the wall-clock time taken, as the filters compare it
            rows.sort(key=lambda r: (r.get("taken") or "")[:19])
        return [{"rank": rank, **row} for rank, row in enumerate(rows, 1)]
