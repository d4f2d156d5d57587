"""Queries at 1M (issue 26's goals): what `--words` and `--near` cost a whole search through the Searcher.

The library is bench_places' (N contents, one empty file each, CLIP-like vectors, an IVF index as
the daemon holds past exact_limit; GPS: 25% around Lisbon, 3% around Porto, 32% across 300 cities,
40% none), with places named from the GPS as the migration does, and words for a tenth of it as
bench_words writes them (1-12 lines of 4 words from a 100-word vocabulary: each word is in about a
quarter of the pictures with words; 1 in 1,000 of them also holds "HARDWARE STORE INV-2023").

Each case is a whole `Searcher.run` (k=10) with a fresh searcher per case, so its first query pays
for whatever the filter costs before any cache ("cold"); then the p50 of the next queries with other
vectors ("warm": refining a query's words reuses what the filter cached). "added" is a case's p50
minus the unfiltered p50. Each filter runs twice: "select" selects every content it lets through (as
every search did before search/postfilter.py: the budget set to None), "check" is the search as it
runs now (a selection past the budget is left and the candidates checked; asked again, the filter is
selected in the background, and later queries search its kept bitmap), "check before" as it ran before
that (candidates checked on every query, the bitmap built per query); each case asks its filter a
second time and waits for a background selection before the timed queries (a person types the next
one); "same answers" counts the queries whose ids came out the same as selecting's.

    python benchmarks/bench_query1m.py --count 1000000 --keep /tmp/q1m     # builds once, then reuses
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_places import DIM, build  # noqa: E402
from bench_search import Mixture  # noqa: E402
from bench_words import VOCABULARY  # noqa: E402
from common import log, machine_line, percentile  # noqa: E402
from imgd.daemon import config as config_module  # noqa: E402
from imgd.daemon.protocol import Filters, Options  # noqa: E402
from imgd.daemon.search import postfilter  # noqa: E402
from imgd.daemon.store import ivf, places  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402
from imgd.daemon.store.index import VectorIndex  # noqa: E402
from imgd.daemon.wordfold import fold_lines  # noqa: E402


def add_places_and_words(path: Path, count: int, with_words: int, seed: int) -> None:
    """Name the stored GPS (the places pass) and write words for `with_words` random contents."""
    catalog = Catalog(path)
    rng = random.Random(seed)
    named, after = 0, 0
    while backlog := catalog.places_backlog(after, 50_000):  # what the places pass does, in bigger batches
        found = places.name_all([row[1] for row in backlog], [row[2] for row in backlog])
        with catalog.transaction():
            catalog.set_places([(row[0], place) for row, place in zip(backlog, found, strict=True)])
        named, after = named + len(backlog), backlog[-1][0]
    log(f"  places named: {named}")
    chosen = rng.sample(range(1, count + 1), with_words)
    for start in range(0, len(chosen), 20_000):
        with catalog.transaction():
            for cid in chosen[start : start + 20_000]:
                lines = [" ".join(rng.choice(VOCABULARY) for _ in range(4)) for _ in range(rng.randrange(1, 12))]
                if rng.random() < 0.001:
                    lines.append("HARDWARE STORE INV-2023")
                catalog.conn.execute("INSERT INTO words(content_id, read_at, lines) VALUES (?, 0, '[]')", (cid,))
                catalog.conn.execute("INSERT INTO words_fts(rowid, text) VALUES (?, ?)", (cid, fold_lines(lines)))
    catalog.close()


CASES = {
    "no filter": Filters(),
    "--words inv-2023 (92 pictures)": Filters(words="inv-2023"),
    "--words hardw (a part of a word)": Filters(words="hardw"),
    "--words 'store market'": Filters(words="store market"),
    "--words bakery (26% of worded)": Filters(words="bakery"),
    "--words total": Filters(words="total"),
    "--near Lisbon (home, 25 km)": Filters(near="Lisbon"),
    "--near Porto": Filters(near="Porto"),
    "--near Lisbon --within 400": Filters(near="Lisbon", within_km=400.0),
    "--near 48.8566,2.3522 (not visited)": Filters(near="48.8566,2.3522"),
    "--country Portugal": Filters(country="Portugal"),
    "--near Lisbon --words bakery": Filters(near="Lisbon", words="bakery"),
}


SELECT_BUDGET = postfilter.SELECT_BUDGET
LATER_DUE, BITMAPS = postfilter.Later.due, ivf.BITMAPS


def bench(config: config_module.Config, queries: int, k: int, only: list[str]) -> None:
    from imgd.daemon.search.query import Searcher

    catalog = Catalog(config.catalog_path)
    count = catalog.conn.execute("SELECT count(*) FROM contents").fetchone()[0]
    index = VectorIndex.load_verified(config.index_path, catalog, DIM)
    index.exact_limit = min(40_000, count)
    if index.wanted_kind() != index.kind:
        index.rebuild_if_due()  # IVF above exact_limit, as the daemon has it
        index.save(config.index_path)
        log(f"index built: {index.describe()}")
    elif not config.index_path.exists():  # built by the load: kept for the next run
        index.save(config.index_path)
    catalog.close()
    vectors = Mixture(dim=DIM, centres=max(10, count // 300)).sample(queries + 1, seed=10**9)
    places.gazetteer().city("Lisbon")  # loaded (and its names indexed) once per daemon, outside the timings
    print(f"\n{count} contents, k={k}, {queries} queries per case, index {index.describe()['kind']}")
    print("| case | how | cold first query ms | warm p50 ms | warm p90 ms | p50 added ms | answers | same answers |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = None
    for name, filters in CASES.items():
        if only and not any(word in name for word in only) and name != "no filter":
            continue
        found: dict[str, list] = {}
        for how, budget in (("select", None), ("check before", SELECT_BUDGET), ("check", SELECT_BUDGET)):
            if name == "no filter" and how != "select":
                continue
            postfilter.SELECT_BUDGET = budget  # None: always select, as before candidates were checked
            # "check before": as before the background selection and the kept bitmaps (commit 54b4a2c)
            postfilter.Later.due = (lambda self, key: False) if how == "check before" else LATER_DUE
            ivf.BITMAPS = 0 if how == "check before" else BITMAPS
            searcher = Searcher(config, index, lambda: None)  # type: ignore[arg-type,return-value]
            options = Options(k=k, filters=filters)
            started = time.perf_counter()
            searcher.run(vectors[-1], options)
            cold = (time.perf_counter() - started) * 1000
            searcher.run(vectors[-1], options)  # asked again (refining): a broad filter is selected aside now
            for thread in threading.enumerate():  # the next query comes seconds later: a person types it
                if thread.name == "imgd-select":
                    thread.join()
            times, answers = [], []
            for vector in vectors[:-1]:
                started = time.perf_counter()
                answers.append([row["id"] for row in searcher.run(vector, options)])
                times.append((time.perf_counter() - started) * 1000)
            found[how] = answers
            p50 = statistics.median(times)
            base = p50 if base is None else base
            agree = sum(a == b for a, b in zip(found["select"], answers, strict=True))
            same = "" if how == "select" else f"{agree}/{queries}"
            print(
                f"| {name} | {how} | {cold:.1f} | {p50:.2f} | {percentile(times, 90):.2f} | {p50 - base:+.2f} "
                f"| {len(answers[-1])} | {same} |",
                flush=True,
            )
            postfilter.SELECT_BUDGET = SELECT_BUDGET
    index.close()


def parts(config: config_module.Config, runs: int, candidates: int) -> None:
    """The catalog's side alone (no index): a filter's whole selection against checking `candidates`
    random contents, the part a search that checks candidates pays per round instead."""
    from imgd.daemon.search.filters import from_request

    catalog = Catalog(config.catalog_path, readonly=True)
    places.gazetteer().city("Lisbon")
    rng = random.Random(7)
    count = catalog.conn.execute("SELECT count(*) FROM contents").fetchone()[0]
    print(f"\ncatalog side at {count} contents: median of {runs} (ms)")
    print(f"| case | selected | select ms | check {candidates} candidates ms | passed | owners of {candidates} ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, filters in CASES.items():
        if not filters.active:
            continue
        chosen = from_request(filters, catalog.cameras)
        selects, checks, owners, selected, passed = [], [], [], 0, 0
        for _ in range(runs):
            ids = rng.sample(range(1, count + 1), candidates)
            started = time.perf_counter()
            selected = len(catalog.vector_ids_matching(chosen))
            selects.append(time.perf_counter() - started)
            started = time.perf_counter()
            passed = len(postfilter.check(catalog, filters)(ids))
            checks.append(time.perf_counter() - started)
            started = time.perf_counter()
            catalog.contents_of(ids)
            owners.append(time.perf_counter() - started)
        print(
            f"| {name} | {selected} | {1000 * statistics.median(selects):.1f} | "
            f"{1000 * statistics.median(checks):.1f} | {passed} | {1000 * statistics.median(owners):.1f} |",
            flush=True,
        )
    catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--with-words", type=int, default=0, help="default: a tenth of --count")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=[], help="only the cases whose name holds one of these")
    parser.add_argument("--keep", type=Path, required=True, help="build the library here once, reuse it later")
    parser.add_argument("--parts", type=int, default=0, metavar="N", help="only the catalog's side, N candidates")
    args = parser.parse_args()
    print(machine_line())
    where = args.keep.resolve()
    state, pics = where / "state", where / "pics"
    config = config_module.load(None, {"state_dir": state, "model": "synthetic"}, env={})
    if not config.catalog_path.exists():
        started = time.perf_counter()
        build(state, pics, args.count)
        add_places_and_words(config.catalog_path, args.count, args.with_words or args.count // 10, seed=26)
        log(f"built catalog and {args.count} files in {time.perf_counter() - started:.0f}s")
    if args.parts:
        parts(config, 5, args.parts)
    else:
        bench(config, args.queries, args.k, args.only)


if __name__ == "__main__":
    main()
