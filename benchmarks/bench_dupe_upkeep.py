"""The daemon's duplicates upkeep for one new file among many near-identical frames, by neighbour bound.

    .venv/bin/python benchmarks/bench_dupe_upkeep.py --frames 1500 --adds 20

Builds a flat index of N near-identical 512-dim frames (all pairwise above the duplicates threshold),
runs the tracker's first pass, then adds `adds` more frames one at a time as the index tells the
tracker, timing each upkeep and counting the pairs it linked, with NEIGHBOUR_LIMIT at today's value
and at the old 1000.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from imgd.daemon.search.dupes import DEFAULT_THRESHOLD
from imgd.daemon.service import dupetracker
from imgd.daemon.store.index import VectorIndex


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--adds", type=int, default=20)
    args = parser.parse_args()
    dim = 512
    rng = np.random.default_rng(0)
    rows = rng.standard_normal(dim) + 0.05 * rng.standard_normal((args.frames + args.adds, dim))
    frames = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)
    ids = np.arange(1, len(frames) + 1, dtype=np.int64)
    for limit in (dupetracker.NEIGHBOUR_LIMIT, 1000):
        dupetracker.NEIGHBOUR_LIMIT = limit
        index = VectorIndex(dim)
        index.add(ids[: args.frames], frames[: args.frames].astype(np.float32))
        tracker = dupetracker.DupeTracker(index, lambda: (ids[: args.frames], frames[: args.frames]), DEFAULT_THRESHOLD)
        tracker.build()
        index.listeners.append(tracker)
        times, linked = [], []
        for n in range(args.frames, args.frames + args.adds):
            before = tracker.pair_count()
            started = time.perf_counter()
            index.add(ids[n : n + 1], frames[n : n + 1].astype(np.float32))
            times.append(time.perf_counter() - started)
            linked.append(tracker.pair_count() - before)
        print(
            f"limit {limit:5d}: one new frame among {args.frames}: median {statistics.median(times) * 1000:.1f} ms "
            f"(index add + upkeep), {statistics.median(linked):.0f} pairs linked"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
