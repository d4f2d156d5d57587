"""The duplicates pass kept in the catalog (issue 21): bounded memory, resumed after a stop or a SIGKILL."""

from __future__ import annotations

import shutil
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from daemonkit import DaemonProcess, wait_until
from imgd.daemon.search import pairpass
from imgd.daemon.search import pairs as pairs_module
from imgd.daemon.search.pairs import library_pairs
from imgd.daemon.service.dupetracker import DupeTracker
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.dupepass import PassRows
from imgd.daemon.store.index import VectorIndex
from test_dupes import encoded, original, planted

FLOOR = 0.97


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray]:
    """A catalog of 3,000 clustered vectors, 150 of them near copies; the pass blocks past 500 vectors."""
    monkeypatch.setenv("IMGD_PAIRS_EXACT_LIMIT", "500")
    monkeypatch.setattr(pairs_module, "PAIRS_EXACT_LIMIT", 500)  # the direct path, blocked alike
    monkeypatch.setattr(pairpass, "GROUP_VECTORS", 1500)
    vectors, _ = planted(3000, 150)
    path = tmp_path / "state" / "catalog.db"
    catalog = Catalog(path)
    catalog.ensure_model("tiny", vectors.shape[1])
    with catalog.transaction():
        for n, vector in enumerate(vectors):
            catalog.set_file(f"/p/{n}.jpg", 1, 1, catalog.add_content(f"digest-{n}", vector.astype(np.float32), 10, 10))
    catalog.close()
    return path, vectors


def stored_pairs(path: Path) -> list[tuple[int, int, float]]:
    rows = PassRows(path)
    try:
        return list(zip(*(part.tolist() for part in rows.pairs()), strict=True))
    finally:
        rows.close()


def test_the_kept_pass_finds_what_the_whole_library_join_finds(library: tuple[Path, np.ndarray]) -> None:
    path, vectors = library
    rows = PassRows(path)
    assert pairpass.run_pass(rows, "k", FLOOR, lambda: False)
    ids = rows.vector_ids()
    rows.close()
    assert sorted(stored_pairs(path)) == sorted(library_pairs(ids, vectors, FLOOR))


