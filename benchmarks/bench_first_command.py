"""The first model command on a fresh state folder, end to end: this tree against a baseline, interleaved.

Each run is a fresh process on an empty state folder doing what the first command does:
`load_embedder(backend=auto)` (the export child: export, backend measurement, OpenVINO compile), then
one picture and one text. Wall time and the CPU of the process and its children (user + system), the
load average around each run. A/B runs alternate, so a change in the machine's load hits both.

    mkdir -p /tmp/base/imgd && git archive <commit> | tar -x -C /tmp/base/imgd && touch /tmp/base/imgd/__init__.py
    python benchmarks/bench_first_command.py --base /tmp/base [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_model  # noqa: E402

SCRIPT = """
import sys
from pathlib import Path
from imgd.daemon.embedders import load_embedder
embedder = load_embedder(sys.argv[1], "cpu", "auto", 32, backend="auto", state_dir=Path(sys.argv[2]))
embedder.encode_images([])
embedder.encode_texts(["a photo"])
print(embedder.backend, embedder.precision, embedder.reason)
"""


def one_run(tree: str, model: Path) -> tuple[float, float, str, str]:
    """Wall s, CPU s of the run (all its processes), the backend it picked, the 1-minute load before."""
    load = Path("/proc/loadavg").read_text().split()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="imgd-first-") as state:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(model), state],
            env={**os.environ, "PYTHONPATH": tree},
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = done.returncode == 0 and done.stdout.strip()
    picked = done.stdout.strip().splitlines()[-1] if ok else done.stderr[-300:]
    return wall, cpu, picked, load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, help="a folder holding imgd/ of the baseline (git archive)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = ensure_model()
    trees = {"this": os.environ.get("PYTHONPATH", "")}
    if args.base:
        trees = {"base": str(args.base), **trees}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, tree in trees.items():
            wall, cpu, picked, load = one_run(tree, model)
            results[name].append((wall, cpu))
            print(f"run {run + 1} {name:4}: wall {wall:6.2f} s, cpu {cpu:6.2f} s, load {load}: {picked}", flush=True)
    for name, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{name:4}: wall min {min(walls):.2f} median {statistics.median(walls):.2f} s;"
            f" cpu min {min(cpus):.2f} median {statistics.median(cpus):.2f} s"
        )


if __name__ == "__main__":
    main()
