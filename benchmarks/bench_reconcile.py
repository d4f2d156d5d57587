"""The start-up reconcile of an unchanged library, in process: the walk and the compare, nothing else.

    python benchmarks/bench_reconcile.py --base benchmarks/out/scale-100000 [--profile] [--rounds 3]

Uses the tree and seed catalog of bench_daemon_scale.py (base/library, base/seed/catalog.db): the
catalog is copied to a folder under /tmp once (the seed is never touched), then `Engine.reconcile` of the
library is timed on it, round after round (each an unchanged library: it must find nothing to do).
The walk alone (`scanner.scan`) is timed beside it, so the compare's share shows. `--root` names the tree
as the catalog's paths spell it when it was built under another checkout path (a link to it works).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a bench_daemon_scale.py scale-N folder")
    parser.add_argument("--root", type=Path, help="the library as the catalog's paths name it (default base/library)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round, top 25 by own time")
    args = parser.parse_args()

    import common
    from imgd.daemon import config as config_mod
    from imgd.daemon.ingest.engine import Engine
    from imgd.daemon.ingest.scanner import PathFilter, scan
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.store.index import VectorIndex

    root = str(args.root or args.base / "library")
    seed = args.base / "seed" / "catalog.db"
    work = Path("/tmp") / f"bench-reconcile-{args.base.resolve().name}"
    work.mkdir(exist_ok=True)
    if not (work / "catalog.db").exists():
        shutil.copy(seed, work / "catalog.db.part")
        os.replace(work / "catalog.db.part", work / "catalog.db")
    print(f"machine: {common.cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}", flush=True)
    config = config_mod.load(overrides={"state_dir": work}, env={})
    catalog = Catalog(work / "catalog.db")
    engine = Engine(config, catalog, VectorIndex(catalog.model_info()[1]), None)  # type: ignore[arg-type,index]
    try:
        for n in range(args.rounds):
            started = time.monotonic()
            walked = sum(1 for _ in scan(root, PathFilter(config.excludes)))
            walk = time.monotonic() - started
            started = time.monotonic()
            summary = engine.reconcile([root])
            took = time.monotonic() - started
            print(
                f"round {n + 1}: walk alone {walk:.2f} s ({walked:,} files); reconcile {took:.2f} s "
                f"(unchanged {summary.unchanged:,}, added {summary.added}, removed {summary.removed}); "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(engine.reconcile, [root])
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    finally:
        engine.close()
        catalog.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
