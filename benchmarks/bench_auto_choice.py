"""`auto`'s measurement on ViT-B/32: each candidate's speed, warm open time and memory, as recorded, --runs times.

A copy of the export in benchmarks/out/ov-warm-state (ONNX files, manifest, tokenizer, name note) in a
temporary state folder, so the shared record is left alone; each run deletes the record and loads the
model with `backend = auto`, which measures every candidate again (OpenVINO's cache, built by the first
run, is kept: later runs measure as a re-measurement on a changed key would).

    python benchmarks/bench_ov_warm.py --runs 1          # once: the export in benchmarks/out/ov-warm-state
    python benchmarks/bench_auto_choice.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, ensure_model  # noqa: E402

MEASURE = """
import json, sys, time
from pathlib import Path
from imgd.daemon.embedders import load_embedder
started = time.perf_counter()
embedder = load_embedder(sys.argv[2], "cpu", "auto", 32, backend="auto", state_dir=Path(sys.argv[1]))
took = time.perf_counter() - started
(record,) = Path(sys.argv[1], "models").glob("*/backend-*.json")
results = json.loads(record.read_text())["results"]
print(json.dumps({"took_s": round(took, 1), "reason": embedder.reason, "results": results}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = ensure_model().resolve()
    models = (OUT / "ov-warm-state" / "models").resolve()
    (export,) = [p.parent for p in models.glob("*/manifest.json") if (p.parent / "image.onnx").exists()]
    with tempfile.TemporaryDirectory(prefix="imgd-auto-") as tmp:
        state = Path(tmp)
        target = state / "models" / export.name
        target.mkdir(parents=True)
        shutil.copytree(models / "names", state / "models" / "names")
        for name in ("image.onnx", "text.onnx", "manifest.json", "tokenizer.json"):
            shutil.copy2(export / name, target / name)
        env_path = {"PYTHONPATH": str(REPO / ".imgdpath")}
        print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
        for _ in range(args.runs):
            for record in target.glob("backend-*.json"):
                record.unlink()
            done = subprocess.run(
                [sys.executable, "-c", MEASURE, str(state), str(model)],
                env={**os.environ, **env_path},
                check=True,
                capture_output=True,
                text=True,
            )
            print(done.stdout.strip(), flush=True)
        print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
