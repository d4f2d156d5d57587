"""The start-up reconcile over unchanged files: stat only, a fixed number of SQLite queries, and stoppable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.ingest import imaging
from imgd.daemon.ingest.pool import Stopped
from imgd.daemon.ingest.scanner import PathFilter, scan
from imgd.daemon.service.library import Library, open_library
from imgd.daemon.store.records import ImageMeta


@pytest.fixture
def library(make_config, embedder):
    lib = open_library(make_config(), embedder)
    yield lib
    lib.close()


def known_files(lib: Library, root: Path, first: int, count: int) -> None:
    """Files the catalog already holds as they are on disk (tiny bytes, never read: they are unchanged)."""
    rng = np.random.default_rng(first)
    catalog = lib.catalog
    with catalog.transaction():
        for n in range(first, first + count):
            path = root / f"d{n // 100}" / f"{n}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = n.to_bytes(8, "little")
            path.write_bytes(data)
            vector = rng.standard_normal(catalog.model_info()[1]).astype(np.float32)  # type: ignore[index]
            content = catalog.add_content(
                imaging.digest_bytes(data), vector / np.linalg.norm(vector), 8, 8, ImageMeta("jpeg", 8, 8)
            )
            info = path.stat()
            catalog.set_file(str(path), info.st_size, info.st_mtime_ns, content)


def reconcile_queries(lib: Library, root: Path) -> tuple[int, int]:
    """(statements SQLite ran, files found unchanged) for one reconcile of root."""
    statements: list[str] = []
    lib.catalog.conn.set_trace_callback(statements.append)
    try:
        summary = lib.engine.reconcile([root])
    finally:
        lib.catalog.conn.set_trace_callback(None)
    return len(statements), summary.unchanged


def test_reconciling_unchanged_files_costs_the_same_queries_for_200_or_600(library, tmp_path):
    root = tmp_path / "pics"
    known_files(library, root, 0, 200)
    small, unchanged = reconcile_queries(library, root)
    assert unchanged == 200
    known_files(library, root, 200, 400)
    large, unchanged = reconcile_queries(library, root)
    assert unchanged == 600
    # One read of the folder's rows and a few bookkeeping writes, whatever the size: no query per file.
    assert large == small, f"{small} statements for 200 files, {large} for 600"
    assert large < 40


def test_reconcile_logs_one_unchanged_line_at_detail_and_each_file_only_at_debug(library, tmp_path, caplog):
    root = tmp_path / "pics"
    known_files(library, root, 0, 150)
    with caplog.at_level(15, logger="imgd"):
        library.engine.reconcile([root])
    lines = [r.getMessage() for r in caplog.records if "unchanged" in r.getMessage()]
    assert lines == [f"unchanged files under {root}: 150"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="imgd"):
        library.engine.reconcile([root])
    assert len([r for r in caplog.records if r.getMessage().startswith("unchanged: ")]) == 150


def test_the_walk_asks_the_stop_flag_before_each_folder(tmp_path):
    for n in range(5):
        (tmp_path / f"d{n}").mkdir()
        (tmp_path / f"d{n}" / "a.jpg").write_bytes(b"x")
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Stopped):  # not an early end: a walk cut short would read as files deleted
        list(scan(str(tmp_path), PathFilter(()), should_stop=should_stop))
    assert len(asked) == 4
    assert len(list(scan(str(tmp_path), PathFilter(())))) == 5


def test_a_stopped_reconcile_removes_nothing(make_config, embedder, tmp_path):
    stop = False
    lib = open_library(make_config(), embedder, should_stop=lambda: stop)
    try:
        root = tmp_path / "pics"
        known_files(lib, root, 0, 300)
        stop = True
        with pytest.raises(Stopped):
            lib.engine.reconcile([root])
        assert lib.catalog.counts()["files"] == 300
    finally:
        lib.close()


def test_reconcile_compares_size_and_mtime_and_keeps_failed_rows_as_they_are(library, tmp_path):
    root = tmp_path / "pics"
    known_files(library, root, 0, 3)
    touched = root / "d0" / "1.jpg"
    info = touched.stat()
    os.utime(touched, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # the same bytes, a new mtime
    grown = root / "d0" / "2.jpg"
    before = grown.stat()
    grown.write_bytes(grown.read_bytes() + b"!")
    os.utime(grown, ns=(before.st_atime_ns, before.st_mtime_ns))  # other bytes, the old mtime: the size tells
    (root / "d0" / "9.jpg").write_bytes(b"not a picture")
    first = library.engine.reconcile([root])
    # The touched file is hashed again (its bytes are known: its row takes the new mtime), the grown one
    # is read again (8-byte stand-ins fail to decode).
    assert (first.unchanged, first.failed) == (2, 2), first
    second = library.engine.reconcile([root])
    # A failed row stands while its file is unchanged: not read again by every reconcile.
    assert (second.unchanged, second.updated, second.failed) == (4, 0, 0), second
    rows = {r.path: r for r in library.catalog.files_under(str(root))}
    assert rows[str(touched)].mtime_ns == touched.stat().st_mtime_ns
    assert rows[str(grown)].size == before.st_size + 1
