"""index: a FAISS cache of the catalog's vectors that is saved atomically and never served when it disagrees."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.store import index as index_module
from imgd.daemon.store import indexfile
from imgd.daemon.store import ivf as ivf_module
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.index import VectorIndex
from imgd.daemon.store.indexfile import MAGIC, IndexFileError

DIM = 8


def units(count: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog(tmp_path / "catalog.db")
    opened.ensure_model("tiny", DIM)
    yield opened
    opened.close()


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    """In a folder of its own, so a stray temp file would show in the listing."""
    folder = tmp_path / "index"
    folder.mkdir()
    return folder / "index.faiss"


def fill(catalog: Catalog, count: int, seed: int = 0) -> list[int]:
    """Add count contents, each with one path, in one transaction; return their ids."""
    ids = []
    with catalog.transaction():
        for n, vector in enumerate(units(count, seed)):
            content_id = catalog.add_content(f"digest-{seed}-{n}", vector, 10, 10)
            catalog.set_file(f"/p/{seed}-{n}.jpg", 1, 1, content_id)
            ids.append(content_id)
    return ids


def expected_hits(catalog: Catalog, query: np.ndarray, k: int) -> list[int]:
    """Brute force over the catalog's own vectors: what any correct index must answer."""
    ids, vectors = (np.concatenate(parts) for parts in zip(*catalog.iter_vectors(), strict=True))
    order = np.argsort(-(vectors @ query), kind="stable")[:k]
    return ids[order].tolist()


def assert_matches_catalog(index: VectorIndex, catalog: Catalog) -> None:
    assert sorted(index.ids().tolist()) == sorted(catalog.vector_ids().tolist())
    assert len(index) == catalog.count_vectors()
    assert index.generation == catalog.generation
    for query in units(5, seed=99):
        assert [cid for cid, _ in index.search(query, 4)] == expected_hits(catalog, query, 4)


@pytest.fixture
def saved(catalog: Catalog, index_path: Path) -> VectorIndex:
    """A catalog of 12 contents and an index file that matches it exactly."""
    fill(catalog, 12)
    index = VectorIndex.build(catalog, DIM)
    index.save(index_path)
    return index


# -- in memory -----------------------------------------------------------------------------------


def test_search_returns_ids_best_first_with_cosine_scores() -> None:
    vectors = units(3)
    index = VectorIndex(DIM)
    index.add(np.array([10, 42, 7]), vectors, generation=3)

    hits = index.search(vectors[1], 3)

    assert hits[0][0] == 42
    assert hits[0][1] == pytest.approx(1.0, abs=1e-3)  # vectors are held at float16 precision
    assert sorted(cid for cid, _ in hits) == [7, 10, 42]
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
    by_id = dict(hits)
    assert by_id[7] == pytest.approx(float(vectors[2] @ vectors[1]), abs=1e-3)
    assert index.generation == 3 and index.dirty


def test_k_larger_than_the_index_returns_everything_and_an_empty_index_returns_nothing() -> None:
    index = VectorIndex(DIM)
    assert index.search(units(1)[0], 5) == []
    index.add(np.array([1, 2]), units(2))
    assert len(index.search(units(1)[0], 50)) == 2


def test_removed_ids_are_never_returned() -> None:
    vectors = units(4)
    index = VectorIndex(DIM)
    index.add(np.array([1, 2, 3, 4]), vectors)

    assert index.remove([2, 4, 99], generation=5) == 2

    assert len(index) == 2 and sorted(index.ids().tolist()) == [1, 3]
    assert sorted(cid for cid, _ in index.search(vectors[1], 4)) == [1, 3]  # not 2, its own best match
    assert index.generation == 5
    np.testing.assert_array_equal(index.reconstruct(3), vectors[2].astype(np.float16).astype(np.float32))


# -- save and read -------------------------------------------------------------------------------


def test_save_then_read_round_trips_ids_vectors_and_generation(index_path: Path) -> None:
    vectors = units(5)
    index = VectorIndex(DIM)
    index.add(np.array([3, 1, 4, 15, 9]), vectors, generation=27)

    index.save(index_path)
    loaded, header = VectorIndex.read(index_path)

    assert not index.dirty and not loaded.dirty
    assert (header.generation, header.count, header.dim) == (27, 5, DIM)
    assert loaded.generation == 27
    assert sorted(loaded.ids().tolist()) == [1, 3, 4, 9, 15]
    np.testing.assert_array_equal(loaded.reconstruct(15), vectors[3].astype(np.float16).astype(np.float32))
    assert loaded.search(vectors[4], 1)[0][0] == 9
    assert os.listdir(index_path.parent) == [index_path.name]


