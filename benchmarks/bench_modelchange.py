"""What a model change costs beyond the forward passes, at N images: the switch and the upkeep per batch.

The catalog is synthetic (bench_query.make_catalog: N files, clustered 512-d unit vectors), and the new
model's vectors are another clustered sample written beside them as a finished change would leave
them. Timed, in order, in one process:
  order    catalog.reembed_order(): the newest-first list a change (re)starts from
  batch    sources() + add_next_vectors() of one batch of 32 (the catalog side of one step; the model
           side is the indexing rate, RESULTS.md)
  build    the new model's index from its vectors (searches still answered meanwhile)
  rewrite  finish_model_change() inside its transaction: searches go on, seeing the old vectors
  held     its commit + VectorIndex.adopt(): the step searches wait for
plus the catalog's size on disk (with its WAL) before and after the switch, which rewrites every vector once.

With --rate CORPUS it instead times, on real pictures and the ViT-B/32-sized model (ONNX), a whole
`imgd index --reembed` from a catalog made with the tiny test model against `imgd index` of the same
pictures into a fresh catalog, one after the other: the change's re-embedding rate against indexing.

    .venv/bin/python benchmarks/bench_modelchange.py --count 100000
    .venv/bin/python benchmarks/bench_modelchange.py --rate benchmarks/out/corpus-48
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import common  # noqa: E402
from bench_query import make_catalog  # noqa: E402
from bench_search import Mixture  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402
from imgd.daemon.store.index import VectorIndex  # noqa: E402

DIM = 512
BATCH = 32


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one imgd process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgd.cli.main", "-q", *args], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def rate(corpus: Path) -> dict[str, object]:
    from clipkit import build_clip

    model = common.ensure_model()
    models = common.exported_models(model)
    tiny = build_clip(common.OUT / "tiny-clip")
    pictures = len(list(corpus.glob("*.jpg")))
    figures: dict[str, object] = {"pictures": pictures}
    with tempfile.TemporaryDirectory(prefix="bench-change-", dir=common.OUT) as tmp:
        changed, fresh = Path(tmp) / "changed", Path(tmp) / "fresh"
        for state in (changed, fresh):
            common.link_models(models, state)
        base = ["--device", "cpu"]
        timed([*base, "--state-dir", str(changed), "--model", str(tiny), "--backend", "torch", "index", str(corpus)])
        common.warm_page_cache(sorted(corpus.glob("*.jpg")))
        onnx = [*base, "--model", str(model), "--backend", "onnx"]
        for name, state, extra in (("reembed", changed, ["--reembed"]), ("index", fresh, [])):
            wall, cpu = timed([*onnx, "--state-dir", str(state), "index", *extra, str(corpus)])
            figures[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "img_per_s": round(pictures / wall, 2)}
            common.log(f"{name}: {wall:.2f} s wall, {cpu:.2f} CPU-s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=50, help="batches timed for the per-batch upkeep")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--rate", type=Path, metavar="CORPUS", help="time a real change over these JPEGs instead")
    args = parser.parse_args()
    common.log(common.machine_line())
    if args.rate:
        figures = rate(args.rate)
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory(prefix="bench-change-", dir=ROOT / "benchmarks" / "out") as tmp:
        state, pics = Path(tmp) / "state", Path(tmp) / "pics"
        state.mkdir()
        started = time.perf_counter()
        make_catalog(state, pics, "old-model", args.count, DIM)
        common.log(f"catalog of {args.count} made in {time.perf_counter() - started:.1f}s")
        catalog = Catalog(state / "catalog.db")
        catalog.begin_model_change("new-model", DIM, None)

        started = time.perf_counter()
        order = catalog.reembed_order()
        order_s = time.perf_counter() - started

        mixture = Mixture(dim=DIM, centres=max(10, args.count // 300))
        batch_s = []
        for number in range(min(args.batches, len(order) // BATCH)):
            ids = order[number * BATCH : (number + 1) * BATCH]
            vectors = mixture.sample(len(ids), seed=10_000_000 + number)
            started = time.perf_counter()
            catalog.sources(ids)
            with catalog.transaction():
                catalog.add_next_vectors(ids, vectors)
            batch_s.append(time.perf_counter() - started)
        rest = order[len(batch_s) * BATCH :]
        for start in range(0, len(rest), 20_000):
            ids = rest[start : start + 20_000]
            with catalog.transaction():
                catalog.add_next_vectors(ids, mixture.sample(len(ids), seed=20_000_000 + start))

        live = VectorIndex.build(catalog, DIM)
        before = disk(catalog.path)
        started = time.perf_counter()
        fresh = VectorIndex.build(catalog, DIM, catalog.iter_next_vectors())
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        with catalog.transaction():  # as Engine.finish_change: the rewrite, then the commit searches wait for
            dropped = catalog.finish_model_change()
            rewrite_s = time.perf_counter() - started
            held = time.perf_counter()
        live.adopt(fresh, catalog)
        held_s = time.perf_counter() - held
        after = disk(catalog.path)
        catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        settled = disk(catalog.path)
        catalog.close()
    figures = {
        "count": args.count,
        "order_s": round(order_s, 3),
        "batch_ms_median": round(1000 * statistics.median(batch_s), 2),
        "batch_ms_p90": round(1000 * common.percentile(batch_s, 90), 2),
        "build_s": round(build_s, 2),
        "rewrite_s": round(rewrite_s, 2),
        "searches_held_s": round(held_s, 3),
        "dropped": len(dropped),
        "catalog_mb_before_switch": round(before / 1e6, 1),
        "catalog_mb_after_switch": round(after / 1e6, 1),
        "catalog_mb_after_checkpoint": round(settled / 1e6, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
