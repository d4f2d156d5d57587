"""OpenMP wait policy and torch thread count vs. ViT-B/32 forward time, on a shared CPU.

Runs each setting in a fresh process (the policy is read when OpenMP starts) and prints the time of
one text query (16 tokens) and one batch of 8 images. Run it while the machine is busy too (for
example beside `bench_index.py`): that is what a desktop or a Nice=10 service sees.

    .venv/bin/python benchmarks/bench_threads.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "benchmarks" / "out" / "vit-b-32"

CHILD = """
import statistics, sys, time, torch
from transformers import CLIPModel
model = CLIPModel.from_pretrained(sys.argv[1]).eval()
torch.set_num_threads(int(sys.argv[2]))
ids = torch.randint(2, 100, (1, 16))
pixels = torch.randn(8, 3, 224, 224)
with torch.inference_mode():
    model.get_text_features(input_ids=ids)
    samples = []
    for _ in range(5):
        t = time.perf_counter(); model.get_text_features(input_ids=ids); samples.append(time.perf_counter() - t)
    text = statistics.median(samples)
    t = time.perf_counter(); model.get_image_features(pixel_values=pixels); image = time.perf_counter() - t
print(f"{text:.3f} {image:.3f}")
"""


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from clipkit import build_clip

    build_clip(MODEL, size="vit-b-32")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("policy   threads  text query (median of 5)  8-image batch")
    for policy in ("ACTIVE", "PASSIVE"):
        for threads in (1, 2):
            env = {**os.environ, "OMP_WAIT_POLICY": policy}
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(MODEL), str(threads)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            print(f"{policy:8} {threads:7}  {float(out[0]) * 1000:8.0f} ms                {float(out[1]):6.2f} s")


if __name__ == "__main__":
    main()
