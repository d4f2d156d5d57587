"""catalog: the SQLite source of truth for paths and vectors, safe to read while it is written."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.errors import CatalogError, ModelMismatch
from imgd.daemon.store.catalog import APPLICATION_ID, RECOVERY_HINT, SCHEMA_VERSION, Catalog

DIM = 8


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "catalog.db"


@pytest.fixture
def catalog(db_path: Path) -> Iterator[Catalog]:
    opened = Catalog(db_path)
    opened.ensure_model("tiny", DIM)
    yield opened
    opened.close()


@pytest.fixture
def reader(catalog: Catalog) -> Iterator[Catalog]:
    opened = Catalog(catalog.path, readonly=True)
    yield opened
    opened.close()


def add(catalog: Catalog, seed: int, *paths: str) -> int:
    """One content with a vector, pointed at by each of paths."""
    with catalog.transaction():
        content_id = catalog.add_content(f"digest-{seed}", unit(seed), 96, 64)
        for path in paths:
            catalog.set_file(path, size=100 + seed, mtime_ns=seed, content_id=content_id)
    return content_id


def paths(catalog: Catalog) -> list[str]:
    return [record.path for record in catalog.all_files()]


# -- opening -------------------------------------------------------------------------------------


def test_a_new_catalog_gets_the_schema_and_wal_mode(catalog: Catalog, db_path: Path) -> None:
    assert db_path.exists()
    other = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "contents", "files"} <= tables
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        other.close()
    assert catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert catalog.generation == 0
    assert catalog.counts() == {"files": 0, "failed": 0, "missing": 0, "contents": 0}


def test_reopening_keeps_what_was_written(db_path: Path) -> None:
    first = Catalog(db_path)
    first.ensure_model("tiny", DIM)
    content_id = add(first, 1, "/photos/a.jpg")
    first.close()
    again = Catalog(db_path)
    try:
        assert again.model_info() == ("tiny", DIM)
        assert again.get_file("/photos/a.jpg").content_id == content_id
    finally:
        again.close()


def test_a_folder_with_uri_characters_in_its_name_holds_the_catalog(tmp_path: Path) -> None:
    """SQLite URIs treat '?', '#' and '%' specially; the catalog must still land at exactly this path."""
    path = tmp_path / "sync #1?%41 100%" / "catalog.db"
    catalog = Catalog(path)
    try:
        catalog.ensure_model("tiny", DIM)
        add(catalog, 1, "/photos/a.jpg")
    finally:
        catalog.close()
    assert path.exists()
    assert os.listdir(tmp_path) == [path.parent.name]
    reader = Catalog(path, readonly=True)
    try:
        assert reader.counts()["files"] == 1
    finally:
        reader.close()


def test_a_foreign_sqlite_file_is_refused_and_left_alone(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    foreign = sqlite3.connect(db_path)
    foreign.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    foreign.commit()
    foreign.close()

    for readonly in (False, True):
        with pytest.raises(CatalogError, match="not an imgd catalog") as caught:
            Catalog(db_path, readonly=readonly)
        assert str(db_path) in str(caught.value)

    check = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        check.close()
    assert tables == {"moz_places"}


def test_random_bytes_are_refused_with_the_recovery_hint(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    junk = np.random.default_rng(0).bytes(8192)
    db_path.write_bytes(junk)
    for readonly in (False, True):
        with pytest.raises(CatalogError) as caught:
            Catalog(db_path, readonly=readonly)
        assert RECOVERY_HINT in str(caught.value)
        assert "imgd index --rebuild" in str(caught.value)
    assert db_path.read_bytes() == junk


def test_a_catalog_from_a_newer_imgd_is_refused(catalog: Catalog, db_path: Path) -> None:
    with catalog.transaction():
        catalog.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    catalog.close()
    with pytest.raises(CatalogError, match="newer imgd"):
        Catalog(db_path)


def test_readonly_open_of_a_missing_catalog_fails_without_creating_it(db_path: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog yet"):
        Catalog(db_path, readonly=True)
    assert not db_path.exists()


# -- contents and files --------------------------------------------------------------------------


def test_content_and_file_round_trip(catalog: Catalog) -> None:
    vector = unit(7)
    with catalog.transaction():
        content_id = catalog.add_content("abc123", vector, 640, 480)
        catalog.set_file("/photos/a.jpg", size=1234, mtime_ns=99, content_id=content_id)

    record = catalog.get_file("/photos/a.jpg")
    assert record is not None
    assert (record.path, record.size, record.mtime_ns) == ("/photos/a.jpg", 1234, 99)
    assert (record.content_id, record.status, record.error) == (content_id, "ok", None)
    assert catalog.content_id("abc123") == content_id
    assert catalog.content_id("other") is None
    np.testing.assert_allclose(catalog.vector(content_id), vector, atol=1e-3)  # stored as float16
    assert catalog.paths_for([content_id]) == {content_id: ["/photos/a.jpg"]}
    assert catalog.get_file("/photos/b.jpg") is None


def test_identical_copies_share_one_content(catalog: Catalog) -> None:
    content_id = add(catalog, 1, "/p/b.jpg", "/p/a.jpg")
    assert catalog.count_contents() == 1
    assert catalog.paths_for([content_id]) == {content_id: ["/p/a.jpg", "/p/b.jpg"]}


def test_failed_and_missing_files_are_never_search_results(catalog: Catalog) -> None:
    content_id = add(catalog, 1, "/p/ok.jpg", "/gone/a.jpg")
    with catalog.transaction():
        catalog.set_failed("/p/bad.jpg", 10, 1, "cannot decode")
        catalog.mark_missing_under("/gone", now=1000.0)
    assert catalog.paths_for([content_id]) == {content_id: ["/p/ok.jpg"]}
    assert [(r.path, r.error) for r in catalog.failed_files()] == [("/p/bad.jpg", "cannot decode")]
    assert catalog.counts() == {"files": 1, "failed": 1, "missing": 1, "contents": 1}

    with catalog.transaction():
        assert catalog.restore_missing_under("/gone") == 1
    assert catalog.paths_for([content_id]) == {content_id: ["/gone/a.jpg", "/p/ok.jpg"]}


@pytest.mark.parametrize(
    "path",
    [
        os.fsdecode(b"/photos/\xff\xfe.jpg"),
        "/photos/line\nbreak.jpg",
        "/photos/caf\u00e9 \U0001f408\u200d\u2b1b.jpg",
        "/photos/tab\tand\rreturn.jpg",
    ],
    ids=["non-utf8", "newline", "emoji", "control"],
)
def test_any_file_name_round_trips(catalog: Catalog, db_path: Path, path: str) -> None:
    content_id = add(catalog, 1, path)
    assert catalog.get_file(path).content_id == content_id
    assert paths(catalog) == [path]
    assert [r.path for r in catalog.files_under("/photos")] == [path]
    assert catalog.paths_for([content_id]) == {content_id: [path]}
    reopened = Catalog(db_path, readonly=True)
    try:
        assert paths(reopened) == [path]
        assert os.fsencode(paths(reopened)[0]) == os.fsencode(path)
    finally:
        reopened.close()


def test_files_under_means_inside_the_folder_not_sharing_a_prefix(catalog: Catalog) -> None:
    inside = ["/a/b/x.jpg", "/a/b/c/y.jpg", os.fsdecode(b"/a/b/\xff.jpg")]
    outside = ["/a/bc/x.jpg", "/a/b.jpg", "/a/b-1/x.jpg", "/a/b.d/x.jpg", "/a/b0/x.jpg", "/a/x.jpg", "/b/x.jpg"]
    for seed, path in enumerate(inside + outside):
        add(catalog, seed, path)
    assert sorted(r.path for r in catalog.files_under("/a/b")) == sorted(inside)
    assert sorted(r.path for r in catalog.files_under("/a/b/")) == sorted(inside)
    assert len(list(catalog.files_under("/"))) == len(inside + outside)


def test_remove_under_removes_only_that_folder(catalog: Catalog) -> None:
    for seed, path in enumerate(["/a/b/x.jpg", "/a/b/c/y.jpg", "/a/bc/x.jpg"]):
        add(catalog, seed, path)
    with catalog.transaction():
        assert catalog.remove_under("/a/b") == 2
    assert paths(catalog) == ["/a/bc/x.jpg"]


def test_move_under_rewrites_only_that_subtree_and_keeps_contents(catalog: Catalog) -> None:
    ids = {path: add(catalog, seed, path) for seed, path in enumerate(["/a/b/x.jpg", "/a/b/c/y.jpg", "/a/bc/x.jpg"])}
    generation = catalog.generation

    with catalog.transaction():
        assert catalog.move_under("/a/b", "/z/q") == 2

    assert paths(catalog) == ["/a/bc/x.jpg", "/z/q/c/y.jpg", "/z/q/x.jpg"]
    assert catalog.get_file("/z/q/x.jpg").content_id == ids["/a/b/x.jpg"]
    assert catalog.get_file("/z/q/c/y.jpg").content_id == ids["/a/b/c/y.jpg"]
    assert catalog.get_file("/a/bc/x.jpg").content_id == ids["/a/bc/x.jpg"]
    assert catalog.count_contents() == 3
    assert catalog.generation == generation  # no vector changed, so the index need not be rebuilt


def test_move_file_replaces_what_was_at_the_destination(catalog: Catalog) -> None:
    moved = add(catalog, 1, "/p/new.jpg")
    add(catalog, 2, "/p/old.jpg")
    with catalog.transaction():
        assert catalog.move_file("/p/new.jpg", "/p/old.jpg")
    assert paths(catalog) == ["/p/old.jpg"]
    assert catalog.get_file("/p/old.jpg").content_id == moved


def test_delete_orphans_returns_the_vectors_of_the_contents_no_path_points_at(catalog: Catalog) -> None:
    kept = add(catalog, 1, "/p/a.jpg", "/p/copy.jpg")
    orphan = add(catalog, 2, "/p/b.jpg")
    also_orphan = add(catalog, 3, "/p/c.jpg")
    with catalog.transaction():
        catalog.remove_file("/p/b.jpg")
        catalog.remove_file("/p/copy.jpg")
        catalog.set_failed("/p/c.jpg", 1, 1, "cannot decode")  # its new bytes failed: old content unused

    their_vectors = catalog.vector_ids_of([orphan, also_orphan]).tolist()
    assert len(their_vectors) == 2 and not set(their_vectors) & {orphan, also_orphan}  # ids of another kind
    with catalog.transaction():
        assert sorted(catalog.delete_orphans()) == their_vectors  # what the index must drop
    assert catalog.content_ids().tolist() == [kept]
    assert catalog.vector_ids().tolist() == catalog.vector_ids_of([kept]).tolist()
    with catalog.transaction():
        assert catalog.delete_orphans() == []


def test_generation_moves_with_every_content_change_and_only_then(catalog: Catalog) -> None:
    seen = [catalog.generation]
    content_id = add(catalog, 1, "/p/a.jpg")
    seen.append(catalog.generation)
    with catalog.transaction():
        catalog.set_file("/p/copy.jpg", 1, 1, content_id)
        catalog.set_failed("/p/bad.jpg", 1, 1, "cannot decode")
    assert catalog.generation == seen[-1]
    with catalog.transaction():
        catalog.remove_file("/p/a.jpg")
        catalog.remove_file("/p/copy.jpg")
        catalog.delete_orphans()
    seen.append(catalog.generation)
    assert seen == sorted(set(seen)), seen


def test_iter_vectors_yields_every_vector_in_id_order_in_chunks(catalog: Catalog) -> None:
    ids = [add(catalog, seed, f"/p/{seed}.jpg") for seed in range(5)]
    chunks = list(catalog.iter_vectors(chunk=2))
    assert [len(chunk_ids) for chunk_ids, _ in chunks] == [2, 2, 1]
    all_ids = np.concatenate([chunk_ids for chunk_ids, _ in chunks])
    vectors = np.concatenate([chunk_vectors for _, chunk_vectors in chunks])
    assert all_ids.tolist() == catalog.vector_ids_of(ids).tolist()  # vector ids, in the contents' order
    assert catalog.contents_of(all_ids) == dict(zip(all_ids.tolist(), ids, strict=True))
    assert vectors.dtype == np.float32 and vectors.shape == (5, DIM)
    np.testing.assert_allclose(vectors, np.stack([unit(seed) for seed in range(5)]), atol=1e-3)


# -- the model -----------------------------------------------------------------------------------


def test_a_different_model_is_refused_with_the_reembed_hint(catalog: Catalog) -> None:
    content_id = add(catalog, 1, "/p/a.jpg")
    with pytest.raises(ModelMismatch) as caught:
        catalog.ensure_model("bigger", 16)
    message = str(caught.value)
    assert "imgd index --reembed" in message
    assert "'tiny'" in message and "'bigger'" in message
    assert catalog.model_info() == ("tiny", DIM)
    assert catalog.get_file("/p/a.jpg").content_id == content_id
    catalog.ensure_model("tiny", DIM)  # the right model is still welcome


def test_reembed_forgets_vectors_but_keeps_paths(catalog: Catalog) -> None:
    add(catalog, 1, "/p/a.jpg", "/p/b.jpg")
    generation = catalog.generation

    catalog.ensure_model("bigger", 16, reembed=True)

    assert catalog.model_info() == ("bigger", 16)
    assert catalog.count_contents() == 0
    assert paths(catalog) == ["/p/a.jpg", "/p/b.jpg"]
    record = catalog.get_file("/p/a.jpg")
    assert record.content_id is None
    assert (record.size, record.mtime_ns) == (-1, -1)  # never matches a stat, so the next scan re-embeds it
    assert catalog.generation > generation


def test_an_empty_catalog_can_switch_models_freely(catalog: Catalog) -> None:
    catalog.ensure_model("bigger", 16)
    assert catalog.model_info() == ("bigger", 16)


# -- concurrency ---------------------------------------------------------------------------------


def test_a_reader_never_sees_a_half_committed_transaction(catalog: Catalog, reader: Catalog) -> None:
    with catalog.transaction():
        content_id = catalog.add_content("d1", unit(1), 1, 1)
        catalog.set_file("/p/a.jpg", 1, 1, content_id)
        catalog.set_file("/p/b.jpg", 1, 1, content_id)
        assert catalog.count_contents() == 1  # the writer sees its own work
        assert reader.count_contents() == 0
        assert reader.get_file("/p/a.jpg") is None
        assert reader.generation == 0
    assert reader.count_contents() == 1
    assert [r.path for r in reader.all_files()] == ["/p/a.jpg", "/p/b.jpg"]
    assert reader.generation == catalog.generation


def test_a_failed_transaction_leaves_nothing_behind(catalog: Catalog, reader: Catalog) -> None:
    with pytest.raises(RuntimeError), catalog.transaction():
        content_id = catalog.add_content("d1", unit(1), 1, 1)
        catalog.set_file("/p/a.jpg", 1, 1, content_id)
        raise RuntimeError("crash in the middle")
    assert catalog.count_contents() == 0 and paths(catalog) == []
    assert reader.count_contents() == 0
    assert catalog.generation == 0


def test_a_snapshot_sees_one_state_while_a_writer_commits(catalog: Catalog, reader: Catalog) -> None:
    add(catalog, 1, "/p/a.jpg")
    with reader.snapshot():
        before = reader.count_contents()
        add(catalog, 2, "/p/b.jpg")
        assert reader.count_contents() == before == 1
        assert reader.get_file("/p/b.jpg") is None
    assert reader.count_contents() == 2


def test_looking_up_the_paths_of_a_few_results_does_not_walk_the_whole_library(
    catalog: Catalog, reader: Catalog
) -> None:
    # The status index made SQLite scan every 'ok' row for each search: 32 ms at 100k files, ~0.3 s at 1M.
    with catalog.transaction():
        for n in range(20000):
            content_id = catalog.add_content(f"bulk-{n}", unit(n % 50), 1, 1)
            catalog.set_file(f"/lib/{n:06d}.jpg", 1, 1, content_id)
    wanted = [1, 500, 19999]
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    reader.conn.set_progress_handler(count, 100)  # called every 100 SQLite VM instructions
    found = reader.paths_for(wanted)
    reader.conn.set_progress_handler(None, 0)

    assert found == {1: ["/lib/000000.jpg"], 500: ["/lib/000499.jpg"], 19999: ["/lib/019998.jpg"]}
    assert steps < 20, f"{steps * 100} SQLite instructions for 3 lookups: the query scans the table"
