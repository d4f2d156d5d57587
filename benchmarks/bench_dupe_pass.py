"""Memory and time of the daemon's first duplicates pass at 1M, whole or kept in the catalog (issue 21).

    python benchmarks/bench_dupe_pass.py --catalog /tmp/memory-1m/catalog.db --mode whole   # before: every vector read
    python benchmarks/bench_dupe_pass.py --catalog /tmp/memory-1m/catalog.db --mode kept    # after: pairpass.run_pass
    python benchmarks/bench_dupe_pass.py --catalog /tmp/memory-1m/catalog.db --mode kept --stop-after 60

`whole` is what the tracker did before (DupeTracker.build without a catalog path): every vector of the
library read as float16 (`library_vectors`), then `library_pairs` over them. `kept` runs the pass kept
in the catalog (a writable copy: it writes the dupe_pass and dupe_pairs tables), from the start, then
once more as a restart does (the pairs read back). With --stop-after S, the first run is stopped after S
seconds (as a SIGTERM does) and a second run resumes it: the time it takes to finish is what a restart
costs. RSS added and peak added (VmHWM reset first) for each step, as bench_memory.py measures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import bench_memory
import common
from bench_memory import measured


def make(path: Path, count: int) -> None:
    """A catalog of `count` contents, one vector each: bench_dupes.planted's (10% near-copies of others)."""
    from bench_dupes import planted
    from imgd.daemon.store.catalog import Catalog

    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = planted(count)
    catalog = Catalog(path)
    catalog.ensure_model("bench", vectors.shape[1])
    with catalog.transaction():
        catalog.conn.executemany(
            "INSERT INTO contents(id, hash, width, height) VALUES (?, ?, 640, 480)",
            ((n + 1, f"{n:064x}") for n in range(count)),
        )
        catalog.conn.executemany(
            "INSERT INTO vectors(content_id, at, vector) VALUES (?, 0.0, ?)",
            ((n + 1, v.tobytes()) for n, v in enumerate(vectors)),
        )
    catalog.close()


def digest(pairs: list[tuple[int, int]]) -> str:
    """A short hash of the pairs found (vector ids), to compare two runs."""
    return hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--mode", choices=("whole", "kept"), required=True)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--stop-after", type=float, default=0.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--make", type=int, default=0, help="first build --catalog: N vectors, 10%% planted near-copies"
    )
    args = parser.parse_args()
    from imgd.daemon.store.catalog import Catalog

    if args.make and not args.catalog.exists():
        make(args.catalog, args.make)

    result: dict[str, object] = {"mode": args.mode, "rss_start_mb": bench_memory.mb(common.rss_bytes())}
    if args.mode == "whole":
        from imgd.daemon.search.pairs import library_pairs
        from imgd.daemon.service.dupetracker import library_vectors

        catalog = Catalog(args.catalog, readonly=True)
        result["read"], (ids, vectors) = measured("read every vector", lambda: library_vectors(catalog))
        result["pairs"], found = measured("library_pairs", lambda: library_pairs(ids, vectors, args.threshold))
        result["count"] = len(found)  # type: ignore[arg-type]
        result["digest"] = digest([(a, b) for a, b, _ in found])  # type: ignore[attr-defined]
    else:
        from imgd.daemon.search.pairpass import run_pass
        from imgd.daemon.store.dupepass import PassRows

        Catalog(args.catalog).close()  # migrated to schema 11 (the pass's tables)
        rows = PassRows(args.catalog)
        key = f"{rows.identity()}|{args.threshold}"
        rows.begin(key, 0, None)  # forgotten: the pass starts over
        rows.conn.execute("UPDATE dupe_pass SET value = 'none' WHERE name = 'key'")
        deadline = time.monotonic() + args.stop_after if args.stop_after else None
        stopped = (lambda: time.monotonic() > deadline) if deadline else (lambda: False)  # noqa: E731
        result["pass"], done = measured("pass", lambda: run_pass(rows, key, args.threshold, stopped))
        if not done:
            result["resumed"], _ = measured("resumed pass", lambda: run_pass(rows, key, args.threshold, lambda: False))
        result["restart"], pairs = measured(
            "restart: pass done, pairs read", lambda: (run_pass(rows, key, args.threshold, lambda: False), rows.pairs())
        )
        result["count"] = len(pairs[1][0])  # type: ignore[index]
        result["digest"] = digest(list(zip(pairs[1][0].tolist(), pairs[1][1].tolist(), strict=True)))  # type: ignore[index]
    result["rss_end_mb"] = bench_memory.mb(common.rss_bytes())
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
