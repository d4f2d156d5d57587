"""Where the index's memory goes at 100k-1M vectors, and what its search gives back (issue 21, point 2).

    python benchmarks/bench_memory.py --contents 100000
    python benchmarks/bench_memory.py --contents 1000000 --share 0.3     # 30% videos, 2-3 frames each

Builds once (benchmarks/out/mem-N-S/catalog.db) a catalog of N contents with clustered 512-dim vectors
(bench_search.Mixture: CLIP-like), a share S of them videos with 2 or 3 vectors. Then, in one process,
the RSS (current and peak: VmHWM reset before each stage through /proc/self/clear_refs) of each stage of
the daemon's index life: open the catalog, build the index from it (no index file: an upgrade or a
damaged file), save it, load it back from the file, and search: p50/p99 of one query (grouped by content
as the searcher does, fetching more when frames of one video fill the top k) and recall@10 of contents
against an exact scan of the catalog's float16 vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import common
import numpy as np

DIM = 512


def status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) << 10
    return 0


def reset_peak() -> None:
    """Restart VmHWM from the current RSS, so the next stage's peak is its own."""
    common.rss_bytes()  # malloc_trim first: freed heap would otherwise count
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def mb(n: int) -> int:
    return round(n / 2**20)


def measured(name: str, run: object) -> tuple[dict[str, float], object]:
    """Run one stage; its seconds, RSS added and peak RSS added (MB), the load average, and its value."""
    reset_peak()
    before, started = common.rss_bytes(), time.monotonic()
    value = run()  # type: ignore[operator]
    row = {
        "s": round(time.monotonic() - started, 2),
        "rss_mb": mb(common.rss_bytes() - before),
        "peak_mb": mb(status("VmHWM:") - before),
        "load_avg": round(os.getloadavg()[0], 1),
    }
    common.log(f"{name}: {row}")
    return row, value


