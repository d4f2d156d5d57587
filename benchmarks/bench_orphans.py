"""What one file removal costs the daemon's writer, by library size: the orphan check per event.

    .venv/bin/python benchmarks/bench_orphans.py --contents 100000 --events 200

Builds a catalog of N contents (one file each, synthetic 512-dim vectors), then removes `events`
files one at a time as the watcher reports them (Engine.forget), timing each; and times the
whole-library orphan scan the engine ran per event before issue 21 (Catalog.orphan_ids).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from imgd.daemon.store.catalog import Catalog


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contents", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    dim = 512
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "catalog.db")
        catalog.ensure_model("synthetic", dim)
        rng = np.random.default_rng(0)
        started = time.monotonic()
        with catalog.transaction():
            for n in range(args.contents):
                vector = rng.standard_normal(dim).astype(np.float32)
                content_id = catalog.add_content(f"{n:064x}", vector / np.linalg.norm(vector), 100, 100)
                catalog.set_file(f"/lib/{n // 1000:04d}/{n}.jpg", 1, 1, content_id)
        print(f"built {args.contents} contents in {time.monotonic() - started:.1f}s")
        scans = []
        for _ in range(5):
            t = time.perf_counter()
            catalog.orphan_ids()
            scans.append(time.perf_counter() - t)
        per_event = []
        for n in range(args.events):
            path = f"/lib/{n // 1000:04d}/{n}.jpg"
            t = time.perf_counter()
            with catalog.transaction():
                content_id = catalog.get_file(path).content_id
                catalog.remove_file(path)
                catalog.delete_contents(catalog.orphans_among([content_id]))
            per_event.append(time.perf_counter() - t)
        catalog.close()
    print(f"whole-library orphan scan (before, per event): median {statistics.median(scans) * 1000:.1f} ms")
    print(f"one removal with its own orphan check (now):    median {statistics.median(per_event) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
