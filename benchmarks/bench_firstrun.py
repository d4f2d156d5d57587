"""The daemon's memory on the first-run path (an empty state folder: it exports) and on the warm path.

Starts `imgd run` on a folder of camera-sized pictures with ViT-B/32 (random weights), samples the
daemon's RSS (and its export child's, and its words child's) every 0.25 s until every picture is
indexed and its words read, then again after `idle_unload` has freed the image model and ended the
words child (the daemon's RSS, and any child still running). Then the same with the state folder it
left (warm path).
Also says whether torch was ever mapped into the daemon (its /proc/PID/maps).

    python benchmarks/bench_firstrun.py [--pictures 10] [--backend auto] [--idle-unload 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ensure_corpus, ensure_model  # noqa: E402


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The processes any of pid's threads started (the words child is started by a pool thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def is_words_child(pid: int) -> bool:
    try:
        return "wordschild" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def torch_mapped(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def indexed(env: dict[str, str]) -> int:
    """Contents indexed with their words read (0 while any waits to be read)."""
    done = subprocess.run(["imgd", "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    try:
        status = json.loads(done.stdout)
        return 0 if (status.get("words") or {}).get("pending") else int(status["counts"]["contents"])
    except (ValueError, KeyError):
        return 0


def one_run(label: str, corpus: Path, env: dict[str, str], count: int, idle_unload: float) -> dict[str, object]:
    started = time.monotonic()
    daemon = subprocess.Popen(
        ["imgd", "run", str(corpus)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = peak_child = peak_words = 0.0
    torch_seen = False
    done_at = None
    last_check = 0.0
    try:
        while time.monotonic() - started < 900:
            peak = max(peak, rss_mb(daemon.pid))
            for child in children(daemon.pid):
                if is_words_child(child):
                    peak_words = max(peak_words, rss_mb(child))
                else:
                    peak_child = max(peak_child, rss_mb(child))
            torch_seen = torch_seen or torch_mapped(daemon.pid)
            if time.monotonic() - last_check > 2:
                last_check = time.monotonic()
                if indexed(env) >= count:
                    done_at = time.monotonic() - started
                    break
            time.sleep(0.25)
        after_index = rss_mb(daemon.pid)
        time.sleep(idle_unload + 8)
        idle = rss_mb(daemon.pid)
        idle_children = sum(rss_mb(child) for child in children(daemon.pid))
        torch_seen = torch_seen or torch_mapped(daemon.pid)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    row = {
        "run": label,
        "indexed_after_s": round(done_at, 1) if done_at else None,
        "daemon_peak_rss_mb": round(peak),
        "export_child_peak_rss_mb": round(peak_child),
        "words_child_peak_rss_mb": round(peak_words),
        "rss_after_indexing_mb": round(after_index),
        "rss_after_idle_unload_mb": round(idle),
        "children_rss_after_idle_unload_mb": round(idle_children),
        "torch_in_daemon": torch_seen,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=10)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--idle-unload", type=float, default=10.0)
    args = parser.parse_args()
    model = ensure_model()
    corpus = ensure_corpus(args.pictures, OUT / f"corpus-{args.pictures}")
    state = OUT / f"firstrun-{int(time.time())}"
    shutil.rmtree(state, ignore_errors=True)
    env = {
        **os.environ,
        "IMGD_STATE_DIR": str(state),
        "IMGD_MODEL": str(model),
        "IMGD_BACKEND": args.backend,
        "IMGD_IDLE_UNLOAD": str(args.idle_unload),
    }
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    one_run("first run (empty state folder)", corpus, env, args.pictures, args.idle_unload)
    for path in [*state.glob("catalog.db*"), *state.glob("index*")]:
        path.unlink()
    one_run("warm (export and measurement kept, catalog emptied)", corpus, env, args.pictures, args.idle_unload)
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