def make(path: Path, count: int, share: float) -> None:
    """The catalog: count contents, a share of them videos with 2-3 vectors each (made once)."""
    from bench_search import Mixture
    from imgd.daemon.store.catalog import Catalog

    done = path.with_suffix(".complete")
    if done.exists():
        return
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(7)
    frames = np.where(rng.random(count) < share, rng.integers(2, 4, count), 1)
    mixture = Mixture(dim=DIM, centres=max(10, count // 300))
    catalog = Catalog(path)
    catalog.ensure_model("bench", DIM)
    started, block = time.monotonic(), 20_000
    for first in range(0, count, block):
        owners = np.repeat(np.arange(first, min(count, first + block)), frames[first : first + block])
        vectors = mixture.sample(len(owners), seed=first).astype(np.float16)
        _, firsts = np.unique(owners, return_index=True)
        at = np.arange(len(owners)) - np.repeat(firsts, frames[first : first + block])  # a frame's place
        with catalog.transaction():
            catalog.conn.executemany(
                "INSERT INTO contents(id, hash, width, height) VALUES (?, ?, 640, 480)",
                ((int(c) + 1, f"{c:064x}") for c in range(first, min(count, first + block))),
            )
            catalog.conn.executemany(
                "INSERT INTO vectors(content_id, at, vector) VALUES (?, ?, ?)",
                ((int(c) + 1, float(t), v.tobytes()) for c, t, v in zip(owners, at, vectors, strict=True)),
            )
            catalog.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        common.log(f"made {min(count, first + block):,} of {count:,} contents ({time.monotonic() - started:.0f} s)")
    catalog.close()
    done.write_text(f"{count}\n")


def truth_of(catalog, queries: np.ndarray, owner: dict[int, int], k: int, depth: int = 100) -> list[set[int]]:  # noqa: ANN001
    """Each query's exact top-k contents from the catalog's own float16 vectors, a chunk at a time."""
    best_ids = np.full((len(queries), depth), -1, dtype=np.int64)
    best = np.full((len(queries), depth), -np.inf, dtype=np.float32)
    for ids, vectors in catalog.iter_vectors(50_000):
        scores = queries @ vectors.T
        both = np.concatenate([best, scores], axis=1)
        both_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        keep = np.argpartition(-both, depth, axis=1)[:, :depth]
        best = np.take_along_axis(both, keep, axis=1)
        best_ids = np.take_along_axis(both_ids, keep, axis=1)
    truths = []
    for row_scores, row_ids in zip(best, best_ids, strict=True):
        items: list[int] = []
        for i in row_ids[np.argsort(-row_scores, kind="stable")]:
            content = owner[int(i)]
            if content not in items:
                items.append(content)
        truths.append(set(items[:k]))
    return truths


def measure(path: Path, count: int, queries: int, k: int = 10, tag: str = "") -> dict[str, object]:
    import faiss
    from bench_search import Mixture
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.store.index import VectorIndex

    faiss.omp_set_num_threads(2)
    row: dict[str, object] = {"rss_imports_mb": mb(common.rss_bytes())}
    stages: dict[str, tuple[int, int]] = {}

    def stage(name: str, started: float, before: int) -> None:
        stages[name] = (mb(common.rss_bytes() - before), mb(status("VmHWM:") - before))
        row[f"{name}_s"] = round(time.monotonic() - started, 1)
        common.log(f"{name}: {time.monotonic() - started:.1f} s, RSS +{stages[name][0]} MB, peak +{stages[name][1]} MB")

    reset_peak()
    before, started = common.rss_bytes(), time.monotonic()
    catalog = Catalog(path, readonly=True)
    vectors_total = catalog.count_vectors()
    stage("open", started, before)

    index_path = path.parent / f"index{tag}.faiss"
    index_path.unlink(missing_ok=True)
    reset_peak()
    before, started = common.rss_bytes(), time.monotonic()
    index = VectorIndex.load_verified(index_path, catalog, DIM)
    stage("build", started, before)
    row["index"] = index.describe()

    reset_peak()
    before, started = common.rss_bytes(), time.monotonic()
    index.save(index_path)
    stage("save", started, before)
    row["file_mb"] = mb(index_path.stat().st_size)
    index.close()
    del index
    reset_peak()
    before, started = common.rss_bytes(), time.monotonic()
    index = VectorIndex.load_verified(index_path, catalog, DIM)
    stage("load", started, before)
    row["rss_loaded_mb"] = mb(common.rss_bytes())

    owner = dict(catalog.conn.execute("SELECT id, content_id FROM vectors").fetchall())
    asked = Mixture(dim=DIM, centres=max(10, count // 300)).sample(queries, seed=99, extra_noise=0.3)
    reset_peak()
    before = common.rss_bytes()
    times, found = [], []
    faiss.omp_set_num_threads(1)
    for query in asked:
        started = time.monotonic()
        fetch = k
        while True:  # as Searcher._live_hits: more while frames of one video leave fewer than k contents
            items: list[int] = []
            for vector_id, _ in index.search(query, fetch):
                if owner[vector_id] not in items:
                    items.append(owner[vector_id])
            if len(items) >= k or fetch >= vectors_total:
                break
            fetch *= 4
        times.append(time.monotonic() - started)
        found.append(set(items[:k]))
    stages["search"] = (mb(common.rss_bytes() - before), mb(status("VmHWM:") - before))
    truths = truth_of(catalog, asked, owner, k)
    row.update(
        {
            "contents": count,
            "vectors": vectors_total,
            "p50_ms": round(statistics.median(times) * 1000, 2),
            "p99_ms": round(float(np.quantile(times, 0.99)) * 1000, 2),
            "recall_at_10": round(float(np.mean([len(f & t) / k for f, t in zip(found, truths, strict=True)])), 4),
            "stages_rss_peak_mb": stages,
        }
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contents", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.0, help="videos among the contents (2-3 vectors each)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tag", default="", help="index file index<TAG>.faiss: two runs over one catalog at once")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    path = common.OUT / f"mem-{args.contents}-{args.share}" / "catalog.db"
    make(path, args.contents, args.share)
    common.log(f"CPU: {common.cpu_model()}, load {os.getloadavg()[0]:.1f}")
    print(json.dumps(measure(path, args.contents, args.queries, tag=args.tag), indent=1))


if __name__ == "__main__":
    main()
