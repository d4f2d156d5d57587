"""OpenVINO image-tower images/s per batch size: four timed runs each, after a warm-up picture.

python benchmarks/bench_probe_batch.py STATE_DIR auto|float32 [openvino|onnx]
"""

import sys
import time

sys.path.insert(0, "benchmarks")
from pathlib import Path

from imgd.daemon.embedders import load_embedder
from imgd.daemon.embedders.preprocess import probe_image

state = Path(sys.argv[1])
prec = sys.argv[2]
backend = sys.argv[3] if len(sys.argv) > 3 else "openvino"
e = load_embedder("benchmarks/out/vit-b-32", "cpu", prec, 32, backend=backend, state_dir=state)
pix = [e.prepare(probe_image(s)) for s in range(32)]
e.encode_images(pix[:1])
for b in (4, 4, 8, 8, 16, 32, 4):
    ts = []
    for _ in range(4):
        t = time.perf_counter()
        e.encode_images(pix[:b])
        ts.append(time.perf_counter() - t)
    print(backend, prec, "batch", b, "img/s per run:", " ".join(f"{b / t:.1f}" for t in ts), flush=True)
