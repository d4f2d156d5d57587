"""Issue 21's whole-library passes: the places pass and the duplicates pass's pairs per content.

1. Places: a catalog of N contents kept from before places (60% with GPS, bench_places's traveller's
   library), taken back to schema 6 as that release left it. Timed: the upgrade (a writer's first
   open: now only columns and indexes, no naming), then the places pass as the daemon runs it
   (Engine.place_batch, PLACES_BATCH positions a call): its rate, and each batch's time (what a new
   file can wait behind it), and `imgd status`'s backlog count before and after.
2. Pairs: a clump of C near-identical frames (one still scene, 512 dims), the first duplicates
   pass's join (pairs.library_pairs): pairs kept with PAIR_LIMIT per content, and unbounded.

    .venv/bin/python benchmarks/bench_passes.py --count 1000000 --clump 5000
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_places import library_positions  # noqa: E402
from common import machine_line  # noqa: E402
from imgd.daemon.ingest.backfill import PLACES_BATCH, MediaBackfill  # noqa: E402
from imgd.daemon.search.pairs import PAIR_LIMIT, library_pairs  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402


class Pass(MediaBackfill):
    """The engine's places pass alone, on a catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.should_stop = lambda: False


def build(path: Path, count: int) -> int:
    """Media rows of `count` contents (no vectors, no files: the pass reads neither), schema 6."""
    catalog = Catalog(path)
    lats, lons = library_positions(count, seed=2)
    rows = (
        (
            i + 1,
            1,
            400,
            300,
            None if np.isnan(lats[i]) else float(lats[i]),
            None if np.isnan(lats[i]) else float(lons[i]),
        )
        for i in range(count)
    )
    with catalog.transaction():
        catalog.conn.executemany(
            "INSERT INTO media(content_id, version, width, height, latitude, longitude) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
    catalog.close()
    conn = sqlite3.connect(path)
    with conn:
        for index in ("media_unplaced", "media_position", "media_country"):
            conn.execute(f"DROP INDEX {index}")
        for column in ("city", "region", "country", "duration"):
            conn.execute(f"ALTER TABLE media DROP COLUMN {column}")
        conn.execute("DROP TABLE words")
        conn.execute("DROP TABLE words_fts")
        conn.execute("DELETE FROM migrations WHERE version >= 7")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    with_gps = conn.execute("SELECT count(*) FROM media WHERE latitude IS NOT NULL").fetchone()[0]
    conn.close()
    return with_gps


def bench_places(folder: Path, count: int) -> None:
    path = folder / "catalog.db"
    with_gps = build(path, count)
    started = time.perf_counter()
    catalog = Catalog(path)  # the upgrade: schema 6 -> latest
    upgrade = time.perf_counter() - started
    started = time.perf_counter()
    backlog = catalog.places_backlog_count()
    counted = (time.perf_counter() - started) * 1000
    runner = Pass(catalog)
    batches = []
    started = time.perf_counter()
    while True:
        begun = time.perf_counter()
        if not runner.place_batch():
            break
        batches.append((time.perf_counter() - begun) * 1000)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    left = catalog.places_backlog_count()
    counted_after = (time.perf_counter() - started) * 1000
    named = catalog.conn.execute("SELECT count(*) FROM media WHERE city != ''").fetchone()[0]
    catalog.close()
    print(f"\nplaces: {count} contents, {with_gps} with GPS")
    print(f"- upgrade 6 -> latest (columns, indexes, no naming): {upgrade:.1f}s")
    print(f"- backlog count (status): {backlog} in {counted:.1f} ms; after the pass {left} in {counted_after:.2f} ms")
    print(
        f"- places pass: {seconds:.1f}s, {backlog / seconds:,.0f} positions/s, {named} named; "
        f"{len(batches)} batches of {PLACES_BATCH}: p50 {statistics.median(batches):.0f} ms, "
        f"max {max(batches):.0f} ms"
    )


def bench_pairs(clump: int) -> None:
    rng = np.random.default_rng(3)
    scene = rng.normal(size=512)
    frames = scene + rng.normal(scale=0.05 * np.linalg.norm(scene) / np.sqrt(512), size=(clump, 512))
    frames = (frames / np.linalg.norm(frames, axis=1, keepdims=True)).astype(np.float16)
    ids = np.arange(clump, dtype=np.int64)
    print(f"\npairs: a clump of {clump} near-identical frames (512 dims), threshold 0.975")
    for name, limit in ((f"PAIR_LIMIT {PAIR_LIMIT}", PAIR_LIMIT), ("unbounded", 10**12)):
        started = time.perf_counter()
        found = library_pairs(ids, frames, 0.975, limit=limit)
        print(f"- {name}: {len(found):,} pairs in {time.perf_counter() - started:.1f}s")
        del found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--clump", type=int, default=3000)
    args = parser.parse_args()
    print(machine_line())
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / "out") as tmp:
        bench_places(Path(tmp), args.count)
    bench_pairs(args.clump)


if __name__ == "__main__":
    main()
