"""Filtered search at scale: p50/p90 per query for filters selecting 50%, 5% and 0.05% of the library.

A synthetic library of N contents, each one empty file on disk (results must pass the on-disk check),
with CLIP-like clustered vectors (bench_search.Mixture) and an IVF index as the daemon would hold past
exact_limit. Folders are laid out so that `--in` selects a known share; orientation and size filters
select through the catalog's width/height. Each filter is asked with many query vectors through the
real Searcher (catalog select, filter cache, FAISS bitmap selector or exact pass, live-path check):
the first query pays for the catalog select ("cold"); later ones reuse it, as refining the words of a
query does. Also checked: k answers come back whenever k match, and recall@k against an exact pass
over exactly the allowed vectors.

    .venv/bin/python benchmarks/bench_filters.py --count 1000000 --queries 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_search import Mixture  # noqa: E402
from common import log, machine_line, percentile  # noqa: E402
from imgd.daemon import config as config_module  # noqa: E402
from imgd.daemon.protocol import Filters, Options  # noqa: E402
from imgd.daemon.search.query import Searcher  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402
from imgd.daemon.store.index import VectorIndex  # noqa: E402
from imgd.daemon.store.records import ImageMeta  # noqa: E402

DIM = 512
SHARES = {"half": 0.5, "five": 0.05, "tiny": 0.0005}  # folder -> share of the library; the rest is "rest"


def folder_of(i: int, count: int) -> str:
    position = (i * 7919) % count / count  # spread each folder over the id range, as real libraries are
    edge = 0.0
    for name, share in SHARES.items():
        edge += share
        if position < edge:
            return name
    return "rest"


def build(state: Path, pics: Path, count: int) -> None:
    mixture = Mixture(dim=DIM, centres=max(10, count // 300))
    catalog = Catalog(state / "catalog.db")
    catalog.ensure_model("synthetic", DIM)
    chunk = 20_000
    for start in range(0, count, chunk):
        vectors = mixture.sample(min(chunk, count - start), seed=start)
        with catalog.transaction():
            for offset, vector in enumerate(vectors):
                i = start + offset
                folder = pics / folder_of(i, count) / f"{i // 2000:04d}"
                if i % 2000 == 0 or not folder.exists():
                    folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"img{i:07d}.jpg"
                path.touch()
                width, height = (400, 300) if i % 20 else (300, 400)  # 5% portrait
                meta = ImageMeta("jpeg", width, height, f"20{10 + i % 15}:06:01 12:00:00", None, "Canon", "EOS")
                content = catalog.add_content(f"synthetic-{i}", vector, width, height, meta)
                catalog.set_file(str(path), 0, 0, content)
        if start % 200_000 == 0:
            log(f"  catalog: {start + len(vectors)} / {count}")
    catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="Build the library here once and reuse it on later runs.")
    args = parser.parse_args()
    print(machine_line())
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / "out") as tmp:
        where = (args.keep or Path(tmp)).resolve()
        state, pics = where / "state", where / "pics"
        config = config_module.load(None, {"state_dir": state, "model": "synthetic"}, env={})
        started = time.perf_counter()
        if not config.catalog_path.exists():
            build(state, pics, args.count)
            log(f"built catalog and {args.count} files in {time.perf_counter() - started:.0f}s")
        catalog = Catalog(config.catalog_path)
        vectors = np.vstack([chunk for _, chunk in catalog.iter_vectors()])
        started = time.perf_counter()
        index = VectorIndex.load_verified(config.index_path, catalog, DIM)
        index.exact_limit = min(40_000, args.count)
        index.rebuild_if_due()  # IVF above exact_limit, as the daemon has it
        if args.keep:
            index.save(config.index_path)
        catalog.close()
        log(f"index: {index.describe()} in {time.perf_counter() - started:.0f}s")
        searcher = Searcher(config, index, lambda: None)  # type: ignore[arg-type,return-value]
        queries = Mixture(dim=DIM, centres=max(10, args.count // 300)).sample(args.queries + 1, seed=10**9)
        cases = {
            "--in half (50%)": Filters(folders=(str(pics / "half"),)),
            "--in five (5%)": Filters(folders=(str(pics / "five"),)),
            "--in tiny (0.05%)": Filters(folders=(str(pics / "tiny"),)),
            "--portrait (5%)": Filters(orientation="portrait"),
            "--in five --portrait (0.25%)": Filters(folders=(str(pics / "five"),), orientation="portrait"),
            "--after 2020 --before 2021 (6.7%)": Filters(after="2020", before="2021"),
            "--camera canon (100%)": Filters(camera="canon"),
            "no filter": Filters(),
        }
        print(
            f"\n{args.count} vectors, k={args.k}, {args.queries} queries per filter, index {index.describe()['kind']}"
        )
        print("| filter | selected | cold first query ms | p50 ms | p90 ms | answers = k | recall@k |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, filters in cases.items():
            options = Options(k=args.k, filters=filters)
            started = time.perf_counter()
            searcher.run(queries[-1], options)
            cold = (time.perf_counter() - started) * 1000
            allowed = searcher.allowed(filters)
            allowed_ids = np.arange(1, args.count + 1) if allowed is None else allowed
            times, answers = [], []
            for query in queries[:-1]:  # timed first: the recall pass below reads every vector
                started = time.perf_counter()
                answers.append(searcher.run(query, options))
                times.append((time.perf_counter() - started) * 1000)
            full = sum(len(hits) == min(args.k, len(allowed_ids)) for hits in answers)
            recalls = []
            for query, hits in zip(queries[:-1], answers, strict=True):
                truth_scores = (vectors if allowed is None else vectors[allowed_ids - 1]) @ query
                truth = set((allowed_ids[np.argsort(-truth_scores)[: args.k]]).tolist())
                recalls.append(len(truth & {h["id"] for h in hits}) / max(1, len(truth)))
            print(
                f"| {name} | {len(allowed_ids)} | {cold:.1f} | {statistics.median(times):.2f} | "
                f"{percentile(times, 90):.2f} | {full}/{len(times)} | {statistics.mean(recalls):.3f} |"
            )
        index.close()


if __name__ == "__main__":
    main()
