"""Where `imgd index`'s ~10 s of start-up goes: imports and model load, each step in fresh processes.

Each child times, in order: import imgd.daemon.library (FAISS, numpy, sqlite-utils), import torch,
import transformers' CLIPModel, import sentence_transformers, and ClipEmbedder(model) (weights and
the two probe encodes). Median over --runs fresh processes.

    python benchmarks/bench_startup.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import common

CHILD = """
import json, sys, time
marks = [time.perf_counter()]
import imgd.daemon.library
marks.append(time.perf_counter())
import torch
marks.append(time.perf_counter())
from transformers import CLIPModel
marks.append(time.perf_counter())
import sentence_transformers
marks.append(time.perf_counter())
from imgd.daemon.embedder import ClipEmbedder
ClipEmbedder(sys.argv[1], device="cpu")
marks.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""

STEPS = (
    "import imgd.daemon.library (faiss, numpy, sqlite)",
    "import torch",
    "import transformers CLIPModel",
    "import sentence_transformers (after the above)",
    "ClipEmbedder: load weights + probe encodes",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="model folder (built if absent)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes (default 3)")
    args = parser.parse_args()
    model_dir = common.ensure_model(args.model)
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(model_dir)], capture_output=True, text=True, check=True
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    print(f"machine: {common.machine_line()}")
    print(f"{'step':<50}{'median s':>9}   all runs")
    for i, name in enumerate(STEPS):
        values = [r[i] for r in runs]
        print(f"{name:<50}{statistics.median(values):>9.2f}   " + " ".join(f"{v:.2f}" for v in values))
    total = [sum(r) for r in runs]
    print(f"{'total':<50}{statistics.median(total):>9.2f}   " + " ".join(f"{v:.2f}" for v in total))


if __name__ == "__main__":
    sys.exit(main())
