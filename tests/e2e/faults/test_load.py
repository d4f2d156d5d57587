"""Load: a 10,000-file burst with searches running throughout, a lost-event storm, an exhausted watch limit."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from daemonkit import IMGD, wait_until
from faultkit import FaultDaemon, burst_with_searches, png_bytes, watch_limit_prefix

BURST = int(os.environ.get("IMGD_FAULT_BURST", "10000"))


@pytest.mark.slow
def test_a_burst_of_small_files_is_indexed_once_each_while_searches_keep_answering(tmp_path, tiny_model):
    """BURST (10,000) tiny PNGs written as fast as the disk takes them; socket and CLI searches run throughout."""
    figures = burst_with_searches(tmp_path, tiny_model, BURST)
    print(figures)
    assert figures["files"] == BURST + 1 and figures["searches"] > 0


def max_queued_events() -> int | None:
    try:
        with open("/proc/sys/fs/inotify/max_queued_events") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def test_lost_events_from_an_overflowed_inotify_queue_are_recovered_by_reconciling(tmp_path, tiny_model):
    """Stop the daemon (SIGSTOP) so nobody reads its inotify queue, flood it past its size, resume.

    fs.inotify.max_queued_events is writable here but global: lowering it would shrink every other
    process's queue on this shared machine, so the queue is flooded instead. watchdog before 7.1
    dropped the kernel's overflow event unseen (the lost files waited for the 6-hour rescan).
    """
    queued = max_queued_events()
    if queued is None or queued > 200_000:
        pytest.skip(f"inotify queue of {queued} events: too large to flood in a test")
    flood = queued // 2 + 2000  # each touch gives IN_CREATE and IN_CLOSE_WRITE
    root = tmp_path / "pics"
    junk = root / "junk"
    junk.mkdir(parents=True)  # watched before the stop: events inside a folder made during it are never queued
    (root / "seed.png").write_bytes(png_bytes(2))
    with FaultDaemon(tmp_path, tiny_model, [root]) as daemon:
        daemon.start()
        daemon.wait_idle()
        mark = daemon.mark()
        daemon.send(signal.SIGSTOP)
        try:
            for i in range(flood):
                (junk / f"f{i:06d}.txt").touch()
            for i in range(30):  # the queue is full: their events are dropped, only a rescan finds them
                (root / f"lost{i:02d}.png").write_bytes(png_bytes(300 + i))
        finally:
            daemon.send(signal.SIGCONT)
        noticed = "filesystem events were lost (inotify queue overflow); rescanning"
        wait_until(lambda: noticed in daemon.log_since(mark), timeout=120, what="the overflow to be noticed")
        wait_until(lambda: daemon.ok_count() == 31, timeout=300, what="the lost files found by a rescan")
        daemon.settle_and_check()


def test_an_exhausted_inotify_watch_limit_falls_back_to_polling(tmp_path, tiny_model):
    """The daemon runs in its own user namespace with room for 14 inotify watches.

    The tree first fits (11 folders); then it grows to 17 while the daemon runs, and watchdog silently
    skips the folders the kernel refuses; the daemon must notice, say so, poll, and rescan for what it
    missed. (At start the same check runs right after the watches are added.)
    """
    prefix = watch_limit_prefix(14)
    if prefix is None:
        pytest.skip("cannot create a user namespace with its own inotify watch limit (unshare --user)")
    root = tmp_path / "pics"
    for i in range(10):
        (root / f"sub{i:02d}").mkdir(parents=True)
        (root / f"sub{i:02d}" / "a.png").write_bytes(png_bytes(400 + i))
    hint = "fs.inotify.max_user_watches"
    with FaultDaemon(tmp_path, tiny_model, [root], prefix=prefix) as daemon:
        daemon.start()
        daemon.wait_idle()
        assert [f["mode"] for f in daemon.status()["folders"]] == ["inotify"]
        for i in range(10, 16):
            (root / f"sub{i:02d}").mkdir()
            (root / f"sub{i:02d}" / "a.png").write_bytes(png_bytes(400 + i))
        wait_until(lambda: hint in daemon.log(), timeout=120, what="the watch-limit hint")
        wait_until(lambda: daemon.ok_count() == 16, timeout=120, what="files in the unwatched folders")
        assert [f["mode"] for f in daemon.status()["folders"]] == ["polling"]
        result = subprocess.run([*IMGD, "status", "--json"], env=daemon.env, capture_output=True, text=True)
        assert '"mode": "polling"' in result.stdout, result.stdout + result.stderr
        late = root / "sub15" / "late.png"  # polled now
        late.write_bytes(png_bytes(515))
        daemon.wait_fresh(late, timeout=120)
        daemon.settle_and_check()
