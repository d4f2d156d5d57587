"""Time from `imgd run` to its first answer when the watches and the reconcile are slow (many folders).

    python benchmarks/bench_early_answer.py --folders 60000 --runs 3

Builds once under benchmarks/out/early-FOLDERS a tree of 20 small pictures beside FOLDERS empty folders
(one inotify watch each to set up and one directory each for the reconcile to walk), indexes it with a
first daemon (the random ViT-B/32 of tests/clipkit.py, torch backend) and stops it, so every timed start
finds the index file present. Then each run starts `imgd run` and reports the seconds until a text search
is answered, until the log says the watches are set ("imgd running: watching") and until the worker is
idle, then SIGTERM and the seconds until the process exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
from PIL import Image

sys.path.insert(0, str(common.REPO))
from imgd.daemon.api import client  # noqa: E402
from imgd.daemon.paths import default_socket  # noqa: E402


def build(base: Path, folders: int) -> Path:
    """The tree: 20 pictures at its top, then `folders` empty folders 200 to a group."""
    root = base / "tree"
    if (base / "built").exists():
        return root
    shutil.rmtree(base, ignore_errors=True)
    for n in range(20):
        path = root / f"p{n:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), ((n * 37) % 256, (n * 91) % 256, (n * 13) % 256)).save(path)
    for n in range(folders):
        (root / f"g{n // 200:04d}" / f"d{n % 200:03d}").mkdir(parents=True)
    (base / "built").touch()
    return root


class Daemon:
    """One `imgd run` over the tree, its log in the state folder."""

    def __init__(self, base: Path, root: Path, model: Path) -> None:
        self.state = base / "state"
        self.runtime = base / "run"
        self.log_path = base / "daemon.log"
        self.env = {
            **os.environ,
            "IMGD_STATE_DIR": str(self.state),
            "IMGD_MODEL": str(model),
            "IMGD_DEVICE": "cpu",
            "IMGD_BACKEND": "torch",
            "IMGD_WORDS_ENABLED": "0",
            "IMGD_SETTLE_SECONDS": "1",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(base / "config"),
        }
        self.socket = default_socket(self.state, str(self.runtime))
        self.log_path.write_bytes(b"")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imgd.cli.main", "run", str(root)], env=self.env, stdout=log, stderr=log
            )
        self.started = time.monotonic()

    def status(self) -> dict[str, Any] | None:
        try:
            return client.status(self.socket, timeout=5)
        except Exception:
            return None

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return time.monotonic() - started


def timed_run(base: Path, root: Path, model: Path) -> dict[str, float]:
    """One start: seconds to the first answer, to the watches set, to idle, and SIGTERM -> exit."""
    daemon = Daemon(base, root, model)
    times: dict[str, float] = {}
    while "answer" not in times or "watched" not in times or "idle" not in times:
        now = time.monotonic() - daemon.started
        if "answer" not in times and daemon.status() is not None:
            client.search(daemon.socket, 5, text="a photo")
            times["answer"] = time.monotonic() - daemon.started
        if "watched" not in times and b"imgd running: watching" in daemon.log_path.read_bytes():
            times["watched"] = now
        if "answer" in times and "idle" not in times:
            status = daemon.status() or {}
            if status.get("daemon", {}).get("state") == "idle" and status.get("queue", {}).get("pending") == 0:
                times["idle"] = time.monotonic() - daemon.started
        if now > 900:
            break
        time.sleep(0.05)
    times["sigterm"] = daemon.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folders", type=int, default=60_000, help="empty folders in the tree (default 60,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed starts (default 3)")
    args = parser.parse_args()
    model = common.ensure_model()
    base = common.OUT / f"early-{args.folders}"
    root = build(base, args.folders)
    if not (base / "state" / "index.faiss").exists():
        first = Daemon(base, root, model)
        while (status := first.status()) is None or status["daemon"]["state"] != "idle":
            time.sleep(0.5)
        first.stop()
    print(f"machine: {common.cpu_model()}, {os.cpu_count()} cores; {args.folders:,} folders, 20 pictures", flush=True)
    for n in range(args.runs):
        t = timed_run(base, root, model)
        print(
            f"run {n + 1}: first answer {t.get('answer', -1):.1f} s, watches set {t.get('watched', -1):.1f} s, "
            f"idle {t.get('idle', -1):.1f} s, SIGTERM -> exit {t['sigterm']:.2f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
