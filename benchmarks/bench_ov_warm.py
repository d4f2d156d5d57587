"""OpenVINO's warm start on ViT-B/32: the exported blob read and imported (imgd's first OpenVINO release)
against OpenVINO's own model cache (CACHE_DIR, the blob mapped), each in fresh processes; then imgd's
own warm path split: load_embedder, the image tower's open (compile from the cache + the probe), the
text tower's open with one query. Wall and CPU seconds per step, and the process's peak RSS.

    python benchmarks/bench_ov_warm.py [--runs 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ensure_model  # noqa: E402

OPEN = """
import resource, sys, time
from pathlib import Path
import numpy as np
import openvino as ov
folder, tower, way = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
core = ov.Core()
wall, cpu = time.perf_counter(), time.process_time()
if way == "read+import":
    compiled = core.import_model((folder / f"{tower}.blob").read_bytes(), "CPU", config)
else:
    cached = {**config, "CACHE_DIR": str(folder / "ovcache")}
    compiled = core.compile_model(str(folder / f"{tower}.onnx"), "CPU", cached)
    assert compiled.get_property("LOADED_FROM_CACHE")
print(f"{way:12} {tower:5}: open wall {time.perf_counter() - wall:.2f} s, cpu {time.process_time() - cpu:.2f} s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)
"""

IMGD = """
import resource, sys, time
from pathlib import Path
marks = [(time.perf_counter(), time.process_time())]
def mark(what):
    wall, cpu = time.perf_counter(), time.process_time()
    print(f"  {what}: wall {wall - marks[-1][0]:.2f} s, cpu {cpu - marks[-1][1]:.2f} s", flush=True)
    marks.append((wall, cpu))
from imgd.daemon.embedders import load_embedder
embedder = load_embedder(sys.argv[2], "cpu", "auto", 32, backend="openvino", state_dir=Path(sys.argv[1]))
mark("import imgd + load_embedder (finds the export, imports openvino)")
embedder.encode_images([])
mark("image tower open (compile_model from the cache + probe)")
embedder.encode_texts(["a photo"])
mark("text tower open + one query")
print(f"  total wall {marks[-1][0] - marks[0][0]:.2f} s, cpu {marks[-1][1] - marks[0][1]:.2f} s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)
"""

PREPARE = """
import sys
from pathlib import Path
import openvino as ov
from imgd.daemon.embedders import load_embedder
state, folder = Path(sys.argv[1]), Path(sys.argv[3])
embedder = load_embedder(sys.argv[2], "cpu", "float32", 32, backend="openvino", state_dir=state)
embedder.encode_images([]); embedder.encode_texts(["a photo"])
(export,) = [p for p in (state / "models").iterdir() if (p / "image.onnx").exists()]
folder.mkdir(parents=True, exist_ok=True)
core = ov.Core()
config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
for tower in ("image", "text"):
    (folder / f"{tower}.onnx").unlink(missing_ok=True)
    (folder / f"{tower}.onnx").symlink_to(export / f"{tower}.onnx")
    compiled = core.compile_model(str(export / f"{tower}.onnx"), "CPU", config)
    (folder / f"{tower}.blob").write_bytes(compiled.export_model().getvalue())
    core.compile_model(str(folder / f"{tower}.onnx"), "CPU", {**config, "CACHE_DIR": str(folder / "ovcache")})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = ensure_model()
    state, folder = OUT / "ov-warm-state", OUT / "ov-warm-blobs"
    if not (folder / "text.blob").exists():
        subprocess.run([sys.executable, "-c", PREPARE, str(state), str(model), str(folder)], check=True)
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    for _ in range(args.runs):
        for tower in ("image", "text"):
            for way in ("read+import", "cache_dir"):
                subprocess.run([sys.executable, "-c", OPEN, str(folder), tower, way], check=True)
    for run in range(args.runs):
        print(f"imgd warm start, run {run + 1}:", flush=True)
        subprocess.run([sys.executable, "-c", IMGD, str(state), str(model)], check=True)
        time.sleep(0.5)
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
