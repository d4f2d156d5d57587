"""`imgd run` answers while its start-up reconcile still works, and SIGTERM ends it within its bound at any moment.

The bound is the daemon's STOP_BUDGET (1 s) plus the process's own exit; the tests allow a margin on top
for a loaded machine (several test runs share two cores), still far below systemd's TimeoutStopSec.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import DaemonProcess, wait_until
from imgd.daemon.api import client

BOUND = 2.0  # seconds from SIGTERM to exit: the goal
MARGIN = 2.5  # a loaded machine's scheduling on top (two cores shared by many test runs)


def big_pictures(folder: Path, count: int) -> None:
    """PNGs of 8000x6000: seconds of decoding each under load, with no draft mode to shorten it."""
    for n in range(count):
        write_image(folder / f"big{n}.png", seed=n, size=(8000, 6000))


def stop_seconds(daemon: DaemonProcess) -> tuple[float, int]:
    """SIGTERM, then the seconds until the process is gone, and its exit code."""
    assert daemon.proc is not None
    started = time.monotonic()
    daemon.send(signal.SIGTERM)
    try:
        code = daemon.proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - started
    assert code is not None, f"still running 30 s after SIGTERM:\n{daemon.log()}"
    daemon.proc = None
    return took, code


@pytest.mark.slow
@pytest.mark.timeout(600)  # four 8000x6000 PNGs written, then decoded, on a loaded machine
def test_answers_during_the_start_up_reconcile_and_obeys_sigterm_mid_batch(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    write_image(pics / "small.jpg", seed=100)
    with DaemonProcess(tmp_path, tiny_model, [pics], IMGD_BATCH_SIZE="4") as daemon:
        daemon.start()
        wait_until(lambda: len(daemon.catalog_paths()) == 1, timeout=120, what="the first picture")
        assert daemon.stop() == 0
        big_pictures(pics, 4)  # added while it was down: the next start's reconcile embeds them
        daemon.start()
        status = daemon.status()
        # The socket is up while the worker still decodes and embeds the files it found (or has yet to start).
        assert status["daemon"]["state"] in ("starting", "reconciling", "indexing"), status
        hits = client.search(daemon.socket, 3, text="a photo")
        assert [hit["path"] for hit in hits] == [str(pics / "small.jpg")]
        assert daemon.status()["daemon"]["state"] in ("reconciling", "indexing")
        took, code = stop_seconds(daemon)
        assert code == 0, daemon.log()
        assert took < BOUND + MARGIN, f"SIGTERM mid-batch took {took:.1f}s:\n{daemon.log()}"
        # What the abandoned batch leaves is what a crash would: the next start serves and stops as usual.
        for big in pics.glob("big*.png"):
            big.unlink()  # (decoding them again would take minutes on a loaded machine)
        daemon.start()
        assert [hit["path"] for hit in client.search(daemon.socket, 3, text="a photo")] == [str(pics / "small.jpg")]
        daemon.wait_idle()
        assert set(daemon.catalog_paths()) == {str(pics / "small.jpg")}
        took, code = stop_seconds(daemon)
        assert code == 0 and "stopped" in daemon.log(), daemon.log()
        assert took < BOUND + MARGIN, f"SIGTERM when idle took {took:.1f}s"


@pytest.mark.slow
def test_sigterm_while_the_model_loads_ends_it_at_once(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start(wait=False)
        time.sleep(1.0)  # torch and the model take seconds to load: this is before the socket answers
        assert not daemon.answers()
        took, code = stop_seconds(daemon)
        # The default action until the handlers are set: as safe as a crash, and immediate.
        assert code in (0, -signal.SIGTERM), daemon.log()
        assert took < BOUND + MARGIN, f"SIGTERM during start-up took {took:.1f}s"
        daemon.start()  # the catalog and lock are fine after it
        wait_until(lambda: len(daemon.catalog_paths()) == 1, timeout=120, what="the picture")
