"""Idle CPU of `imgd run` once its passes are done: the daemon's own CPU seconds over a quiet minute.

A library of N small pictures (the random test model), the daemon started, waited idle (reconcile,
duplicates pass, places pass and words pass done), then /proc/PID/stat's user+system time read at the
start and the end of a window with nothing happening.

    .venv/bin/python benchmarks/bench_idle_cpu.py --count 200 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from clipkit import build_clip  # noqa: E402
from common import machine_line  # noqa: E402
from conftest import write_image  # noqa: E402
from daemonkit import DaemonProcess, wait_until  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(machine_line())
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / "out") as tmp:
        where = Path(tmp)
        model = build_clip(where / "model")
        pics = where / "pics"
        for i in range(args.count):
            write_image(pics / f"{i // 100:03d}" / f"p{i:05d}.jpg", seed=i)
        with DaemonProcess(where, model, [pics], IMGD_WORDS_ENABLED="0") as daemon:
            daemon.start(wait=False)
            wait_until(daemon.answers, timeout=900, what="the daemon to answer")  # a loaded machine is slow
            daemon.wait_idle(timeout=900)
            time.sleep(5)  # the index file's next save, the duplicates summary
            assert daemon.proc is not None
            pid = daemon.proc.pid
            before, started = cpu_seconds(pid), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
            state = daemon.status()["daemon"]["state"]
            daemon.stop()
    share = 100 * used / elapsed
    print(f"idle, {args.count} pictures, state {state}: {used:.2f} CPU s in {elapsed:.0f} s, {share:.2f}% of a core")


if __name__ == "__main__":
    main()
