"""Saved searches per new picture: what the daemon's alert thread pays for each newly indexed picture.

A catalog of N contents (512-d vectors, one live file each) and S saved searches: per picture, the
real AlertService.check path's parts, timed apart and together: its vectors read from the catalog
(one indexed query), the one matrix product against every saved search (a photo: 1 vector; a video:
30 frames, matched at its best), and the filter check for the saved searches it passes (one indexed
query each). The goal: 100 saved searches under 1 ms per new picture.

    .venv/bin/python benchmarks/bench_alerts.py --count 100000 --saved 100 --pictures 2000
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import log, machine_line, percentile  # noqa: E402
from imgd.daemon.protocol import Filters  # noqa: E402
from imgd.daemon.search.filters import from_request  # noqa: E402
from imgd.daemon.service.alerts import Matcher  # noqa: E402
from imgd.daemon.store import alerts as rows  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402
from imgd.daemon.store.records import ImageMeta  # noqa: E402

DIM = 512


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build(path: Path, count: int, rng: np.random.Generator) -> Catalog:
    catalog = Catalog(path)
    catalog.ensure_model("bench", DIM)
    vectors = unit(rng, count)
    with catalog.transaction():
        for i in range(count):
            meta = ImageMeta(width=640, height=480, format="jpeg", make="Canon", model="EOS")
            content_id, _ = catalog.add_photo(f"{i:064x}", vectors[i], 640, 480, meta)
            catalog.set_file(f"/photos/{i % 100}/p{i}.jpg", 1000, 1, content_id)
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="contents in the catalog")
    parser.add_argument("--saved", type=int, default=100, help="saved searches")
    parser.add_argument("--pictures", type=int, default=2000, help="new pictures checked")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        catalog = build(Path(tmp) / "catalog.db", args.count, rng)
        log(f"catalog of {args.count} contents built in {time.monotonic() - started:.1f}s")
        # Thresholds near where real saved searches sit: a few pass per picture, so filters are checked too.
        matcher = Matcher([f"s{i}" for i in range(args.saved)], unit(rng, args.saved), np.full(args.saved, 0.08))
        filters = Filters(folders=("/photos/7",), camera="canon", orientation="landscape")
        picks = rng.integers(1, args.count + 1, args.pictures)
        video = unit(rng, 30)
        read, product, video_product, check, whole, passed = [], [], [], [], [], 0
        for content_id in picks:
            path = f"/photos/{(content_id - 1) % 100}/p{content_id - 1}.jpg"
            t0 = time.perf_counter()
            vectors = rows.content_vectors(catalog, int(content_id))
            t1 = time.perf_counter()
            found = matcher.matches(vectors)
            t2 = time.perf_counter()
            for _name, _score in found:
                chosen = from_request(filters, lambda cid=int(content_id): rows.camera_of(catalog, cid))
                passed += rows.path_passes(catalog, path, [f.clause() for f in chosen])
            t3 = time.perf_counter()
            matcher.matches(video)
            t4 = time.perf_counter()
            read.append(t1 - t0)
            product.append(t2 - t1)
            check.append(t3 - t2)
            video_product.append(t4 - t3)
            whole.append(t3 - t0)
        catalog.close()
    print(f"{args.saved} saved searches, {args.count} contents, {args.pictures} new pictures")
    for name, values in (
        ("read the picture's vectors", read),
        ("match a photo (1 vector) against all", product),
        ("match a video (30 frames) against all", video_product),
        ("filter checks of the saved searches passed", check),
        ("whole check per photo", whole),
    ):
        ms = [v * 1000 for v in values]
        print(
            f"{name:45s} median {statistics.median(ms):.3f} ms  p90 {percentile(ms, 90):.3f} ms  max {max(ms):.3f} ms"
        )
    print(f"filter checks that passed: {passed}")


if __name__ == "__main__":
    main()
