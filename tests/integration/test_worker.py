"""The worker with a real engine over real files: what it makes of the watcher's claims."""

from __future__ import annotations

import hashlib
import io
import os
import queue
from pathlib import Path

import pytest
from conftest import picture
from imgd.daemon.ingest.worker import Worker
from imgd.daemon.service.library import open_library
from imgd.daemon.store.records import Change, ChangeKind


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    picture(seed).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def running(make_config, embedder, tmp_path):
    """A worker that has caught up with a folder of two images; yields (library, worker, changes, folder)."""
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "a.png").write_bytes(png(1))
    (pics / "b.png").write_bytes(png(2))
    library = open_library(make_config(), embedder)
    changes: queue.Queue[Change] = queue.Queue()
    worker = Worker(library.engine, [str(pics)], changes, settle_seconds=0.0, orphan_grace=lambda: 0.5)
    worker.start()
    try:
        assert worker.idle.wait(60)
        yield library, worker, changes, pics
    finally:
        worker.stop()
        library.close()


def fresh(library, path: Path) -> bool:
    record = library.catalog.get_file(str(path))
    digest = hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()
    return record is not None and library.catalog.content_id(digest) == record.content_id


def settle(worker: Worker, changes: queue.Queue[Change], change: Change) -> None:
    worker.idle.clear()
    changes.put(change)
    assert worker.idle.wait(60)


def test_a_move_whose_source_still_exists_leaves_both_paths_fresh(running):
    """Polling pairs moves by inode number; a number freed by one rename is soon another file's, so it can
    report "a.png -> b.png" while both hold new bytes (two renames from temp files in one poll interval)."""
    library, worker, changes, pics = running
    (pics / "a.png").write_bytes(png(3))
    (pics / "b.png").write_bytes(png(4))
    os.utime(pics / "b.png", ns=(1, 10**18))

    settle(worker, changes, Change(ChangeKind.MOVE, str(pics / "a.png"), dest=str(pics / "b.png")))

    assert fresh(library, pics / "a.png") and fresh(library, pics / "b.png")
    assert library.catalog.count_contents() == 2, "the old contents are dropped once the grace is over"


def test_a_move_from_a_name_the_catalog_does_not_know_is_a_write_of_the_destination(running):
    library, worker, changes, pics = running
    before = library.catalog.get_file(str(pics / "a.png"))
    (pics / ".a.png").write_bytes(png(5))
    os.utime(pics / ".a.png", ns=(before.mtime_ns, before.mtime_ns))  # cp -p: even the mtime matches
    os.rename(pics / ".a.png", pics / "a.png")

    settle(worker, changes, Change(ChangeKind.MOVE, str(pics / ".a.png"), dest=str(pics / "a.png")))

    assert fresh(library, pics / "a.png")


def test_removals_queued_together_are_applied_in_one_call(make_config, embedder, tmp_path):
    """Issue 21: `rm -rf` queues one event per file faster than one at a time is applied; taken together
    they cost one catalog transaction and one orphan check instead of one each."""
    pics = tmp_path / "pics"
    for seed in range(6):
        (pics / "trip").mkdir(parents=True, exist_ok=True)
        (pics / "trip" / f"{seed}.png").write_bytes(png(seed))
    (pics / "keep.png").write_bytes(png(9))
    library = open_library(make_config(), embedder)
    try:
        library.engine.reconcile([pics])
        changes: queue.Queue[Change] = queue.Queue()
        worker = Worker(library.engine, [str(pics)], changes, settle_seconds=0.0, orphan_grace=lambda: 0.0)
        calls: list[tuple[list[str], bool]] = []
        real = library.engine.forget
        library.engine.forget = lambda paths, folder=False: calls.append((list(paths), folder)) or real(paths, folder)
        for seed in range(6):
            (pics / "trip" / f"{seed}.png").unlink()
            changes.put(Change(ChangeKind.DELETE, str(pics / "trip" / f"{seed}.png")))
        (pics / "trip").rmdir()
        changes.put(Change(ChangeKind.DELETE, str(pics / "trip"), is_dir=True))
        worker._drain()  # what the worker thread does first on each turn of its loop

        assert calls == [
            ([str(pics / "trip" / f"{seed}.png") for seed in range(6)], False),
            ([str(pics / "trip")], True),
        ]
        assert [r.path for r in library.catalog.all_files()] == [str(pics / "keep.png")]
        assert library.catalog.count_contents() == len(library.index) == 1
    finally:
        library.close()
