"""An index built from the catalog at start (no usable index file) on a thread, while searches scan the catalog.

Real SQLite catalogs and FAISS: the scan's answers against an exact index over the same vectors, and the
built index swapped in with the files added and removed while it was being built (issue 21).
"""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from imgd.daemon.errors import ImgdError
from imgd.daemon.store import index as index_module
from imgd.daemon.store.catalog import Catalog, ThreadReaders
from imgd.daemon.store.index import VectorIndex
from imgd.daemon.store.indexfile import IndexFileError

DIM = 32  # the tiny test model's size


def clustered(count: int, seed: int) -> np.ndarray:
    """Unit vectors around 30 centres, rounded to the catalog's float16: IVF finds its lists in them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, DIM))
    rows = centres[rng.integers(0, 30, count)] + 0.3 * rng.standard_normal((count, DIM))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float16).astype(np.float32)


def add(catalog: Catalog, vectors: np.ndarray, first: int) -> np.ndarray:
    """New contents with these vectors; their vector ids."""
    with catalog.transaction():
        contents = [catalog.add_content(f"{first + n:064x}", vector, 10, 10) for n, vector in enumerate(vectors)]
    return catalog.vector_ids_of(contents)


@pytest.fixture
def library(tmp_path: Path) -> Catalog:
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.ensure_model("synthetic", DIM)
    add(catalog, clustered(3000, seed=1), first=0)
    yield catalog
    catalog.close()


def scanning(catalog: Catalog, exact_limit: int = 1000) -> VectorIndex:
    """What the daemon opens without an index file: background builds, its own readers for the scan."""
    path, readers = catalog.path.with_name("index.faiss"), ThreadReaders(catalog.path)
    index = VectorIndex.load_verified(path, catalog, DIM, readers, exact_limit)
    index.exact_limit = exact_limit
    index.background = True
    return index


def exact(catalog: Catalog) -> faiss.Index:
    ids, vectors = zip(*catalog.iter_vectors(), strict=True)
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    flat.add_with_ids(np.vstack(vectors), np.concatenate(ids))
    return flat


def top(flat: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed)) if allowed is not None else None
    return [int(i) for i in flat.search(query[None, :], k, params=params)[1][0] if i >= 0]


def test_a_scanning_index_answers_what_the_exact_index_does_with_and_without_a_filter(library: Catalog) -> None:
    index = scanning(library)
    assert index.scanning and len(index) == 3000 and index.kind == "exact"
    assert index.describe()["scan"] == {"step": "waiting", "filled": 0, "total": 3000}
    flat, ids = exact(library), library.vector_ids()
    rng = np.random.default_rng(5)
    broad, narrow = np.sort(rng.choice(ids, 600, replace=False)), np.sort(rng.choice(ids, 7, replace=False))
    for query in clustered(5, seed=9):
        assert [i for i, _ in index.search(query, 10)] == top(flat, query, 10)
        assert [i for i, _ in index.search(query, 10, allowed=broad)] == top(flat, query, 10, broad)
        assert [i for i, _ in index.search(query, 10, allowed=narrow)] == top(flat, query, 7, narrow)
        assert [i for i, _ in index.search(query, 5, fetch=40)] == top(flat, query, 40)  # a post-filter's candidates
        scores = [s for _, s in index.search(query, 10)]
        assert scores == sorted(scores, reverse=True)
        assert index.search(query, 10, allowed=np.empty(0, np.int64)) == []
    # range_search (the duplicates upkeep) over every stored vector, at most `limit` each
    queries = library.vectors_by_id(ids[:3])
    found = index.range_search(queries, 0.9, limit=50)
    lims, _, want = flat.range_search(queries, 0.9)
    for number, hits in enumerate(found):
        expected = set(want[lims[number] : lims[number + 1]].tolist())
        assert {i for i, _ in hits} <= expected and len(hits) == min(50, len(expected))
        assert hits[0][0] == ids[number]  # itself first
    # reconstruct_many gives the catalog's vectors, not only what the live part holds
    present, vectors = index.reconstruct_many(ids[100:110])
    assert present.tolist() == ids[100:110].tolist() and np.array_equal(vectors, library.vectors_by_id(ids[100:110]))


def test_a_scanning_index_is_never_saved(library: Catalog, tmp_path: Path) -> None:
    index = scanning(library)
    index.add(np.array([10_000]), clustered(1, seed=3))
    assert index.save(tmp_path / "index.faiss") is False  # it holds one vector: the catalog has 3000
    assert not (tmp_path / "index.faiss").exists() and index.dirty


@pytest.mark.slow
def test_the_built_index_is_swapped_in_with_the_files_added_and_removed_meanwhile(
    library: Catalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(index_module, "BUILD_BLOCK", 1000)  # three blocks, a second apart
    monkeypatch.setenv("IMGD_INDEX_BUILD_DELAY", "1.0")
    index = scanning(library)
    # Committed before the build reads the catalog, given to the index only after (the engine's two steps
    # straddling the build's start): in the build and added meanwhile, it must be held once.
    straddling = clustered(1, seed=6)
    straddled = add(library, straddling, first=40_000)
    first = library.vector_ids()
    index.rebuild_if_due()
    status = index.describe()
    assert status["building"] and status["scan"]["step"] in ("reading", "clustering", "filling")

    def filled(at_least: int) -> bool:
        start = index.start_build
        return start is not None and start.filled >= at_least

    deadline = time.monotonic() + 60
    while not filled(1000) and time.monotonic() < deadline:
        time.sleep(0.02)
    # As the engine does: the catalog first, then the index. One of each kind of change in each place:
    # a block read already, a block not read yet, a vector that is new.
    fresh = clustered(5, seed=4)
    new = add(library, fresh, first=50_000)
    index.add(new, fresh, library.generation)
    index.add(straddled, straddling, library.generation)
    gone = [int(first[10]), int(first[2500])]
    dropped = library.delete_contents(list(library.contents_of(gone).values()))
    assert sorted(dropped) == sorted(gone)
    index.remove(gone, library.generation)
    assert index.scanning, "the changes must land while the index is being built"
    assert len(index) == library.count_vectors() == 3004
    assert [i for i, _ in index.search(fresh[0], 1)] == [int(new[0])]  # searchable at once, by the scan
    index._builder.join(60)  # noqa: SLF001 - the build thread, to wait for its end
    assert not index.scanning and index.kind == "ivf"
    assert index.last_build_error is None
    held = np.sort(index.ids())
    assert held.tolist() == library.vector_ids().tolist()  # each once: none lost, none twice, none removed kept
    assert index.trained_on == 3001 and len(index) == 3004
    assert [i for i, _ in index.search(fresh[2], 1)] == [int(new[2])]
    assert index.save(tmp_path / "index.faiss") is True
    loaded = VectorIndex.load_verified(tmp_path / "index.faiss", library, DIM)  # served as saved: not stale
    assert loaded.kind == "ivf" and not loaded.dirty


def test_a_closed_index_stops_its_build_and_its_scans(library: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGD_INDEX_BUILD_DELAY", "30")
    index = scanning(library)
    index.rebuild_if_due()
    builder = index._builder  # noqa: SLF001
    deadline = time.monotonic() + 60
    while index.start_build.step != "filling" and time.monotonic() < deadline:  # waiting before its first block
        time.sleep(0.02)
    index.close(wait=5.0)
    assert builder is not None and not builder.is_alive(), "a cancelled build ends at once"
    assert index.scanning and index.last_build_error is None  # nothing swapped in, nothing failed
    with pytest.raises(ImgdError, match="stopping"):
        index.search(clustered(1, seed=2)[0], 10)


def test_a_model_change_ends_the_scan(library: Catalog, tmp_path: Path) -> None:
    index = scanning(library)
    other = VectorIndex(DIM)
    other.add(np.arange(1, 4), clustered(3, seed=8))
    index.adopt(other, library)
    assert not index.scanning and len(index) == 3
    assert index.save(tmp_path / "index.faiss") is True


def test_a_small_library_or_imgd_index_builds_before_answering(library: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "index.faiss"
    path.write_bytes(b"not an index")  # damaged, as a missing file: rebuilt
    with pytest.raises(IndexFileError):
        VectorIndex.read(path)
    assert not VectorIndex.load_verified(path, library, DIM).scanning  # `imgd index`: no readers
    below = VectorIndex.load_verified(path, library, DIM, ThreadReaders(library.path), exact_limit=5000)
    assert not below.scanning and len(below) == 3000  # under the exact limit: built at once (well under a second)
