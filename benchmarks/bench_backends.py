"""The model runtimes side by side on ViT-B/32 (random weights): first run, warm start, images/s, fidelity.

One run measures, in this order: the first `auto` load on an empty state folder (child-process export,
the backend measurement and OpenVINO's compile all included), then per backend the warm start (load
and open both towers from the cache) and the image tower's throughput on one batch of camera-shaped
pictures, and each backend's vectors against ONNX Runtime fp32 (min cosine, rank-1). torch last, as it
stays loaded once imported.

    python benchmarks/bench_backends.py [--batch 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ensure_model, log, machine_line  # noqa: E402

BACKENDS = (("onnx", "auto"), ("openvino", "auto"), ("openvino", "float32"), ("torch", "float32"))


def load(model: Path, state: Path, backend: str, precision: str = "auto"):
    from imgd.daemon.embedders import load_embedder

    return load_embedder(str(model), "cpu", precision, 32, backend=backend, state_dir=state)


def throughput(embedder, images: list, runs: int) -> tuple[float, np.ndarray]:
    """Median images/s over `runs` timed passes after a warm-up pass."""
    prepared = [embedder.prepare(image) for image in images]
    vectors = embedder.encode_images(prepared)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        embedder.encode_images(prepared)
        times.append(time.perf_counter() - started)
    return len(images) / statistics.median(times), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from imgd.daemon.embedders.preprocess import probe_image

    model = ensure_model()
    state = OUT / f"backends-{int(time.time())}"
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    started = time.monotonic()
    first = load(model, state, "auto")
    first.encode_texts(["a photo"])
    first_run = time.monotonic() - started
    print(f"first auto load on an empty state folder: {first_run:.1f} s -> {first.backend} {first.precision}")
    print(f"  why: {first.reason}")
    del first
    gc.collect()
    images = [probe_image(seed, (1600, 1200) if seed % 2 else (1200, 1600)) for seed in range(args.batch)]
    rows, reference = [], None
    for backend, precision in BACKENDS:
        log(f"{backend} {precision}")
        started = time.monotonic()
        embedder = load(model, state, backend, precision)
        embedder.encode_texts(["a photo"])
        embedder.encode_images([])
        warm = time.monotonic() - started
        speed, vectors = throughput(embedder, images, args.runs)
        if reference is None:
            reference = vectors
        cos = np.sum(vectors * reference, axis=1)
        rank1 = float(np.mean(np.argmax(vectors @ reference.T, axis=1) == np.arange(len(reference))))
        rows.append(
            {
                "backend": backend,
                "precision": embedder.precision,
                "warm_start_s": round(warm, 2),
                "images_per_s": round(speed, 2),
                "min_cosine": round(float(cos.min()), 6),
                "rank1": rank1,
            }
        )
        print(json.dumps(rows[-1]))
        del embedder
        gc.collect()
    base = rows[0]["images_per_s"]
    print(machine_line())  # imports torch: after the runs that must not
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"\nViT-B/32, batch {args.batch}, median of {args.runs}; warm start = load + open both towers")
    print("backend   precision  warm start  images/s  vs onnx  min cosine  rank-1")
    for row in rows:
        print(
            f"{row['backend']:9} {row['precision']:10} {row['warm_start_s']:8.2f} s {row['images_per_s']:9.1f} "
            f"{row['images_per_s'] / base:7.2f}x {row['min_cosine']:11.6f} {row['rank1']:6.0%}"
        )
    (OUT / "bench_backends.json").write_text(json.dumps({"first_run_s": first_run, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
