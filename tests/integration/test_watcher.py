"""The watcher with real watchdog observers on real folders: a replaced root is noticed and watched anew."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import wait_until
from imgd.daemon.config import DEFAULT_EXCLUDES
from imgd.daemon.ingest.scanner import PathFilter
from imgd.daemon.ingest.watcher import Watcher
from imgd.daemon.store.records import Change, ChangeKind


def changes_for(changes: queue.Queue[Change], path: Path) -> list[Change]:
    """Drain the queue, keeping the changes that name path."""
    found = []
    while True:
        try:
            change = changes.get_nowait()
        except queue.Empty:
            return found
        if str(path) in (change.path, change.dest):
            found.append(change)


@pytest.mark.parametrize(
    ("polling", "mode", "replace"),
    [
        ("auto", "inotify", "moved away"),
        ("auto", "inotify", "deleted"),
        pytest.param("always", "polling", "moved away", marks=pytest.mark.slow),
        # Polling watches the path, not the folder: a deleted and re-made root (maybe with the same inode
        # number) is simply polled on; the daemon test covers that its files are found.
    ],
)
def test_a_replaced_root_is_reported_at_once_then_watched_anew(tmp_path: Path, polling: str, mode: str, replace: str):
    root = tmp_path / "Pictures"
    root.mkdir()
    changes: queue.Queue[Change] = queue.Queue()
    watcher = Watcher([str(root)], PathFilter(DEFAULT_EXCLUDES), changes, polling=polling)
    watcher.start()
    try:
        assert watcher.modes() == [{"path": str(root), "mode": mode}]
        if replace == "moved away":  # mv Pictures Pictures-2023 && mkdir Pictures
            os.rename(root, tmp_path / "Pictures-2023")
        else:  # rm -rf Pictures && mkdir Pictures
            os.rmdir(root)
        root.mkdir()

        # Status must not claim the new folder is watched. (A deleted root's own event stops its watch, on
        # watchdog's thread: noticed within moments.)
        wait_until(lambda: watcher.modes()[0]["mode"] == "replaced", timeout=5, what="the root reported replaced")
        assert watcher.roots_changed()
        assert watcher.check_roots() == [str(root)], "the new folder is to be reconciled"
        assert watcher.modes() == [{"path": str(root), "mode": mode}]
        assert not watcher.roots_changed()

        image = write_image(root / "new.jpg", seed=1)
        wait_until(
            lambda: any(c.kind is ChangeKind.UPSERT for c in changes_for(changes, image)),
            timeout=15,
            what="an event from the new folder",
        )
    finally:
        watcher.stop()
