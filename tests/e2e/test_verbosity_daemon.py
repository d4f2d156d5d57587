"""-v and -vv on `imgd run`: each level shows more of what the daemon decides and does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import DaemonProcess, wait_until


@pytest.mark.slow
def test_each_v_shows_more_in_the_daemon_log(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    write_image(pics / ".hidden.jpg", seed=2)
    logs = {}
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        for step, flags in enumerate([[], ["-v"], ["-vv"]]):
            daemon.flags = flags
            offset = len(daemon.log())
            daemon.start()
            daemon.wait_idle()
            write_image(pics / f"new{step}.jpg", seed=10 + step)
            shutil.copyfile(pics / "a.jpg", pics / f"copy{step}.jpg")
            expected = 3 + 2 * step
            wait_until(lambda n=expected: len(daemon.catalog_paths()) == n, what="the new files to be indexed")
            daemon.wait_idle()
            assert daemon.stop() == 0, daemon.log()
            logs[" ".join(flags) or "default"] = daemon.log()[offset:]
    per_file = [f"excluded: {pics / '.hidden.jpg'}", "settled: ", "known content"]
    debug = [
        f"DEBUG unchanged: {pics / 'a.jpg'}",  # per unchanged file only at -vv: a million lines at 1M
        "event: upsert ",
        "embedded a batch of ",
        "reconciled 1 folders in ",
        "model loaded in ",
        "index saved in ",
    ]

    default = logs["default"]
    assert f"INFO indexed {pics / 'new0.jpg'}" in default and "INFO loading model" in default
    assert not [line for line in per_file + debug if line in default], default
    verbose = logs["-v"]
    assert f"DETAIL known content, not embedded again: {pics / 'copy1.jpg'}" in verbose
    assert f"DETAIL settled: {pics / 'new1.jpg'}" in verbose
    assert all(line in verbose for line in per_file), verbose
    assert f"DETAIL unchanged files under {pics}: 3" in verbose  # a.jpg, new0.jpg, copy0.jpg: one summary line
    assert not [line for line in debug if line in verbose], verbose
    very = logs["-vv"]
    assert f"DEBUG event: upsert {pics / 'new2.jpg'}" in very
    assert all(line in very for line in per_file + debug), very
