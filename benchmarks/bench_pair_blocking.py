"""Peak RSS of the duplicates pass's blocking alone (sample, PCA, k-means): np.cov's way against pairs.blocking.

python benchmarks/bench_pair_blocking.py CATALOG
"""

from __future__ import annotations

import sys
import time

import bench_memory
import common
import numpy as np


def main() -> None:
    from imgd.daemon.search import pairs
    from imgd.daemon.store.catalog import Catalog

    catalog = Catalog(sys.argv[1], readonly=True)
    ids = catalog.vector_ids()
    nlist = pairs.list_count(len(ids))
    rows = pairs.sample_rows(len(ids), nlist)
    sample16 = catalog.vectors_by_id(ids[rows]).astype(np.float16)
    print("vectors", len(ids), "nlist", nlist, "sample", len(rows), flush=True)

    def with_cov() -> np.ndarray:  # as pairs._pairs_blocked did before issue 21's session 4
        sample = sample16.astype(np.float32)
        mean = sample.mean(axis=0)
        axes = np.linalg.eigh(np.cov(sample - mean, rowvar=False))[1][:, ::-1][:, : pairs.PAIRS_PCA_DIM]
        axes = np.ascontiguousarray(axes, dtype=np.float32)
        return pairs.train_centroids((sample - mean) @ axes, nlist, iterations=6, seed=1, max_points_per_centroid=40)

    for name, run in (("np.cov", with_cov), ("pairs.blocking", lambda: pairs.blocking(sample16, nlist))):
        bench_memory.reset_peak()
        before, started = common.rss_bytes(), time.monotonic()
        run()
        peak = bench_memory.mb(bench_memory.status("VmHWM:") - before)
        print(name, "s", round(time.monotonic() - started, 1), "peak added MB", peak, flush=True)


if __name__ == "__main__":
    main()
