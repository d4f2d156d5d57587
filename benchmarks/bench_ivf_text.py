"""Recall@10 of text queries on imgd's IVF index, over real CLIP vectors from the shapes model.

imgd tunes IVF's nprobe on stored image vectors moved off by noise, but a text query sits elsewhere in
CLIP space (the modality gap: its best cosine to any picture is far lower than a picture's to its
neighbours). This embeds a library of generated pictures (tests/shapekit.py) with the trained shapes
model (tests/models/shapes-clip), builds imgd's VectorIndex with exact_limit lowered so it switches to
IVF exactly as `imgd index` does, and measures recall@10 against exact search for:

- every caption the model knows ("a red circle", "a photo of a star", "blue", ...),
- combined queries (a shape minus a colour; a picture plus a shape word),
- picture queries: fresh pictures (not in the library) and stored vectors with noise (what tuning uses).

Recall counts a found image as right when its exact score reaches the 10th best exact score (less
1e-5): a generated library holds near-identical pictures, whose ties would otherwise read as misses.

It also times single queries (one FAISS thread, as imgd searches) with imgd's rule and with the fixed
nprobe alone, interleaved on the same index; `--mixture N` does that for picture-like queries on N
512-d vectors from bench_search.py's mixture, where a query's coarse pass costs more.

    .venv/bin/python benchmarks/bench_ivf_text.py --count 30000
    .venv/bin/python benchmarks/bench_ivf_text.py --mixture 100000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import shapekit  # noqa: E402
from imgd.daemon.store import ivf  # noqa: E402
from imgd.daemon.store.index import VectorIndex  # noqa: E402

K = 10


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def library_vectors(embedder: object, count: int, seed: int, cache: Path) -> np.ndarray:
    """count pictures of random classes, embedded; kept in benchmarks/out/ for the next run."""
    if cache.exists():
        vectors = np.load(cache)
        if len(vectors) == count:
            return vectors
    rng = random.Random(seed)
    vectors = []
    started = time.monotonic()
    for start in range(0, count, 500):
        pictures = []
        for n in range(start, min(count, start + 500)):
            colour, shape = rng.choice(shapekit.CLASSES)
            pictures.append(embedder.prepare(shapekit.shape_image(colour, shape, 20_000_000 + n)))
        vectors.append(embedder.encode_images(pictures))
    result = np.concatenate(vectors)
    print(f"embedded {count} generated pictures in {time.monotonic() - started:.0f}s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, result)
    return result


def query_sets(embedder: object, vectors: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    texts = sorted(
        {
            text
            for colour, shape in shapekit.CLASSES
            for background in shapekit.BACKGROUNDS
            for text in shapekit.captions(colour, shape, background)
        }
    )
    text_vectors = unit(embedder.encode_texts(texts))
    words = {text: vector for text, vector in zip(texts, text_vectors, strict=True)}
    negatives = unit(
        np.stack([words[f"a {shape}"] - words[colour] for shape in shapekit.SHAPES for colour in shapekit.COLOURS])
    )
    fresh = []
    for n, (colour, shape) in enumerate(shapekit.CLASSES * 4):
        fresh.append(embedder.prepare(shapekit.shape_image(colour, shape, 30_000_000 + n)))
    fresh_vectors = unit(embedder.encode_images(fresh))
    mixed = unit(
        np.stack(
            [
                fresh_vectors[n] + words[f"a {shapekit.SHAPES[(shapekit.SHAPES.index(shape) + 1) % 5]}"]
                for n, (_, shape) in enumerate(shapekit.CLASSES)
            ]
        )
    )
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), 256, replace=False)]
    noise = unit(rng.standard_normal(picks.shape))
    return {
        f"captions ({len(texts)})": text_vectors,
        f"shape - colour ({len(negatives)})": negatives,
        f"picture + shape word ({len(mixed)})": mixed,
        f"fresh pictures ({len(fresh_vectors)})": fresh_vectors,
        "stored + noise, as tuned (256)": unit(picks + 0.75 * noise),
    }


def recall(found: np.ndarray, queries: np.ndarray, stored: np.ndarray, kth: np.ndarray) -> float:
    """Share of found ids whose exact score reaches the query's 10th best (ties count as right)."""
    scores = np.einsum("qd,qkd->qk", queries, stored[np.maximum(found, 0)])
    right = (found >= 0) & (scores >= kth[:, None] - 1e-5)
    return float(right.mean())


def timed(index: VectorIndex, queries: np.ndarray, margin: float | None) -> float:
    """p50 ms of one query at a time, with the probe margin on (as imgd searches) or off (nprobe alone)."""
    kept, index.probe_margin = index.probe_margin, margin
    try:
        times = []
        for query in queries:
            started = time.perf_counter()
            index.search(query, K)
            times.append(time.perf_counter() - started)
    finally:
        index.probe_margin = kept
    return float(np.median(times) * 1000)


def latency(index: VectorIndex, queries: np.ndarray) -> tuple[float, float]:
    """(p50 with the margin, p50 nprobe alone): three interleaved rounds, the median of each."""
    rounds = [(timed(index, queries, index.probe_margin), timed(index, queries, None)) for _ in range(3)]
    return float(np.median([r[0] for r in rounds])), float(np.median([r[1] for r in rounds]))


