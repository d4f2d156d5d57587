"""Where a warm open of the ViT-B/32 image tower goes, each part in a fresh process (CPU s, page faults, memory).

OpenVINO: the open from its cache, then runs at batch 1, 1, 2, 2, 8 (the first run at each new shape
costs more than the next: ~43k minor faults, the weights laid out again for that shape), and the
anonymous and file-backed memory the tower adds. ONNX Runtime: session creation and the first runs with
the session options a faster open might come from (graph optimisation level, pre-packing, the arena);
OpenVINO with its blob read instead of mapped (ENABLE_MMAP off).

    python benchmarks/bench_ov_warm.py --runs 1          # once: the export in benchmarks/out/ov-warm-state
    python benchmarks/bench_warm_parts.py [--runs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT  # noqa: E402

PARTS = """
import resource, sys, time
def now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt
def memory():
    d = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(d[k].split()[0]) // 1024 for k in ("RssAnon", "RssFile")}
sys.modules["openvino.tools.ovc"] = None
import numpy as np
onnx, cache, runtime, variant = sys.argv[1:5]
before, out = memory(), []
if runtime == "openvino":
    import openvino as ov
    core = ov.Core()
    if variant == "no-mmap":
        core.set_property({"ENABLE_MMAP": False})
    start = now()
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": cache}
    compiled = core.compile_model(onnx, "CPU", cfg)
    run = lambda x: compiled({"pixel_values": x})
    out.append(f"open {now()[0] - start[0]:.3f} (from cache: {compiled.get_property('LOADED_FROM_CACHE')})")
else:
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.log_severity_level = 3
    if variant == "basic":
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if variant == "extended":
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if variant == "no-prepacking":
        o.add_session_config_entry("session.disable_prepacking", "1")
    if variant == "no-arena":
        o.enable_cpu_mem_arena = False
    start = now()
    session = ort.InferenceSession(onnx, sess_options=o, providers=["CPUExecutionProvider"])
    run = lambda x: session.run(None, {"pixel_values": x})
    out.append(f"open {now()[0] - start[0]:.3f}")
for batch in (1, 1, 2, 2, 8):
    start = now()
    run(np.zeros((batch, 3, 224, 224), dtype=np.float32))
    end = now()
    out.append(f"b{batch} {end[0] - start[0]:.3f} ({end[1] - start[1]} faults)")
after = memory()
out.append("adds " + ", ".join(f"{k} {after[k] - before[k]} MB" for k in after))
print(f"| {runtime} {variant} | " + " | ".join(out) + " |", flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    (onnx,) = sorted((OUT / "ov-warm-state" / "models").resolve().glob("*/image.onnx"))
    variants = [("openvino", "default"), ("openvino", "no-mmap")] + [
        ("onnx", v) for v in ("default", "basic", "extended", "no-prepacking", "no-arena")
    ]
    with tempfile.TemporaryDirectory() as cache:
        subprocess.run([sys.executable, "-c", PARTS, str(onnx), cache, "openvino", "compile"], check=True)
        print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
        print("| runtime, options | CPU s: open, then each run at its batch size | memory |")
        for _ in range(args.runs):
            for runtime, variant in variants:
                subprocess.run([sys.executable, "-c", PARTS, str(onnx), cache, runtime, variant], check=True)
        print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
