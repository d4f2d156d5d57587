"""How people really move files, against a real daemon: sync tools renaming hidden temp files over
indexed ones, an organiser making folders and renaming into them, moves between two watched folders,
a watched folder moved away and re-made, or deleted and restored from a backup. After each, the
catalog equals the disk (every hash fresh) and nothing already indexed was embedded again; in both
watching modes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faultkit import watcher_workloads

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("IMGD_FAULT_SEED", "7"))
FILES = int(os.environ.get("IMGD_FAULT_WATCH_FILES", "24"))


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_moves_replacements_and_replaced_roots_keep_the_catalog_equal_to_the_disk_without_re_embedding(
    tmp_path: Path, tiny_model: Path, polling: bool
) -> None:
    figures = watcher_workloads(tmp_path, tiny_model, files=FILES, seed=SEED, polling=polling)
    print(figures)
    assert figures["reembedded_for_nothing"] == 0 and figures["lost"] == figures["stale"] == 0
    assert figures["files"] == FILES, "the restored backup"