def mixture(count: int) -> int:
    """Picture-like queries on 512-d vectors: what the margin costs where the coarse pass is dearer."""
    import bench_search

    faiss.omp_set_num_threads(2)
    data = bench_search.Mixture(seed=0)
    vectors = data.sample(count, seed=1)
    queries = data.sample(300, seed=2, extra_noise=0.3)
    index = VectorIndex(vectors.shape[1])
    index.exact_limit = 1000
    index.add(np.arange(count), vectors)
    index.rebuild_if_due()
    raw = index._index
    print(
        f"{count} x 512d mixture: {index.kind}, nlist {raw.nlist}, nprobe {index.nprobe}, margin {index.probe_margin}"
    )
    stored = vectors.astype(np.float16).astype(np.float32)
    exact, _ = faiss.knn(queries, stored, K, metric=faiss.METRIC_INNER_PRODUCT)
    found = np.array([[hit for hit, _ in index.search(q, K)] for q in queries])
    probed = [ivf.probe(raw, q[None, :], K, None, 1, index.probe_margin)[2] for q in queries]
    with_margin, nprobe_only = latency(index, queries)
    print(
        f"recall@10 {recall(found, queries, stored, exact[:, -1]):.3f}, lists probed mean {np.mean(probed):.1f} "
        f"max {np.max(probed)}; p50 {with_margin:.2f} ms with the margin, {nprobe_only:.2f} ms nprobe alone "
        f"({with_margin / nprobe_only:.2f}x)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30000, help="pictures in the library")
    parser.add_argument("--model", default=str(REPO / "tests" / "models" / "shapes-clip"))
    parser.add_argument("--exact-limit", type=int, default=1000, help="lowered so the index switches to IVF")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, help="replace the tuned probe margin (to see the trade-off)")
    parser.add_argument("--mixture", type=int, default=0, help="time picture-like queries on N 512-d vectors")
    args = parser.parse_args()
    if args.mixture:
        sys.path.insert(0, str(REPO / "benchmarks"))
        return mixture(args.mixture)
    from imgd.daemon.embedders import load_embedder

    embedder = load_embedder(args.model, device="cpu", batch_size=250)
    weights = Path(args.model) / "model.safetensors"
    tag = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]  # a retrained model gets new vectors
    cache = REPO / "benchmarks" / "out" / f"shapes-vectors-{tag}-{args.count}-{args.seed}.npy"
    vectors = library_vectors(embedder, args.count, args.seed, cache)
    stored = vectors.astype(np.float16).astype(np.float32)  # what the index holds
    sets = query_sets(embedder, vectors, args.seed + 1)

    index = VectorIndex(vectors.shape[1])
    index.exact_limit = args.exact_limit
    index.add(np.arange(len(vectors)), vectors)
    started = time.monotonic()
    index.rebuild_if_due()
    built = time.monotonic() - started
    raw = index._index
    if args.margin is not None:
        print(f"tuned probe margin {index.probe_margin}, replaced by {args.margin}")
        index.probe_margin = args.margin
    print(
        f"library {len(vectors)} x {vectors.shape[1]}d; index {index.kind}, "
        f"nlist {getattr(raw, 'nlist', '-')}, tuned nprobe {index.nprobe}, "
        f"probe margin {getattr(index, 'probe_margin', None)}, built in {built:.1f}s"
    )
    if index.kind != "ivf":
        print("the index kept exact search: nothing to measure")
        return 1
    nprobes = [n for n in ivf._NPROBES if n < raw.nlist] + [raw.nlist]
    print()
    print(
        f"| queries | best cosine, mean | recall@10, imgd's search | lists probed, mean / max | "
        f"recall@10 at fixed nprobe {index.nprobe} | fixed nprobe for 0.95 | for 0.99 | "
        "p50 ms, imgd / fixed nprobe |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, queries in sets.items():
        exact, _ = faiss.knn(queries, stored, K, metric=faiss.METRIC_INNER_PRODUCT)
        kth = exact[:, -1]
        found = np.array([[hit for hit, _ in index.search(q, K)] for q in queries])
        at_tuned = recall(found, queries, stored, kth)
        probed = [ivf.probe(raw, q[None, :], K, None, 1, index.probe_margin)[2] for q in queries]
        _, fixed_ids = raw.search(queries, K, params=faiss.SearchParametersIVF(nprobe=raw.nprobe))
        fixed = recall(fixed_ids, queries, stored, kth)
        needed = {}
        for nprobe in nprobes:
            _, ids = raw.search(queries, K, params=faiss.SearchParametersIVF(nprobe=nprobe))
            value = recall(ids, queries, stored, kth)
            for target in (0.95, 0.99):
                if value >= target and target not in needed:
                    needed[target] = nprobe
        cells = [
            name,
            f"{exact[:, 0].mean():.2f}",
            f"{at_tuned:.3f}",
            f"{np.mean(probed):.1f} / {np.max(probed)}",
            f"{fixed:.3f}",
            needed.get(0.95, "-"),
            needed.get(0.99, "-"),
            "{:.3f} / {:.3f}".format(*latency(index, queries)),
        ]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
