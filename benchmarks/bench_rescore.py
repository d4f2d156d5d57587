"""What 8-bit lists and re-scoring from the catalog cost a query, paired with float16 lists (issue 21).

    python benchmarks/bench_rescore.py --contents 100000     # after bench_memory.py made and indexed it

Loads the 8-bit IVF that bench_memory.py saved for the catalog, builds beside it the float16 IVF imgd
used before (the same centroids, nprobe and margin), and times the same queries on both, alternating so
both see the same load: float16 lists alone (the old search), 8-bit lists alone (the top 40 by codes),
and the new search (8-bit lists + the 40 candidates re-scored from SQLite). Recall@10 of each against an
exact scan of the catalog's float16 vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import common
import faiss
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contents", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_search import Mixture
    from imgd.daemon.store import ivf
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.store.index import VectorIndex

    path = common.OUT / f"mem-{args.contents}-{args.share}" / "catalog.db"
    catalog = Catalog(path, readonly=True)
    index = VectorIndex.load_verified(path.parent / f"index{args.tag}.faiss", catalog, 512)
    new = index._index
    assert index.kind == "ivf", "run bench_memory.py first: it saves the 8-bit IVF"
    quantizer = faiss.IndexFlatIP(new.d)
    quantizer.add(new.quantizer.reconstruct_n(0, new.nlist))
    old = faiss.IndexIVFScalarQuantizer(quantizer, new.d, new.nlist, faiss.ScalarQuantizer.QT_fp16)
    old.metric_type = faiss.METRIC_INNER_PRODUCT
    old.by_residual = False
    old.train(quantizer.reconstruct_n(0, new.nlist))
    old.nprobe = new.nprobe
    stored = []
    for ids, vectors in catalog.iter_vectors():
        old.add_with_ids(vectors, ids)
        stored.append((ids, vectors.astype(np.float16)))
    queries = Mixture(dim=512, centres=max(10, args.contents // 300)).sample(args.queries, seed=99, extra_noise=0.3)
    faiss.omp_set_num_threads(1)
    runs = {
        "float16 lists (before)": lambda q: ivf.probe(old, q[None], 10, None, 1, index.probe_margin)[1][0].tolist(),
        "8-bit lists, codes only": lambda q: ivf.probe(new, q[None], 10, None, 1, index.probe_margin)[1][0].tolist(),
        "8-bit lists + re-scored (after)": lambda q: [i for i, _ in index.search(q, 10)],
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    found: dict[str, list[list[int]]] = {name: [] for name in runs}
    for query in queries:
        for name, run in runs.items():
            started = time.perf_counter()
            found[name].append(run(query))
            times[name].append(time.perf_counter() - started)
    truth = []
    for query in queries:
        scores = np.concatenate([v.astype(np.float32) @ query for _, v in stored])
        ids = np.concatenate([i for i, _ in stored])
        truth.append(set(ids[np.argsort(-scores)[:10]].tolist()))
    print(f"CPU: {common.cpu_model()}, load {os.getloadavg()[0]:.1f}, nprobe {new.nprobe}, lists {new.nlist}")

    def recall(name: str) -> float:
        return round(float(np.mean([len(set(f) & t) / 10 for f, t in zip(found[name], truth, strict=True)])), 4)

    rows = {
        name: {
            "p50_ms": round(statistics.median(times[name]) * 1000, 2),
            "p99_ms": round(float(np.quantile(times[name], 0.99)) * 1000, 2),
            "recall_at_10": recall(name),
        }
        for name in runs
    }
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