def test_a_stopped_pass_resumes_at_its_group_and_ends_with_the_same_pairs(
    library: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, vectors = library
    whole = tmp_path / "whole.db"
    shutil.copy(path, whole)
    rows = PassRows(whole)
    assert pairpass.run_pass(rows, "k", FLOOR, lambda: False)
    rows.close()

    rows = PassRows(path)
    spans = pairpass.groups(pairpass.make_plan(rows, rows.vector_ids()))
    assert len(spans) >= 6
    assert not pairpass.run_pass(rows, "k", FLOOR, lambda: _progress(path) >= 3)  # stopped after three groups
    state = rows.state("k")
    assert state is not None and 1 <= state["next"] < len(spans) and not state["finished"]
    done = stored_pairs(path)
    assert done, "the groups done kept their pairs"
    # Resumed: the groups done are not done again (their pairs stay as stored), the rest are.
    seen: list[int] = []
    real = pairpass.group_pairs

    def counted(*args: object, **kw: object) -> object:
        seen.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    pairpass.group_pairs = counted  # type: ignore[assignment]
    try:
        assert pairpass.run_pass(rows, "k", FLOOR, lambda: False)
    finally:
        pairpass.group_pairs = real  # type: ignore[assignment]
    assert len(seen) == len(spans) - int(state["next"])  # type: ignore[call-overload]
    rows.close()
    assert set(done) <= set(stored_pairs(path))
    assert sorted(stored_pairs(path)) == sorted(stored_pairs(whole))
    catalog = Catalog(path, readonly=True)
    ids = catalog.vector_ids()
    catalog.close()
    assert sorted(stored_pairs(path)) == sorted(library_pairs(ids, vectors, FLOOR))


def test_a_restart_reads_the_kept_pairs_and_searches_only_what_was_added(library: tuple[Path, np.ndarray]) -> None:
    path, vectors = library
    catalog = Catalog(path, readonly=True)
    index = VectorIndex.build(catalog, vectors.shape[1])
    catalog.close()
    first = DupeTracker(index, lambda: (np.empty(0), np.empty((0, 32))), FLOOR, catalog_path=path)
    first.build()
    assert first.pair_count() > 100
    catalog = Catalog(path)
    with catalog.transaction():  # a near copy of vector 1 arrives while the daemon is down
        added = catalog.add_content("digest-new", vectors[0].astype(np.float32), 10, 10)
        catalog.set_file("/p/new.jpg", 1, 1, added)
    first_id, new_id = int(catalog.vector_ids().min()), int(catalog.vector_ids().max())
    catalog.close()
    index.add(np.array([new_id]), vectors[:1].astype(np.float32))
    again = DupeTracker(
        index, lambda: pytest.fail("the library's vectors are not read again"), FLOOR, catalog_path=path
    )
    again.build()
    pairs = again.pairs(FLOOR)
    assert (first_id, new_id) in {(a, b) for a, b, _ in pairs}  # the copy's pair, found by its own search
    assert sorted(p[:2] for p in pairs if new_id not in p[:2]) == sorted(p[:2] for p in first.pairs(FLOOR))


# -- the daemon: a SIGKILL mid-pass, then a restart that resumes it -----------------------------------


def _progress(catalog: Path) -> int:
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM dupe_pass WHERE name = 'next'").fetchone()
        return int(row[0]) if row and row[0] is not None else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
def test_a_pass_killed_midway_resumes_after_a_restart_with_the_same_pairs(tmp_path: Path, tiny_model: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(60):
        picture = original(n)
        (photos / f"{n}.jpg").write_bytes(encoded(picture, "JPEG", quality=92))
        if n % 3 == 0:
            (photos / f"{n}-small.jpg").write_bytes(encoded(picture.resize((240, 160)), "JPEG", quality=92))
    env = {"IMGD_PAIRS_EXACT_LIMIT": "20", "IMGD_DUPES_THRESHOLD": "0.9"}
    copies = {}
    for name in ("whole", "killed"):
        copies[name] = tmp_path / name
        copies[name].mkdir()
    # Both daemons begin from the same catalog: indexed once, then copied.
    with DaemonProcess(copies["whole"], tiny_model, [photos], **env) as daemon:
        daemon.start()
        daemon.wait_idle()
        wait_until(lambda: daemon.status(duplicates=True)["dupes"].get("groups") is not None, what="first pass")
        daemon.stop()
    shutil.rmtree(copies["killed"])
    shutil.copytree(copies["whole"], copies["killed"])
    for folder in copies.values():  # the pass forgotten: both start it over from the same vectors
        conn = sqlite3.connect(next(folder.rglob("catalog.db")))
        conn.execute("DELETE FROM dupe_pass")
        conn.execute("DELETE FROM dupe_pairs")
        conn.commit()
        conn.close()

    def pairs_of(folder: Path) -> list[tuple[int, int, float]]:
        return sorted(stored_pairs(next(folder.rglob("catalog.db"))))

    with DaemonProcess(copies["whole"], tiny_model, [photos], **env) as daemon:
        daemon.start()
        wait_until(lambda: daemon.status(duplicates=True)["dupes"].get("groups") is not None, what="whole pass")
    whole = pairs_of(copies["whole"])
    assert whole

    catalog = next(copies["killed"].rglob("catalog.db"))
    with DaemonProcess(copies["killed"], tiny_model, [photos], IMGD_DUPES_GROUP_DELAY="0.4", **env) as daemon:
        daemon.start()
        wait_until(lambda: _progress(catalog) >= 3, timeout=60, what="three groups of the pass stored")
        daemon.send(signal.SIGKILL)
    stopped_at = _progress(catalog)
    with DaemonProcess(copies["killed"], tiny_model, [photos], **env) as daemon:
        daemon.start()
        wait_until(lambda: daemon.status(duplicates=True)["dupes"].get("groups") is not None, what="resumed pass")
        assert f"resuming the pass at group {stopped_at + 1} of" in daemon.log()
    assert pairs_of(copies["killed"]) == whole
