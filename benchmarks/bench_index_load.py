"""The index file's load at 1M: read, checksum, FAISS's parse, as `imgd run` does before it answers.

    python benchmarks/bench_index_load.py [--count 1000000] [--out /tmp/bench-index-load]

Builds once (minutes: the clustering) an index file as the daemon saves it past EXACT_LIMIT (`ivf.build`,
8-bit IVF, over random unit vectors in blocks, ids 1..N), then times `VectorIndex.read` three times beside
its parts: the file read whole and its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DIM = 512


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-index-load"))
    args = parser.parse_args()

    import common
    from imgd.daemon.store import ivf
    from imgd.daemon.store.index import VectorIndex

    count = args.count
    path = args.out / f"index-{count}.faiss"
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {common.cpu_model()}, {os.cpu_count()} cores", flush=True)
    if not path.exists():
        started = time.monotonic()
        rng = np.random.default_rng(1)

        def unit(n: int) -> np.ndarray:
            vectors = rng.standard_normal((n, DIM)).astype(np.float32)
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

        def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for first in range(0, count, 50_000):
                n = min(50_000, count - first)
                yield np.arange(first + 1, first + n + 1, dtype=np.int64), unit(n)

        raw, _ = ivf.build(count, lambda: unit(ivf.sample_size(count)), blocks(), threading.Event())
        index = VectorIndex(DIM, raw)
        index.generation, index.background = count, True
        index.save(path)
        print(f"built in {time.monotonic() - started:.0f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}; file {path.stat().st_size / 1e6:.0f} MB", flush=True)
    for _ in range(3):
        started = time.monotonic()
        data = path.read_bytes()
        read = time.monotonic() - started
        started = time.monotonic()
        hashlib.sha256(data).hexdigest()
        digest = time.monotonic() - started
        del data
        started = time.monotonic()
        index, _header = VectorIndex.read(path)
        load = time.monotonic() - started
        print(
            f"read whole {read:.2f} s, sha256 {digest:.2f} s, VectorIndex.read {load:.2f} s "
            f"({type(index._index).__name__}, {len(index):,} vectors)",
            flush=True,
        )
        del index
    return 0


if __name__ == "__main__":
    sys.exit(main())
