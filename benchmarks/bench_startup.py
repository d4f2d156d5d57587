"""Where `imgd index`'s start-up goes: imports and model load, each step in fresh processes, per backend.

torch: import imgd.daemon.service.library (FAISS, numpy, sqlite-utils), import torch, import transformers'
CLIPModel, import sentence_transformers, and ClipEmbedder(model) (weights, the two probe encodes and
the weights fingerprint). onnx (with the export present): import imgd.daemon.service.library, import
onnxruntime, load_embedder(backend="onnx") (finds the export by its name note), opening and probing
the image session (the first picture), and the text session (the first query). Median over --runs
fresh processes.

    python benchmarks/bench_startup.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import common

CHILD = """
import json, sys, time
marks = [time.perf_counter()]
import imgd.daemon.service.library
marks.append(time.perf_counter())
import torch
marks.append(time.perf_counter())
from transformers import CLIPModel
marks.append(time.perf_counter())
import sentence_transformers
marks.append(time.perf_counter())
from imgd.daemon.embedders.torch import ClipEmbedder
ClipEmbedder(sys.argv[1], device="cpu")
marks.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""

ONNX_CHILD = """
import json, sys, time
marks = [time.perf_counter()]
import imgd.daemon.service.library
marks.append(time.perf_counter())
import onnxruntime
marks.append(time.perf_counter())
from imgd.daemon.embedders import load_embedder
e = load_embedder(sys.argv[1], device="cpu", backend="onnx", state_dir=sys.argv[2])
marks.append(time.perf_counter())
e.encode_images([])
marks.append(time.perf_counter())
e.encode_texts(["a photo"])
marks.append(time.perf_counter())
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""

STEPS = (
    "import imgd.daemon.service.library (faiss, numpy, sqlite)",
    "import torch",
    "import transformers CLIPModel",
    "import sentence_transformers (after the above)",
    "ClipEmbedder: load weights + probe encodes",
)

ONNX_STEPS = (
    "import imgd.daemon.service.library (faiss, numpy, sqlite)",
    "import onnxruntime",
    "load_embedder(backend='onnx'): find the export",
    "open + probe the image session",
    "open + probe the text session",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="model folder (built if absent)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes (default 3)")
    parser.add_argument("--backends", default="torch,onnx", help="backends to time (default torch,onnx)")
    args = parser.parse_args()
    model_dir = common.ensure_model(args.model)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    state = common.exported_models(model_dir).parent if "onnx" in backends else None
    print(f"machine: {common.machine_line()}")
    for backend in backends:
        child, steps = (CHILD, STEPS) if backend == "torch" else (ONNX_CHILD, ONNX_STEPS)
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", child, str(model_dir), str(state)], capture_output=True, text=True, check=True
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        print(f"backend {backend}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'step':<50}{'median s':>9}   all runs")
        for i, name in enumerate(steps):
            values = [r[i] for r in runs]
            print(f"{name:<50}{statistics.median(values):>9.2f}   " + " ".join(f"{v:.2f}" for v in values))
        total = [sum(r) for r in runs]
        print(f"{'total':<50}{statistics.median(total):>9.2f}   " + " ".join(f"{v:.2f}" for v in total))


if __name__ == "__main__":
    sys.exit(main())