def test_a_loaded_index_keeps_working_after_more_changes(index_path: Path) -> None:
    index = VectorIndex(DIM)
    index.add(np.array([1, 2]), units(2))
    index.save(index_path)
    loaded, _ = VectorIndex.read(index_path)
    extra = units(1, seed=5)
    loaded.add(np.array([3]), extra)
    loaded.remove([1])
    assert sorted(loaded.ids().tolist()) == [2, 3]
    assert loaded.search(extra[0], 1)[0][0] == 3


def test_a_file_without_the_imgd_header_is_refused(index_path: Path) -> None:
    index_path.write_bytes(b"not an index at all")
    with pytest.raises(IndexFileError, match="no imgd header"):
        VectorIndex.read(index_path)


# -- load_verified -------------------------------------------------------------------------------


def test_a_matching_file_is_served_as_saved(
    saved: VectorIndex, catalog: Catalog, index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rebuild(*args: object) -> VectorIndex:
        raise AssertionError("a matching index file was rebuilt")

    monkeypatch.setattr(VectorIndex, "build", classmethod(no_rebuild))
    loaded = VectorIndex.load_verified(index_path, catalog, DIM)
    assert not loaded.dirty  # nothing to save
    assert_matches_catalog(loaded, catalog)


def _missing(path: Path, catalog: Catalog) -> None:
    path.unlink()


def _truncated(path: Path, catalog: Catalog) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupted(path: Path, catalog: Catalog) -> None:
    data = bytearray(path.read_bytes())
    for offset in (-40, -200, -401):  # inside the vectors, far from the header
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _bad_magic(path: Path, catalog: Catalog) -> None:
    data = path.read_bytes()
    path.write_bytes(b"XXXXXXXX" + data[len(MAGIC) :])


def _garbled_header(path: Path, catalog: Catalog) -> None:
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 4 : len(MAGIC) + 12] = b"}}}}{{{{"
    path.write_bytes(bytes(data))


def _header_lies_about_checksum(path: Path, catalog: Catalog) -> None:
    data = path.read_bytes()
    start = len(MAGIC) + 4
    length = int.from_bytes(data[len(MAGIC) : start], "little")
    header = json.loads(data[start : start + length])
    header["sha256"] = "0" * 64
    text = json.dumps(header).encode()
    path.write_bytes(MAGIC + len(text).to_bytes(4, "little") + text + data[start + length :])


def _stale(path: Path, catalog: Catalog) -> None:
    fill(catalog, 3, seed=1)  # the catalog moved on after the save


def _stale_after_removal(path: Path, catalog: Catalog) -> None:
    with catalog.transaction():
        catalog.remove_under("/p")
        fill(catalog, 2, seed=2)
        catalog.delete_orphans()


def _other_dim(path: Path, catalog: Catalog) -> None:
    other = VectorIndex(DIM * 2)
    other.add(catalog.content_ids(), units(catalog.count_contents(), dim=DIM * 2), generation=catalog.generation)
    other.save(path)


def _right_generation_wrong_count(path: Path, catalog: Catalog) -> None:
    partial = VectorIndex(DIM)
    ids, vectors = next(catalog.iter_vectors(chunk=5))
    partial.add(ids, vectors, generation=catalog.generation)
    partial.save(path)


DAMAGE: dict[str, Callable[[Path, Catalog], None]] = {
    "missing": _missing,
    "truncated": _truncated,
    "corrupted": _corrupted,
    "bad-magic": _bad_magic,
    "garbled-header": _garbled_header,
    "wrong-checksum": _header_lies_about_checksum,
    "other-dim": _other_dim,
    "wrong-count": _right_generation_wrong_count,
}


def counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every rebuild from the catalog."""
    calls: list[int] = []
    real = VectorIndex.build.__func__

    def build(cls: type[VectorIndex], catalog: Catalog, dim: int) -> VectorIndex:
        calls.append(dim)
        return real(cls, catalog, dim)

    monkeypatch.setattr(VectorIndex, "build", classmethod(build))
    return calls


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_an_untrustworthy_file_is_rebuilt_from_the_catalog(
    saved: VectorIndex,
    catalog: Catalog,
    index_path: Path,
    damage: Callable[[Path, Catalog], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    damage(index_path, catalog)
    builds = counting_builds(monkeypatch)

    rebuilt = VectorIndex.load_verified(index_path, catalog, DIM)

    assert builds == [DIM], "rebuilt from the catalog, not patched"

    assert rebuilt.dirty  # so the caller saves the good one
    assert rebuilt.dim == DIM
    assert_matches_catalog(rebuilt, catalog)
    rebuilt.save(index_path)
    assert_matches_catalog(VectorIndex.load_verified(index_path, catalog, DIM), catalog)


@pytest.mark.parametrize("change", [_stale, _stale_after_removal], ids=["added", "removed-and-added"])
def test_an_older_save_of_the_same_catalog_is_patched_to_match_it(
    saved: VectorIndex,
    catalog: Catalog,
    index_path: Path,
    change: Callable[[Path, Catalog], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    change(index_path, catalog)  # the catalog moved on after the save (a crash before the next one)
    builds = counting_builds(monkeypatch)

    patched = VectorIndex.load_verified(index_path, catalog, DIM)

    assert builds == [], "an older save of this catalog is patched, not rebuilt"
    assert patched.dirty
    assert_matches_catalog(patched, catalog)


@pytest.mark.parametrize(
    "damage", [_truncated, _corrupted, _bad_magic, _garbled_header], ids=["truncated", "corrupted", "magic", "header"]
)
def test_read_reports_damage_as_index_file_error(
    saved: VectorIndex, catalog: Catalog, index_path: Path, damage: Callable[[Path, Catalog], None]
) -> None:
    damage(index_path, catalog)
    with pytest.raises(IndexFileError):
        VectorIndex.read(index_path)


def test_an_empty_catalog_without_a_file_gives_an_empty_index(catalog: Catalog, index_path: Path) -> None:
    index = VectorIndex.load_verified(index_path, catalog, DIM)
    assert len(index) == 0 and index.search(units(1)[0], 3) == []


def test_vectors_stored_as_float16_still_find_themselves(tmp_path: Path) -> None:
    """The catalog keeps float16 to halve its size; at CLIP's 512 dims that must not mix pictures up."""
    vectors = units(50, seed=7, dim=512)
    wide = Catalog(tmp_path / "wide.db")
    try:
        wide.ensure_model("clip-ViT-B-32", 512)
        with wide.transaction():
            ids = [wide.add_photo(f"d{n}", vector, 96, 64)[1] for n, vector in enumerate(vectors)]
        index = VectorIndex.load_verified(tmp_path / "wide.faiss", wide, 512)
        for vector_id, vector in zip(ids, vectors, strict=True):
            best, score = index.search(vector, 1)[0]
            assert best == vector_id
            assert score == pytest.approx(1.0, abs=1e-3)
    finally:
        wide.close()


# -- atomic save ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_a_failed_save_leaves_the_old_file_intact_and_no_temp_files(
    saved: VectorIndex, catalog: Catalog, index_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    before = index_path.read_bytes()
    fill(catalog, 4, seed=3)
    ids, vectors = zip(*catalog.iter_vectors(), strict=True)
    saved.add(np.concatenate(ids)[-4:], np.concatenate(vectors)[-4:], generation=catalog.generation)

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(indexfile.os, fail_at, crash)
    with pytest.raises(OSError, match="No space left"):
        saved.save(index_path)
    monkeypatch.undo()

    assert index_path.read_bytes() == before
    assert os.listdir(index_path.parent) == ["index.faiss"]
    assert saved.dirty  # still needs saving
    old, header = VectorIndex.read(index_path)
    assert header.count == 12

    saved.save(index_path)  # once the disk recovers, the next save goes through
    assert_matches_catalog(VectorIndex.load_verified(index_path, catalog, DIM), catalog)


