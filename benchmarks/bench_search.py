"""Search at scale: exact vs approximate FAISS indexes on synthetic CLIP-like vectors (dim 512).

The vectors are a mixture of a few thousand gaussian centres inside a common cone, with a
power-law covariance spectrum (real embeddings are anisotropic, not uniform on the sphere), L2-
normalised. Queries are fresh draws from the same mixture with extra noise. Every size is a prefix
of one sample, so the sizes share their data. For each index: build time, single-query latency
p50/p99 (one query per call, as the daemon asks) with 1 and 2 FAISS threads, recall@10 against
exact search, serialized bytes (= file size), RSS delta, and the smallest efSearch / nprobe that
reaches the recall target.

    python benchmarks/bench_search.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import common
import faiss
import numpy as np
from common import log

DIM = 512
K = 10
EF_SWEEP = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_SWEEP = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass
class Row:
    size: int
    index: str
    params: str
    build_s: float
    recall: float
    p50_ms_t1: float
    p99_ms_t1: float
    p50_ms_t2: float
    p99_ms_t2: float
    serialized_mb: float
    file_mb: float
    rss_delta_mb: float
    save_s: float
    load_s: float
    notes: str = ""
    sweep: dict[str, float] = field(default_factory=dict)


class Mixture:
    """CLIP-like unit vectors: common direction + cluster centre + anisotropic noise."""

    def __init__(self, dim: int = DIM, centres: int = 3000, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        spectrum = 1.0 / np.arange(1, dim + 1) ** 0.8  # a power-law decay of variance
        self.scale = (np.sqrt(spectrum / spectrum.sum() * dim) * 1.0).astype(np.float32)
        self.rotation = rotation.astype(np.float32)
        self.common = self._unit(rng.standard_normal((1, dim)).astype(np.float32))
        self.centres = self._unit(self._shape(rng.standard_normal((centres, dim)).astype(np.float32)))
        weights = rng.pareto(1.5, centres) + 0.2  # some subjects are far more frequent than others
        self.weights = weights / weights.sum()
        self.spread = rng.uniform(0.7, 1.3, centres).astype(np.float32)
        # Squared weights of the three parts: cos(random pair) ~ 0.4, cos(same cluster) ~ 0.7.
        self.a, self.b, self.s = np.sqrt(0.40), np.sqrt(0.30), np.sqrt(0.30)

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def _shape(self, gauss: np.ndarray) -> np.ndarray:
        return (gauss * self.scale) @ self.rotation

    def sample(self, n: int, seed: int, extra_noise: float = 0.0, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            assign = rng.choice(len(self.weights), m, p=self.weights)
            noise = self._shape(rng.standard_normal((m, self.dim)).astype(np.float32)) / np.sqrt(self.dim)
            noise *= self.spread[assign, None] * (1.0 + extra_noise)
            x = self.a * self.common + self.b * self.centres[assign] + self.s * noise
            out[start : start + m] = self._unit(x)
        return out


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    _, ids = index.search(queries, k)
    return ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def single_query_latency(index: faiss.Index, queries: np.ndarray, threads: int, budget_s: float) -> tuple[float, float]:
    """p50/p99 in ms of one-query searches, as many as fit in budget_s (at least 20)."""
    faiss.omp_set_num_threads(threads)
    for q in queries[:3]:  # warm caches and thread pools
        index.search(q[None, :], K)
    times: list[float] = []
    started = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], K)
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= 20 and time.perf_counter() - started > budget_s:
            break
    return common.percentile(times, 50), common.percentile(times, 99)


def tune(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, target: float, kind: str) -> tuple[int, dict]:
    """Smallest efSearch / nprobe whose recall@10 on the tuning queries reaches target."""
    sweep: dict[str, float] = {}
    values = EF_SWEEP if kind == "hnsw" else NPROBE_SWEEP
    chosen = values[-1]
    for value in values:
        if kind == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = value
        else:
            if value > faiss.downcast_index(index).nlist:
                break
            faiss.downcast_index(index).nprobe = value
        _, found = index.search(queries, K)
        sweep[str(value)] = recall_at_k(found, truth)
        if sweep[str(value)] >= target:
            chosen = value
            break
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = chosen
    else:
        faiss.downcast_index(index).nprobe = chosen
    return chosen, sweep


def make_index(spec: str, n: int) -> tuple[faiss.Index, str, str]:
    """(index, kind, params) for a spec: flat, hnsw:M:efC, hnswsq8:M:efC, hnswfp16:M:efC, ivf[:nlist]."""
    parts = spec.split(":")
    name = parts[0]
    if name == "flat":
        return faiss.IndexFlatIP(DIM), "flat", ""
    if name.startswith("hnsw"):
        m = int(parts[1]) if len(parts) > 1 else 32
        efc = int(parts[2]) if len(parts) > 2 else 80
        if name == "hnsw":
            index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
        else:
            qtype = {"hnswsq8": faiss.ScalarQuantizer.QT_8bit, "hnswfp16": faiss.ScalarQuantizer.QT_fp16}[name]
            index = faiss.IndexHNSWSQ(DIM, qtype, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = efc
        return index, "hnsw", f"M={m} efC={efc}"
    if name in ("ivf", "ivffp16"):
        nlist = int(parts[1]) if len(parts) > 1 else int(round(4 * np.sqrt(n)))
        quantizer = faiss.IndexFlatIP(DIM)
        if name == "ivf":
            index = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, DIM, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        return index, "ivf", f"nlist={nlist}"
    raise ValueError(f"unknown index spec {spec!r}")


def bench_one(spec: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> Row:
    n = len(data)
    faiss.omp_set_num_threads(args.build_threads)
    gc.collect()
    rss0 = common.rss_bytes()
    index, kind, params = make_index(spec, n)
    started = time.perf_counter()
    if not index.is_trained:
        rng = np.random.default_rng(1)
        train_n = min(n, args.train_per_list * getattr(index, "nlist", 1) if kind == "ivf" else n)
        sample = data[np.sort(rng.choice(n, train_n, replace=False))] if train_n < n else data
        index.train(sample)
        params += f" train={train_n}"
    index.add(data)
    build_s = time.perf_counter() - started
    rss_delta = (common.rss_bytes() - rss0) / 1e6
    log(f"  {spec} @ {n}: built in {build_s:.1f} s")
    sweep: dict[str, float] = {}
    if kind in ("hnsw", "ivf"):
        chosen, sweep = tune(index, queries[: args.tune_queries], truth[: args.tune_queries], args.target, kind)
        params += f" {'efSearch' if kind == 'hnsw' else 'nprobe'}={chosen}"
    _, found = index.search(queries, K)
    recall = recall_at_k(found, truth)
    lat_queries = queries[args.tune_queries :] if len(queries) > args.tune_queries else queries
    p50_1, p99_1 = single_query_latency(index, lat_queries, 1, args.latency_budget)
    p50_2, p99_2 = single_query_latency(index, lat_queries, 2, args.latency_budget)
    faiss.omp_set_num_threads(args.build_threads)
    started = time.perf_counter()
    payload = faiss.serialize_index(index)
    serialized = payload.nbytes
    with tempfile.NamedTemporaryFile(dir=args.tmp, suffix=".faiss", delete=True) as fh:
        fh.write(payload.tobytes())
        fh.flush()
        save_s = time.perf_counter() - started
        del payload
        file_mb = Path(fh.name).stat().st_size / 1e6
        started = time.perf_counter()
        loaded = faiss.read_index(fh.name)
        load_s = time.perf_counter() - started
        del loaded
    log(f"  {spec} @ {n}: {params} recall {recall:.3f} p50 {p50_1:.2f}/{p50_2:.2f} ms (1/2 threads)")
    row = Row(
        size=n,
        index=spec.split(":")[0],
        params=params.strip(),
        build_s=build_s,
        recall=recall,
        p50_ms_t1=p50_1,
        p99_ms_t1=p99_1,
        p50_ms_t2=p50_2,
        p99_ms_t2=p99_2,
        serialized_mb=serialized / 1e6,
        file_mb=file_mb,
        rss_delta_mb=rss_delta,
        save_s=save_s,
        load_s=load_s,
        sweep=sweep,
    )
    del index
    gc.collect()
    return row


def bench_imgd(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> Row:
    """imgd's own VectorIndex: what it chooses at this size (exact or IVF), its own nprobe tuning, its save."""
    from imgd.daemon.store.index import VectorIndex

    n = len(data)
    faiss.omp_set_num_threads(args.build_threads)
    gc.collect()
    rss0 = common.rss_bytes()
    started = time.perf_counter()
    index = VectorIndex(DIM)
    for start in range(0, n, 100_000):
        index.add(np.arange(start, min(n, start + 100_000)), data[start : start + 100_000])
    index.rebuild_if_due()  # what a one-shot `imgd index` does before it saves
    build_s = time.perf_counter() - started
    rss_delta = (common.rss_bytes() - rss0) / 1e6
    params = f"nlist={index._index.nlist} nprobe={index.nprobe}" if index.kind == "ivf" else "exact"
    log(f"  imgd @ {n}: {index.kind} {params}, built in {build_s:.1f} s")
    found = np.array([[i for i, _ in index.search(q, K)] + [-1] * (K - min(K, n)) for q in queries])
    recall = recall_at_k(found, truth)
    times: list[float] = []
    budget_started = time.perf_counter()
    for q in queries[args.tune_queries :] if len(queries) > args.tune_queries else queries:
        t0 = time.perf_counter()
        index.search(q, K)  # imgd always searches with one FAISS thread
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= 20 and time.perf_counter() - budget_started > args.latency_budget:
            break
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "index.faiss"
        started = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - started
        file_mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        VectorIndex.read(path)
        load_s = time.perf_counter() - started
    p50, p99 = common.percentile(times, 50), common.percentile(times, 99)
    log(f"  imgd @ {n}: recall {recall:.3f} p50 {p50:.2f} ms p99 {p99:.2f} ms")
    row = Row(
        n,
        "imgd",
        params,
        build_s,
        recall,
        p50,
        p99,
        float("nan"),
        float("nan"),
        file_mb,
        file_mb,
        rss_delta,
        save_s,
        load_s,
    )
    del index
    gc.collect()
    return row


