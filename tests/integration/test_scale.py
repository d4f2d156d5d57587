"""Work per event that must not grow with the library: the duplicates upkeep of a new file among many
near-identical frames, and (at 10k and 100k contents, built once per session) a removal and a new file.

Work is counted, never timed: SQLite virtual-machine steps (a progress handler) and the vectors the
duplicates tracker looks up, so a load on the machine cannot make these tests flaky.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.ingest.engine import Engine
from imgd.daemon.protocol import Options
from imgd.daemon.search import pairs as pairs_module
from imgd.daemon.search.dupes import DEFAULT_THRESHOLD
from imgd.daemon.search.pairs import exact_scores, library_pairs
from imgd.daemon.search.query import Searcher
from imgd.daemon.service.dupetracker import NEIGHBOUR_LIMIT, DupeTracker, library_vectors
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.index import VectorIndex

DIM = 512  # ViT-B/32's size


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def vector_id_of(catalog: Catalog, content_id: int) -> int:
    return int(catalog.conn.execute("SELECT id FROM vectors WHERE content_id = ?", (content_id,)).fetchone()[0])


def loaded_index(catalog: Catalog, dim: int) -> VectorIndex:
    index = VectorIndex(dim)
    for chunk_ids, chunk in catalog.iter_vectors():
        index.add(chunk_ids, chunk)
    return index


# -- duplicates upkeep among near-identical frames ------------------------------------------------


def test_a_new_frame_among_hundreds_of_near_identical_ones_is_linked_to_at_most_the_bound(tmp_path: Path) -> None:
    """Five times the bound of near-identical frames (all pairwise duplicates): a new one looks up and
    links only its NEIGHBOUR_LIMIT nearest, each with its exact score, not every frame of the library."""
    dim, count = 64, 5 * NEIGHBOUR_LIMIT
    rng = np.random.default_rng(7)
    frames = unit(rng.standard_normal(dim) + 0.02 * rng.standard_normal((count + 1, dim)))
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.ensure_model("synthetic", dim)
    with catalog.transaction():
        contents = [catalog.add_content(f"{n:064x}", frames[n].astype(np.float32), 100, 100) for n in range(count)]
    index = loaded_index(catalog, dim)
    tracker = DupeTracker(index, lambda: library_vectors(catalog), DEFAULT_THRESHOLD, owners=catalog.contents_of)
    tracker.build()
    first_pass = tracker.pair_count()  # every frame is a near-duplicate of every other: each keeps its nearest
    assert NEIGHBOUR_LIMIT * count // 2 <= first_pass <= NEIGHBOUR_LIMIT * count < count * (count - 1) // 2

    looked_up: list[int] = []
    real = index.reconstruct_many
    index.reconstruct_many = lambda ids: (looked_up.append(len(ids)), real(ids))[1]  # type: ignore[method-assign]
    index.listeners.append(tracker)
    with catalog.transaction():
        new = catalog.add_content("f" * 64, frames[count].astype(np.float32), 100, 100)
    index.add(np.array([vector_id_of(catalog, new)]), frames[[count]].astype(np.float32))

    assert 0 < sum(looked_up) <= NEIGHBOUR_LIMIT
    assert tracker.pair_count() == first_pass + NEIGHBOUR_LIMIT
    linked = {(a if b == new else b): score for a, b, score in tracker.pairs(DEFAULT_THRESHOLD) if new in (a, b)}
    assert len(linked) == NEIGHBOUR_LIMIT
    scores = exact_scores(frames[:count], np.repeat(frames[[count]], count, axis=0))
    exact = dict(zip(contents, scores.tolist(), strict=True))
    assert all(linked[c] == exact[c] for c in linked), "each kept pair has its exact score"
    nearest = sorted(exact.values(), reverse=True)
    assert min(linked.values()) >= nearest[NEIGHBOUR_LIMIT - 1] - 1e-3, "the nearest frames are the ones kept"
    catalog.close()


def test_the_first_pass_scores_a_clump_of_near_identical_frames_in_bounded_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 near-identical frames are 19,900 candidate pairs: scored a block at a time (each candidate holds
    two float64 vectors while scored), with the same pairs as scoring them at once."""
    rng = np.random.default_rng(3)
    frames = unit(rng.standard_normal(DIM) + 0.02 * rng.standard_normal((200, DIM)))
    ids = np.arange(1, 201, dtype=np.int64)
    every = 10**9  # no bound on pairs per frame: every pair, to compare (test_dupes tests the bound)
    monkeypatch.setattr(pairs_module, "_SCORE_ROWS", 10**9)
    whole = library_pairs(ids, frames, DEFAULT_THRESHOLD, limit=every)
    monkeypatch.setattr(pairs_module, "_SCORE_ROWS", 1000)
    blocks: list[int] = []
    real = pairs_module.exact_scores
    monkeypatch.setattr(pairs_module, "exact_scores", lambda a, *rest: (blocks.append(len(a)), real(a, *rest))[1])
    assert library_pairs(ids, frames, DEFAULT_THRESHOLD, limit=every) == whole and len(whole) == 200 * 199 // 2
    assert max(blocks) <= 1000 and sum(blocks) == len(whole)