def test_a_save_replaces_the_file_in_one_step(
    saved: VectorIndex, index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new file is complete and synced before it takes the old one's name."""
    seen: list[tuple[int, bool]] = []
    real_replace = os.replace

    def watching_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        _, header = VectorIndex.read(Path(src))  # the temp file is already whole and valid
        seen.append((header.count, Path(dst) == index_path))
        real_replace(src, dst)

    monkeypatch.setattr(indexfile.os, "replace", watching_replace)
    saved.add(np.array([1000]), units(1, seed=4))
    saved.save(index_path)
    assert seen == [(13, True)]


def test_a_save_streams_the_index_into_the_file_a_few_bytes_at_a_time(
    saved: VectorIndex, catalog: Catalog, index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: serialized to one buffer first, a save held a second copy of the index (+1.5 GB at 1.45M)."""
    monkeypatch.setattr(indexfile, "_CHUNK", 256)
    sizes: list[int] = []
    real_write = indexfile.write

    def watching_write(path: Path, dump: Callable[[Callable[[bytes], int]], dict[str, object]]) -> None:
        def counted(put: Callable[[bytes], int]) -> dict[str, object]:
            return dump(lambda chunk: sizes.append(len(chunk)) or put(chunk))

        real_write(path, counted)

    monkeypatch.setattr(indexfile, "write", watching_write)
    saved.add(np.arange(1000, 1040), units(40, seed=5))
    saved.save(index_path)
    assert sum(sizes) > 4 * 256 and max(sizes) <= 256  # many small pieces, never the whole
    loaded, header = VectorIndex.read(index_path)  # the checksum in the header covers what was streamed
    assert header.count == len(loaded) == 52


# -- the approximate (IVF) structure for large libraries -------------------------------------


def clustered(count: int, seed: int, dim: int = 32, centres: int = 60) -> np.ndarray:
    """Unit vectors around a few dozen centres: photo libraries cluster (trips, pets, documents)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    vectors = middle[rng.integers(0, centres, count)] + 0.6 * rng.standard_normal((count, dim)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


def ivf_over(vectors: np.ndarray, exact_limit: int = 2000) -> VectorIndex:
    """An index over vectors (ids 0..n-1) switched to IVF, as a one-shot save leaves it; its exact vectors
    looked up by id as the daemon looks them up in the catalog (missing ids raise KeyError there too)."""
    index = VectorIndex(vectors.shape[1])
    index.exact_vectors = lambda wanted: vectors[np.asarray(wanted)] if len(wanted) else vectors[:0]
    index.exact_limit = exact_limit
    index.add(np.arange(len(vectors)), vectors)
    index.rebuild_if_due()
    assert index.kind == "ivf"
    return index


def test_past_the_exact_limit_a_save_switches_to_ivf_that_keeps_ids_and_round_trips(index_path: Path) -> None:
    vectors = clustered(3000, seed=1)
    ids = np.arange(5, 3005, dtype=np.int64)
    index = VectorIndex(32)
    index.exact_limit = 2000
    index.add(ids, vectors, generation=7)
    assert index.kind == "exact"

    index.save(index_path)  # a one-shot `imgd index` leaves the structure the next search should use

    loaded, header = VectorIndex.read(index_path)
    assert (index.kind, loaded.kind) == ("ivf", "ivf")
    assert header.count == 3000 and header.generation == 7 and loaded.trained_on == 3000
    assert loaded.nprobe == index.nprobe and 1 <= loaded.nprobe <= loaded._index.nlist
    assert loaded.probe_margin == index.probe_margin is not None
    assert sorted(loaded.ids().tolist()) == ids.tolist()
    np.testing.assert_allclose(loaded.reconstruct(105), vectors[100], atol=0.01)  # its 8-bit code
    table = dict(zip(ids.tolist(), vectors, strict=True))  # the catalog's float16 vectors, as its owner sets them
    loaded.exact_vectors = lambda wanted: np.vstack([table[i] for i in wanted.tolist()])
    np.testing.assert_array_equal(loaded.reconstruct_many(np.array([105]))[1][0], vectors[100])
    assert loaded.search(vectors[100], 1)[0][0] == 105
    loaded.remove(ids[:10])
    assert all(hit != 5 for hit, _ in loaded.search(vectors[0], 50))
    assert len(loaded) == 2990


def test_vectors_that_do_not_cluster_keep_exact_search_past_the_exact_limit() -> None:
    """IVF over random directions probes most of its lists for its recall: no gain, so exact search stays."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    index = VectorIndex(32)
    index.exact_vectors = lambda wanted: vectors[np.asarray(wanted)] if len(wanted) else vectors[:0]
    index.exact_limit = 2000
    index.add(np.arange(3000), vectors)
    index.rebuild_if_due()
    assert index.kind == "exact" and not index.rebuild_due()  # declined once, not tried again at every add
    assert index.search(vectors[7], 1)[0][0] == 7


def test_ivf_recall_at_10_against_exact_search_is_at_least_098() -> None:
    both = clustered(20300, seed=2)
    vectors, queries = both[:20000], both[20000:]  # queries: fresh draws from the same library, not stored
    index = ivf_over(vectors, exact_limit=10000)
    assert index.nprobe < index._index.nlist  # it really skips lists
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [[hit for hit, _ in index.search(q, 10)] for q in queries]
    recall = np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.98


def test_ivf_recalls_queries_that_sit_far_from_every_vector_as_text_queries_do() -> None:
    """CLIP's text vectors sit apart from its image vectors: their neighbours spread over many lists.

    An nprobe tuned on image-like queries alone found 0.88 of these top-10s; also probing every list
    whose centroid scores near the best one finds 0.96 (benchmarks/RESULTS.md, section 7: real vectors).
    """
    vectors = clustered(5000, seed=3)
    index = ivf_over(vectors)
    rng = np.random.default_rng(11)
    gap = rng.standard_normal(32).astype(np.float32)
    queries = gap / np.linalg.norm(gap) + 0.5 * vectors[rng.choice(5000, 200)]  # one offset, as a modality gap
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert (queries @ vectors.T).max(axis=1).mean() < 0.65  # far: a stored vector's neighbours score ~0.9
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [[hit for hit, _ in index.search(q, 10)] for q in queries]
    recall = np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.9


def test_background_switch_keeps_every_change_made_while_it_was_building(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = clustered(4000, seed=4)
    building, release = threading.Event(), threading.Event()
    real_build = ivf_module.build

    def held_build(*args: object) -> object:
        building.set()
        release.wait(30)  # the live index changes while this build works on its copy
        return real_build(*args)

    monkeypatch.setattr(ivf_module, "build", held_build)
    index = VectorIndex(32)
    index.exact_limit = 2000
    index.background = True
    index.add(np.arange(1000), vectors[:1000])
    assert index._builder is None  # below the limit: nothing to build
    index.add(np.arange(1000, 2500), vectors[1000:2500])  # crosses the limit: a thread starts
    assert building.wait(30)
    index.add(np.arange(2500, 4000), vectors[2500:4000])
    index.remove(np.arange(0, 300))
    assert index.kind == "exact" and index.search(vectors[3999], 1)[0][0] == 3999  # served meanwhile
    release.set()
    index._builder.join(timeout=60)
    index.close()

    assert index.kind == "ivf" and index.dirty
    assert sorted(index.ids().tolist()) == list(range(300, 4000))
    assert index.search(vectors[3999], 1)[0][0] == 3999
    assert all(hit >= 300 for hit, _ in index.search(vectors[5], 20))


def test_ivf_answers_k_results_even_when_the_probed_lists_hold_fewer() -> None:
    vectors = clustered(3000, seed=9)
    index = ivf_over(vectors)
    assert index.nprobe * 40 < 3000  # its probed lists hold far fewer than 1000
    found = [hit for hit, _ in index.search(vectors[7], 1000)]
    truth = np.argsort(-(vectors @ vectors[7]), kind="stable")[:1000]
    assert len(found) == 1000 and len(set(found)) == 1000
    assert len(set(found) & set(truth.tolist())) >= 990  # float16 scores may swap near-ties at the edge
    assert index.nprobe == index.describe()["nprobe"]  # searching did not change the tuned value


def test_a_shrunken_library_goes_back_to_exact_search_but_not_at_the_first_deletion() -> None:
    index = ivf_over(clustered(3000, seed=5))
    index.remove(np.arange(1500))  # 1500 left: below the limit but above half of it
    assert not index.rebuild_due()
    index.remove(np.arange(1500, 2100))
    index.rebuild_if_due()
    assert index.kind == "exact" and sorted(index.ids().tolist()) == list(range(2100, 3000))


def test_closing_stops_a_background_build_and_no_later_add_starts_another(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = clustered(30000, seed=6)
    rounds = []
    second_round, closing = threading.Event(), threading.Event()
    real_kmeans = index_module.faiss.Kmeans

    def counting_kmeans(*args: object, **kwargs: object) -> object:
        rounds.append(1)
        if len(rounds) == 2:
            second_round.set()
            closing.wait(30)  # shutdown arrives mid-clustering
        return real_kmeans(*args, **kwargs)

    monkeypatch.setattr(index_module.faiss, "Kmeans", counting_kmeans)
    index = VectorIndex(32)
    index.exact_limit = 1000
    index.add(np.arange(30000), vectors)
    index.background = True
    index.rebuild_if_due()
    assert second_round.wait(30)
    closing.set()
    index.close()
    assert len(rounds) < ivf_module.KMEANS_ITERATIONS  # stopped between rounds, not at the end
    assert index.kind == "exact" and len(index) == 30000
    index.add(np.arange(30000, 30010), vectors[:10])
    assert not index._builder.is_alive() and index.kind == "exact"


def test_vectors_that_do_not_cluster_keep_exact_search_and_are_not_retried_at_every_add() -> None:
    index = VectorIndex(32)
    index.exact_limit = 2000
    index.add(np.arange(3000), units(3000, seed=7, dim=32))  # uniform on the sphere: IVF would scan it all
    index.rebuild_if_due()
    assert index.kind == "exact" and not index.rebuild_due()
    index.add(np.arange(3000, 6000), units(3000, seed=8, dim=32))
    assert index.rebuild_due()  # twice the size: worth another try


# -- catching up instead of rebuilding ---------------------------------------------------------


def test_an_older_save_of_this_catalog_is_patched_not_rebuilt(
    catalog: Catalog, index_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fill(catalog, 3000, seed=3)
    index = VectorIndex.build(catalog, DIM)
    index.exact_limit = 2000
    index.save(index_path)  # switches to IVF before saving, as `imgd index` does
    assert index.kind == "ivf"
    with catalog.transaction():  # what a daemon did after its last save, before a SIGKILL
        for n in range(0, 3000, 3):
            catalog.remove_file(f"/p/3-{n}.jpg")
        catalog.delete_orphans()
    fill(catalog, 40, seed=4)

    def no_rebuild(*args: object) -> VectorIndex:
        raise AssertionError("an older save of this catalog was rebuilt from scratch")

    monkeypatch.setattr(VectorIndex, "build", classmethod(no_rebuild))
    with caplog.at_level("INFO"):
        loaded = VectorIndex.load_verified(index_path, catalog, DIM)

    assert "brought the saved index up to date with the catalog (+40, -1000 vectors)" in caplog.text
    assert loaded.kind == "ivf" and loaded.dirty and loaded.generation == catalog.generation
    assert_matches_catalog(loaded, catalog)
    query = units(1, seed=99)[0]
    assert [i for i, _ in loaded.search(query, 5)] == expected_hits(catalog, query, 5)


@pytest.mark.parametrize("other", ["another catalog", "a newer generation"])
def test_a_stale_file_of_another_catalog_or_from_the_future_is_rebuilt(
    saved: VectorIndex, catalog: Catalog, index_path: Path, tmp_path: Path, other: str
) -> None:
    if other == "another catalog":  # ids restart in a new catalog: the same id is another picture there
        fresh = Catalog(tmp_path / "other.db")
        fresh.ensure_model("tiny", DIM)
        fill(fresh, 12, seed=5)
        fill(fresh, 1, seed=6)
        foreign = VectorIndex.build(fresh, DIM)
        fresh.close()
    else:  # e.g. catalog.db restored from a backup older than the index file: the same ids may mean
        # other pictures by now, so the file holds other vectors under the catalog's own ids (patching
        # it would keep them; only a rebuild gives the catalog's).
        foreign = VectorIndex(DIM)
        foreign.add(catalog.vector_ids(), units(catalog.count_vectors(), seed=42))
        foreign.generation = catalog.generation + 5
        foreign.catalog_id = catalog.catalog_id
    foreign.save(index_path)

    loaded = VectorIndex.load_verified(index_path, catalog, DIM)

    assert_matches_catalog(loaded, catalog)
    for content_id, vector in zip(*next(catalog.iter_vectors()), strict=True):
        np.testing.assert_array_equal(loaded.reconstruct(int(content_id)), vector)


# -- filtered search -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["exact", "ivf"])
@pytest.mark.parametrize("share", [0.5, 0.05, 0.004, 0.001])
def test_a_filtered_search_returns_the_best_allowed_vectors_and_k_whenever_k_are_allowed(
    kind: str, share: float
) -> None:
    vectors = units(4000, seed=3)
    ids = np.arange(1, 4001, dtype=np.int64)
    index = VectorIndex(DIM)
    index.add(ids, vectors)
    if kind == "ivf":
        index.exact_limit = 1000
        index.rebuild_if_due()
        assert index.kind == "ivf"
        # 8-bit codes find the candidates; the catalog's float16 vectors score them, as in the daemon
        index.exact_vectors = lambda wanted: vectors[np.asarray(wanted) - 1].astype(np.float16).astype(np.float32)
    rng = np.random.default_rng(7)
    allowed = np.sort(rng.choice(ids, size=int(4000 * share), replace=False))
    for query in units(5, seed=11):
        hits = index.search(query, 10, allowed)
        stored = vectors.astype(np.float16).astype(np.float32)  # the index keeps the catalog's precision
        truth = allowed[np.argsort(-(stored[allowed - 1] @ query))[:10]]
        assert len(hits) == min(10, len(allowed))
        assert {i for i, _ in hits} <= set(allowed.tolist())
        recall = len({i for i, _ in hits} & set(truth.tolist())) / len(truth)
        assert recall >= (1.0 if kind == "exact" or len(allowed) <= index_module.EXACT_SELECTION else 0.8)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_a_filter_naming_ids_the_index_lacks_answers_with_those_it_has() -> None:
    index = VectorIndex(DIM)
    index.add(np.arange(1, 11, dtype=np.int64), units(10))
    hits = index.search(units(1, seed=5)[0], 5, np.array([2, 4, 999], dtype=np.int64))
    assert sorted(i for i, _ in hits) == [2, 4]
    assert index.search(units(1, seed=5)[0], 5, np.array([], dtype=np.int64)) == []


def test_a_bounded_close_leaves_a_build_stuck_in_one_round_and_it_swaps_nothing_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 21: one k-means round over 1M vectors outlasts a SIGTERM's 2 s; the daemon's close waits at most
    a second, and the build, cancelled, ends with the process or returns to find it must swap nothing."""
    vectors = clustered(3000, seed=6)
    in_round, finish = threading.Event(), threading.Event()
    real_kmeans = index_module.faiss.Kmeans

    def long_round(*args: object, **kwargs: object) -> object:
        in_round.set()
        finish.wait(30)  # one FAISS call that checks nothing
        return real_kmeans(*args, **kwargs)

    monkeypatch.setattr(index_module.faiss, "Kmeans", long_round)
    index = VectorIndex(32)
    index.exact_limit = 1000
    index.add(np.arange(3000), vectors)
    index.background = True
    index.rebuild_if_due()
    builder = index._builder
    assert in_round.wait(30)
    started = time.monotonic()
    index.close(wait=0.3)
    index.close()  # the library's own close after the daemon's: nothing left to wait for
    assert time.monotonic() - started < 5.0 and builder.is_alive()
    finish.set()
    builder.join(30)
    assert index.kind == "exact" and len(index) == 3000


# -- memory at a million (issue 21): 8-bit lists re-scored from the catalog, built from a sample ------------


def test_an_older_float16_ivf_file_is_rebuilt_not_misread(
    saved: VectorIndex, catalog: Catalog, index_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file of the last format (IMGDIDX1) holding a float16 IVF: read as today's 8-bit lists it would
    decode to other vectors; it is rebuilt from the catalog instead. (An exact one of that format is served:
    test_kept_catalogs.)"""
    ids, vectors = (np.concatenate(parts) for parts in zip(*catalog.iter_vectors(), strict=True))
    quantizer = index_module.faiss.IndexFlatIP(DIM)
    faiss = index_module.faiss
    old = faiss.IndexIVFScalarQuantizer(quantizer, DIM, 2, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    old.by_residual = False
    old.train(vectors)
    old.set_direct_map_type(faiss.DirectMap.Hashtable)
    old.add_with_ids(vectors, ids)
    payload = faiss.serialize_index(old)
    header = {"generation": catalog.generation, "count": len(ids), "dim": DIM, "trained_on": len(ids)}
    header.update(probe_margin=0.1, catalog_id=catalog.catalog_id, sha256=hashlib.sha256(payload).hexdigest())
    text = json.dumps(header).encode()
    index_path.write_bytes(b"IMGDIDX1" + len(text).to_bytes(4, "little") + text + payload.tobytes())

    with caplog.at_level(logging.INFO, logger="imgd.daemon.store.index"):
        loaded = VectorIndex.load_verified(index_path, catalog, DIM)

    assert "older approximate index" in caplog.text
    assert loaded.kind == "exact" and loaded.dirty
    assert_matches_catalog(loaded, catalog)


@pytest.mark.slow
def test_a_large_catalog_builds_its_ivf_from_a_sample_block_by_block_and_rescores_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the exact limit the index is built as IVF at once, streamed from the catalog (never an exact
    float32 copy of every vector first), clustered on a sample; its answers carry the exact float16 scores
    and find >= 98% of the exact top 10."""
    dim, count = 32, 50_000
    both = clustered(count + 200, seed=8, dim=dim, centres=300)
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.ensure_model("tiny", dim)
    with catalog.transaction():  # rows as add_content writes them, in two statements: 50k calls take seconds
        catalog.conn.executemany(
            "INSERT INTO contents(id, hash, width, height) VALUES (?, ?, 10, 10)", ((n, f"d{n}") for n in range(count))
        )
        catalog.conn.executemany(
            "INSERT INTO vectors(content_id, at, vector) VALUES (?, 0, ?)",
            ((n, vector.astype(np.float16).tobytes()) for n, vector in enumerate(both[:count])),
        )
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 40_000)
    trained: list[int] = []
    real_kmeans = index_module.faiss.Kmeans

    def spying(*args: object, **kwargs: object) -> object:
        kmeans = real_kmeans(*args, **kwargs)
        train = kmeans.train
        kmeans.train = lambda points, *more, **named: (trained.append(len(points)), train(points, *more, **named))[1]
        return kmeans

    monkeypatch.setattr(index_module.faiss, "Kmeans", spying)

    index = VectorIndex.build(catalog, dim)

    assert index.kind == "ivf" and index.trained_on == count
    assert trained and max(trained) <= ivf_module.SAMPLE_PER_LIST * index._index.nlist < count
    ids, stored = (np.concatenate(parts) for parts in zip(*catalog.iter_vectors(), strict=True))
    row = {int(vector_id): n for n, vector_id in enumerate(ids)}
    hits_total = 0
    for query in both[count:]:
        exact = stored @ query
        hits = index.search(query, 10)
        assert [score for _, score in hits] == pytest.approx([float(exact[row[i]]) for i, _ in hits], abs=1e-5)
        hits_total += len({i for i, _ in hits} & set(ids[np.argsort(-exact)[:10]].tolist()))
    assert hits_total / (10 * 200) >= 0.98
    catalog.close()


def test_the_index_build_and_the_duplicates_pass_never_cluster_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each k-means holds its sample and distance buffers: two at once were seen at 8 GB at 1M (issue 21)."""
    active, most, lock = [0], [0], threading.Lock()
    real_kmeans = index_module.faiss.Kmeans

    def counting(*args: object, **kwargs: object) -> object:
        kmeans = real_kmeans(*args, **kwargs)
        train = kmeans.train

        def tracked(*more: object, **named: object) -> object:
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.05)  # long enough for the other thread to arrive
            try:
                return train(*more, **named)
            finally:
                with lock:
                    active[0] -= 1

        kmeans.train = tracked
        return kmeans

    monkeypatch.setattr(index_module.faiss, "Kmeans", counting)
    index = VectorIndex(32)
    index.exact_limit = 1000
    index.add(np.arange(3000), clustered(3000, seed=9))
    index.background = True
    index.rebuild_if_due()  # the index build, in its thread ...
    points = clustered(4000, seed=10)
    for _ in range(6):  # ... while the duplicates pass clusters its blocks (search/pairs.py)
        ivf_module.train_centroids(points, 50, iterations=2, seed=1, max_points_per_centroid=80)
    index._builder.join(60)
    assert index.kind == "ivf" and most[0] == 1