def describe(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> str:
    """Cosine statistics, to compare the synthetic set with what real CLIP embeddings look like."""
    rng = np.random.default_rng(3)
    a, b = data[rng.integers(0, len(data), 5000)], data[rng.integers(0, len(data), 5000)]
    random_pairs = np.einsum("ij,ij->i", a, b)
    nn1 = np.einsum("ij,ij->i", queries, data[truth[:, 0]])
    nn10 = np.einsum("ij,ij->i", queries, data[truth[:, -1]])
    return (
        f"cosine medians: random pair {np.median(random_pairs):.3f}, query to 1st neighbour {np.median(nn1):.3f}, "
        f"to 10th {np.median(nn10):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated catalog sizes")
    parser.add_argument(
        "--indexes",
        default="flat,hnsw:32:80,hnsw:32:200,ivf",
        help="comma-separated specs: imgd (its own VectorIndex), flat, hnsw:M:efC, hnswfp16:M:efC, "
        "hnswsq8:M:efC, ivf[:nlist], ivffp16[:nlist]",
    )
    parser.add_argument(
        "--indexes-large",
        default=None,
        help="specs for sizes >= 1,000,000 (default: same as --indexes); HNSW builds are slow there",
    )
    parser.add_argument("--flat-only-sizes", default="", help="extra sizes measured with flat only (threshold)")
    parser.add_argument("--queries", type=int, default=1000, help="queries with exact ground truth (default 1000)")
    parser.add_argument("--tune-queries", type=int, default=500, help="of those, used to tune efSearch/nprobe")
    parser.add_argument("--target", type=float, default=0.98, help="recall@10 target (default 0.98)")
    parser.add_argument("--latency-budget", type=float, default=10.0, help="seconds per latency measurement")
    parser.add_argument("--build-threads", type=int, default=2, help="FAISS threads for building and tuning")
    parser.add_argument("--train-per-list", type=int, default=40, help="IVF training points per list")
    parser.add_argument("--centres", type=int, default=3000, help="mixture centres (default 3000)")
    parser.add_argument("--tmp", default=None, help="folder for the temporary index files")
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "default"],
        help="OMP_WAIT_POLICY for FAISS (default PASSIVE, what imgd sets in imgd.daemon)",
    )
    parser.add_argument("--json", type=Path, default=common.OUT / "bench_search.json", help="write figures here")
    args = parser.parse_args()
    wanted = None if args.omp_wait_policy == "default" else args.omp_wait_policy
    if os.environ.get("OMP_WAIT_POLICY") != wanted:
        # OpenMP reads the policy once, when FAISS loads it: start again with the policy set.
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if wanted:
            env["OMP_WAIT_POLICY"] = wanted
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    flat_only = [int(s) for s in args.flat_only_sizes.split(",") if s]
    largest = max(sizes + flat_only)
    log(f"machine: {common.machine_line()}, faiss {faiss.__version__}")
    mixture = Mixture(centres=args.centres)
    started = time.perf_counter()
    data = mixture.sample(largest, seed=10)
    queries = mixture.sample(args.queries, seed=20, extra_noise=0.3)
    log(f"generated {largest} x {DIM} vectors in {time.perf_counter() - started:.0f} s")
    rows: list[Row] = []
    stats: dict[int, str] = {}
    for n in sorted(set(sizes + flat_only)):
        subset = data[:n]
        faiss.omp_set_num_threads(args.build_threads)
        truth = exact_topk(subset, queries, K)
        stats[n] = describe(subset, queries, truth)
        log(f"size {n}: {stats[n]}")
        specs = ["flat"] if n not in sizes else args.indexes.split(",")
        if n >= 1_000_000 and args.indexes_large and n in sizes:
            specs = args.indexes_large.split(",")
        for spec in specs:
            rows.append(
                bench_imgd(subset, queries, truth, args)
                if spec == "imgd"
                else bench_one(spec, subset, queries, truth, args)
            )
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"stats": stats, "rows": [asdict(r) for r in rows]}, indent=2))

    header = (
        f"{'N':>9} {'index':<9} {'params':<38} {'build s':>8} {'recall':>7} {'p50 1t':>7} {'p99 1t':>7} "
        f"{'p50 2t':>7} {'p99 2t':>7} {'MB ser':>8} {'MB RSS':>8} {'save s':>7} {'load s':>7}"
    )
    print(
        f"machine: {common.machine_line()}, faiss {faiss.__version__}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}"
    )
    for n, line in stats.items():
        print(f"N={n}: {line}")
    print(header)
    for r in rows:
        print(
            f"{r.size:>9} {r.index:<9} {r.params:<38} {r.build_s:>8.1f} {r.recall:>7.3f} {r.p50_ms_t1:>7.2f} "
            f"{r.p99_ms_t1:>7.2f} {r.p50_ms_t2:>7.2f} {r.p99_ms_t2:>7.2f} {r.serialized_mb:>8.0f} "
            f"{r.rss_delta_mb:>8.0f} {r.save_s:>7.2f} {r.load_s:>7.2f}"
        )
    print("latency in ms, one query per search call; MB ser = bytes of faiss.serialize_index (= file size)")


if __name__ == "__main__":
    sys.exit(main())