# -- 10k vs 100k contents: a removal and a new file ---------------------------------------------------


SIZES = (10_000, 100_000)
LIVE = 50  # the first contents have a real (tiny) file


@pytest.fixture(scope="session")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Catalogs of 10k and 100k contents (one file each, synthetic 512-dim vectors), built once; the
    first LIVE files are on disk."""
    built = {}
    rng = np.random.default_rng(0)
    for size in SIZES:
        folder = tmp_path_factory.mktemp(f"scale-{size}")
        catalog = Catalog(folder / "catalog.db")
        catalog.ensure_model("synthetic", DIM)
        for first in range(0, size, 10_000):
            vectors = unit(rng.standard_normal((min(10_000, size - first), DIM))).astype(np.float32)
            with catalog.transaction():
                for offset, vector in enumerate(vectors):
                    n = first + offset
                    content_id = catalog.add_content(f"{n:064x}", vector, 100, 100)
                    path = Path(f"{folder}/lib/{n // 1000:04d}/{n}.jpg")
                    if n < LIVE:  # a search's answers must be on disk; the others need no file
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(n.to_bytes(8, "little"))
                    catalog.set_file(str(path), 1, 1, content_id)
        catalog.close()
        built[size] = folder
    return built


@contextmanager
def counted(catalog: Catalog) -> Iterator[list[int]]:
    """Count the SQLite virtual-machine steps run on the catalog's connection meanwhile."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    catalog.conn.set_progress_handler(tick, 1)
    try:
        yield steps
    finally:
        catalog.conn.set_progress_handler(None, 1)


def work_at(scaled: dict[int, Path], make_config: Callable, embedder: object, act: Callable) -> dict[int, int]:
    """The SQLite steps `act(engine, catalog, folder)` takes at each size."""
    work = {}
    for size, folder in scaled.items():
        catalog = Catalog(folder / "catalog.db")
        engine = Engine(make_config(), catalog, VectorIndex(DIM), embedder)
        engine.orphan_grace = 0.0  # drop released contents at once: the removal's whole work
        with counted(catalog) as steps:
            act(engine, catalog, folder)
        work[size] = steps[0]
        catalog.close()
    return work


@pytest.mark.slow
def test_a_removal_and_a_new_file_cost_the_same_at_100k_as_at_10k(
    scaled: dict[int, Path], make_config: Callable, embedder: object
) -> None:
    """Ten times the library, not ten times the work: a scan of every content or file would show as ~10x."""

    def remove(engine: Engine, catalog: Catalog, folder: Path) -> None:
        path = f"{folder}/lib/0005/5005.jpg"
        content_id = catalog.get_file(path).content_id
        assert engine.forget([path]) == 1
        assert catalog.get_file(path) is None
        assert catalog.conn.execute("SELECT 1 FROM contents WHERE id = ?", (content_id,)).fetchone() is None

    removals = work_at(scaled, make_config, embedder, remove)
    assert removals[100_000] <= 2 * removals[10_000] + 50, removals

    def add(engine: Engine, catalog: Catalog, folder: Path) -> None:
        vector = unit(np.random.default_rng(1).standard_normal((1, DIM)))[0].astype(np.float32)
        with catalog.transaction():
            content_id = catalog.add_content("e" * 64, vector, 100, 100)
            catalog.set_file(f"{folder}/lib/new.jpg", 1, 1, content_id)

    additions = work_at(scaled, make_config, embedder, add)
    assert additions[100_000] <= 2 * additions[10_000] + 50, additions


def spy_on_search(index: VectorIndex) -> list[int]:
    """The k of every search the index is asked, from now on."""
    asked: list[int] = []
    real = index.search
    index.search = lambda q, k, allowed=None, **kw: (asked.append(k), real(q, k, allowed, **kw))[1]  # type: ignore[method-assign]
    return asked


@pytest.mark.slow
def test_a_search_costs_the_same_at_100k_as_at_10k(
    scaled: dict[int, Path], make_config: Callable, embedder: object
) -> None:
    """The catalog reads of a search follow its k answers, not the library (the index's own scan is FAISS's)."""
    work, fetched = {}, {}
    for size, folder in scaled.items():
        config = make_config(state_dir=folder)
        catalog = Catalog(config.catalog_path, readonly=True)
        index = loaded_index(catalog, DIM)
        near = [catalog.get_file(f"{folder}/lib/0000/{n}.jpg").content_id for n in range(20)]
        query = unit(catalog.vectors_for(np.array(near)).astype(np.float64).sum(axis=0, keepdims=True))[0]
        catalog.close()
        searcher = Searcher(config, index, lambda: embedder)
        asked = spy_on_search(index)
        with counted(searcher.catalog) as steps:
            hits = searcher.run(query.astype(np.float32), Options(k=10))
        assert len(hits) == 10 and {h["id"] for h in hits} <= set(near), hits
        work[size], fetched[size] = steps[0], sum(asked)
    assert fetched[100_000] == fetched[10_000] == 10, fetched
    assert work[100_000] <= 2 * work[10_000] + 50, work
