"""`imgd run` answers searches from the saved index before its watches and start-up reconcile are done."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import IMGD, DaemonProcess, wait_until
from imgd.daemon.api import client
from test_stop_bound import BOUND, MARGIN, stop_seconds

QUERY = "a photo of a cat"


def many_folders(root: Path, outer: int, inner: int) -> None:
    """Empty folders: one inotify watch each to set up, one directory each for the reconcile to walk."""
    for i in range(outer):
        for j in range(inner):
            (root / f"d{i:03d}" / f"e{j:03d}").mkdir(parents=True)


def cli_search(daemon: DaemonProcess, *flags: str) -> bytes:
    """`imgd search --json` as a user runs it; exit 0 required."""
    done = subprocess.run(
        [*IMGD, "search", *flags, "--json", "-k", "3", QUERY], env=daemon.env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_search_is_answered_before_the_watches_and_the_reconcile_are_done(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    pictures = [write_image(pics / f"p{n}.jpg", seed=40 + n) for n in range(5)]
    # 30,000 folders: seconds of watch set-up and of the reconcile's walk on any machine.
    many_folders(pics / "deep", 100, 300)
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        daemon.wait_idle(timeout=300)
        assert daemon.stop() == 0  # the index file is saved: the next start loads it

        daemon.start(wait=False)
        wait_until(daemon.answers, timeout=120, interval=0.02, what="the daemon to answer on its socket")
        early = client.search(daemon.socket, 3, text=QUERY)
        status = daemon.status()
        log = daemon.log().split("imgd answering queries")[-1]  # this start's part of the log
        # Answered while the watches were still being set up: the worker has not begun its reconcile.
        assert "imgd running: watching" not in log, log
        assert status["daemon"]["state"] == "starting", status["daemon"]
        assert status["folders"] == [{"path": str(pics), "mode": "starting"}], status["folders"]
        assert status["counts"]["files"] == len(pictures)

        daemon.wait_idle(timeout=300)
        assert daemon.status()["folders"] == [{"path": str(pics), "mode": "inotify"}]
        # The early answer is the one the direct path gives, byte for byte through the CLI.
        direct = cli_search(daemon, "--direct")
        assert cli_search(daemon) == direct
        expected = [(hit["path"], round(hit["score"], 4)) for hit in json.loads(direct)]
        assert [(hit["path"], round(hit["score"], 4)) for hit in early] == expected
        assert daemon.stop() == 0

        # A SIGTERM while the watches are still being set up ends it within the stop's bound, as later on.
        daemon.start(wait=False)
        wait_until(daemon.answers, timeout=120, interval=0.02, what="the daemon to answer on its socket")
        assert daemon.status()["daemon"]["state"] == "starting"
        took, code = stop_seconds(daemon)
        assert code == 0, daemon.log()
        assert took < BOUND + MARGIN, f"SIGTERM during the watches' set-up took {took:.1f}s:\n{daemon.log()}"
        daemon.start()  # and the next start serves as usual
        assert [hit["path"] for hit in client.search(daemon.socket, 3, text=QUERY)] == [hit["path"] for hit in early]
