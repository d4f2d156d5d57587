"""The state folder on a small filesystem that fills up, then gets space back.

The previous index file must stay intact, the catalog consistent, searches answered, the problem
logged in one clear line (no traceback, no hot loop), and indexing must resume once space returns.
Needs root to mount a 2 MiB tmpfs; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from daemonkit import wait_until
from faultkit import FaultDaemon, fill_disk, png_bytes, search_errors, small_filesystem

pytestmark = pytest.mark.slow


def full_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("ERROR") and "is full" in line]


@pytest.fixture
def small_state(tmp_path: Path):
    try:
        with small_filesystem(tmp_path / "small", "2m") as mount:
            yield mount
    except PermissionError as exc:
        pytest.skip(f"cannot mount a small tmpfs for the state folder ({exc}); needs root or CAP_SYS_ADMIN")


def test_a_full_state_disk_is_survived_and_indexing_resumes_when_space_returns(tmp_path, tiny_model, small_state):
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(30):
        (pics / f"before{i:02d}.png").write_bytes(png_bytes(i))
    daemon = FaultDaemon(tmp_path, tiny_model, [pics], IMGD_STATE_DIR=str(small_state), IMGD_PERSIST_INTERVAL="4")
    daemon.state_dir = small_state
    with daemon:
        daemon.start()
        wait_until(lambda: daemon.ok_count() == 30, timeout=120, what="the first files")
        daemon.wait_idle()
        daemon.wait_persisted()
        index_file = small_state / "index.faiss"
        saved = hashlib.sha256(index_file.read_bytes()).hexdigest()

        filler = small_state / "filler"
        fill_disk(filler)
        mark = daemon.mark()
        for i in range(200):
            (pics / f"during{i:03d}.png").write_bytes(png_bytes(1000 + i))
        wait_until(lambda: full_lines(daemon.log_since(mark)), timeout=120, what="the daemon to report the full disk")

        # Still serving: searches by an indexed image and by text, while the disk stays full.
        stop, errors, counts = threading.Event(), [], [0]
        queries = ["a photo", "red"]
        searcher = threading.Thread(target=search_errors, args=(daemon.socket, stop, queries, errors, counts))
        searcher.start()
        try:
            hit = daemon.search_image(pics / "before07.png")[0]
            assert hit["path"] == str(pics / "before07.png")
            wait_until(lambda: counts[0] >= 20, timeout=120, what="searches while the disk is full")
        finally:
            stop.set()
            searcher.join()
        assert not errors, errors[:5]
        assert daemon.alive(), daemon.log()[-3000:]
        status = daemon.status()
        assert status["daemon"]["running"]

        # The previous index file is untouched and no half-written temp file eats the little space.
        assert hashlib.sha256(index_file.read_bytes()).hexdigest() == saved
        assert not [p for p in small_state.iterdir() if p.name.endswith(".tmp")]
        # The catalog is consistent: only whole files, each with its vector.
        catalog = daemon.catalog()
        try:
            counts_now = catalog.counts()
            assert counts_now["files"] == counts_now["contents"] >= 30
            assert catalog.conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            catalog.close()

        during = daemon.log_since(mark)
        assert "Traceback" not in during, during[-3000:]
        reports = full_lines(during)
        assert len(reports) <= 6, f"the full disk must be reported once per retry, not in a hot loop: {reports}"

        filler.unlink()
        wait_until(lambda: daemon.ok_count() == 230, timeout=300, interval=0.5, what="indexing to resume")
        daemon.wait_idle()
        daemon.wait_persisted()

        # Full again right after a commit, before the next save: the catalog holds the new file, the
        # index file cannot be rewritten. The old file must stay, and the save is retried later.
        for attempt in range(3):
            saved = hashlib.sha256(index_file.read_bytes()).hexdigest()
            mark = daemon.mark()
            late = pics / f"late{attempt}.png"
            late.write_bytes(png_bytes(5000 + attempt))
            wait_until(lambda p=late: daemon.record(p) is not None, timeout=120, what="the late file")
            fill_disk(filler)
            if hashlib.sha256(index_file.read_bytes()).hexdigest() == saved:
                break
            filler.unlink()  # a save slipped in between the commit and the fill: try again
        wait_until(
            lambda: "could not save the index" in daemon.log_since(mark), timeout=120, what="the failed index save"
        )
        assert daemon.alive()
        assert daemon.search_image(pics / "before07.png")[0]["path"] == str(pics / "before07.png")
        assert hashlib.sha256(index_file.read_bytes()).hexdigest() == saved, "the previous index must stay intact"
        assert not [p for p in small_state.iterdir() if p.name.endswith(".tmp")]
        filler.unlink()
        daemon.wait_persisted()
        assert "Traceback" not in daemon.log()
        figures = daemon.settle_and_check()
        print(figures, reports)
