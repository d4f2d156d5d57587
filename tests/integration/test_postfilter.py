"""A filter that selects too many is checked on the search's candidates: the same answers as selecting.

One real library (SQLite catalog, FAISS index, a file on disk per content) of 3,000 contents with
GPS around Lisbon and Porto and words for a third; every search runs twice, once selecting the
filter's contents (the budget never runs out) and once checking candidates (a budget of 0), and the
two answers must be the same row for row.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon import config as config_module
from imgd.daemon.protocol import Filters, Options
from imgd.daemon.search import postfilter
from imgd.daemon.search import query as query_module
from imgd.daemon.search.query import Searcher
from imgd.daemon.store import ivf, places
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.index import VectorIndex
from imgd.daemon.wordfold import fold_lines

DIM = 16
COUNT = 3000
LISBON, PORTO = (38.7223, -9.1393), (41.1579, -8.6291)
WORDS = ["bakery", "hardware", "receipt", "total", "coffee", "ticket", "garden", "market"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Searcher, Path]]:
    root = tmp_path_factory.mktemp("postfilter")
    config = config_module.load(None, {"state_dir": root / "state", "model": "synthetic"}, env={})
    rng = random.Random(26)
    vectors = np.random.default_rng(26).standard_normal((COUNT, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = Catalog(config.catalog_path)
    catalog.ensure_model("synthetic", DIM)
    conn = catalog.conn
    with catalog.transaction():
        for i in range(1, COUNT + 1):
            folder = root / "pics" / ("a" if i % 2 else "b")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i:05d}.jpg"
            path.touch()
            where = rng.random()
            center = LISBON if where < 0.4 else PORTO if where < 0.6 else None
            lat = center[0] + rng.gauss(0, 0.05) if center else None
            lon = center[1] + rng.gauss(0, 0.05) if center else None
            conn.execute("INSERT INTO contents(id, hash, width, height) VALUES (?, ?, 64, 64)", (i, f"h{i}"))
            conn.execute(
                "INSERT INTO vectors(content_id, at, vector) VALUES (?, 0, ?)",
                (i, vectors[i - 1].astype(np.float16).tobytes()),
            )
            conn.execute(
                "INSERT INTO media(content_id, version, format, width, height, latitude, longitude) "
                "VALUES (?, 1, 'jpeg', 64, 64, ?, ?)",
                (i, lat, lon),
            )
            conn.execute(
                "INSERT INTO files(path, content_id, size, mtime_ns, status) VALUES (?, ?, 0, 0, 'ok')",
                (str(path).encode(), i),
            )
            if i % 3 == 0:
                lines = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(rng.randrange(1, 4))]
                read = json.dumps([[line, 1.0, 0, 0, 1, 1] for line in lines])
                conn.execute("INSERT INTO words(content_id, read_at, lines) VALUES (?, 0, ?)", (i, read))
                conn.execute("INSERT INTO words_fts(rowid, text) VALUES (?, ?)", (i, fold_lines(lines)))
        backlog = catalog.places_backlog(0, COUNT)  # what the places pass does, in one batch
        named = places.name_all([row[1] for row in backlog], [row[2] for row in backlog])
        catalog.set_places([(row[0], place) for row, place in zip(backlog, named, strict=True)])
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
    index = VectorIndex.build(catalog, DIM)
    catalog.close()
    yield Searcher(config, index, lambda: None), root  # type: ignore[arg-type,return-value]
    index.close()


CASES = {
    "near Lisbon": Filters(near="Lisbon"),
    "near Porto, 400 km": Filters(near="Porto", within_km=400.0),
    "country": Filters(country="Portugal"),
    "a common word": Filters(words="bakery"),
    "a part of a word": Filters(words="ardw"),
    "a word near Lisbon": Filters(words="coffee", near="Lisbon"),
}


def answers(searcher: Searcher, budget: float | None, options: Options, seed: int, **kwargs: object) -> list:
    """One search's rows, with the selection's budget set (None: select; 0: check candidates)."""
    saved, narrow = postfilter.SELECT_BUDGET, query_module.NARROW_SELECTION
    postfilter.SELECT_BUDGET = budget  # type: ignore[assignment]
    # The selection through FAISS, as a filter that selects thousands at 1M: a narrow one is scored by numpy,
    # whose sums differ from FAISS's in the 7th decimal (the scores shown have 6).
    query_module.NARROW_SELECTION = 0
    library, postfilter.MIN_LIBRARY = postfilter.MIN_LIBRARY, 0  # a small library, checked as a large one
    try:
        fresh = Searcher(searcher.config, searcher.index, lambda: None)  # type: ignore[arg-type,return-value]
        query = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return fresh.run(query / np.linalg.norm(query), options, **kwargs)  # type: ignore[arg-type]
    finally:
        postfilter.SELECT_BUDGET, query_module.NARROW_SELECTION = saved, narrow
        postfilter.MIN_LIBRARY = library


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_checking_candidates_answers_as_selecting_does(
    library: tuple[Searcher, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher, _ = library
    selections: list[object] = []
    real = Catalog.vector_ids_matching

    def counted(self: Catalog, *args: object, **kwargs: object) -> object:
        selections.append(args)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalog, "vector_ids_matching", counted)
    for seed in range(8):
        for k in (1, 10, 40):
            options = Options(k=k, filters=CASES[name])
            selected = answers(searcher, None, options, seed)
            selections.clear()
            checked = answers(searcher, 0, options, seed)
            assert checked == selected, (name, seed, k)
            assert len(checked) == k
            assert not selections, "the candidates sufficed: nothing should be selected"


def test_a_rare_filter_falls_back_to_selecting(library: tuple[Searcher, Path]) -> None:
    searcher, _ = library
    options = Options(k=10, filters=Filters(near="Paris"))  # no photo there: no candidate passes
    assert answers(searcher, 0, options, 1) == answers(searcher, None, options, 1) == []


def test_a_folder_and_a_threshold_are_checked_on_candidates_too(library: tuple[Searcher, Path]) -> None:
    searcher, root = library
    filters = Filters(near="Lisbon", folders=(str(root / "pics" / "a"),))
    for seed in range(5):
        options = Options(k=10, filters=filters, min_score=0.3)
        selected = answers(searcher, None, options, seed)
        assert answers(searcher, 0, options, seed) == selected
        assert all(row["path"].startswith(str(root / "pics" / "a")) for row in selected)


def test_checking_contents_one_by_one_agrees_with_selecting_them(library: tuple[Searcher, Path]) -> None:
    searcher, root = library
    from imgd.daemon.search.filters import from_request

    catalog = searcher.catalog
    for filters in (
        Filters(near="Lisbon", folders=(str(root / "pics" / "a"),)),
        Filters(folders=(str(root / "pics" / "b"),)),
        Filters(country="Portugal", folders=(str(root / "pics" / "a"), str(root / "pics" / "b"))),
    ):
        chosen = from_request(filters, catalog.cameras)
        everyone = set(catalog.content_ids_matching(chosen).tolist())
        some = range(1, COUNT + 1, 3)
        assert catalog.content_ids_passing(chosen, some) == everyone.intersection(some)


def test_the_fused_words_ranking_checks_its_contents_as_the_selection_does(library: tuple[Searcher, Path]) -> None:
    searcher, _ = library
    options = Options(k=10, filters=Filters(near="Lisbon"))
    for seed in range(5):
        selected = answers(searcher, None, options, seed, fused=["garden", "ticket"])
        assert answers(searcher, 0, options, seed, fused=["garden", "ticket"]) == selected
        assert any("words" in row for row in selected)
        assert all(row["near"]["km"] <= 25 for row in selected)  # what the words add passes the filters too


def test_a_selection_past_its_budget_stops(library: tuple[Searcher, Path]) -> None:
    searcher, _ = library
    from imgd.daemon.search.filters import from_request

    catalog = searcher.catalog
    chosen = from_request(Filters(near="Lisbon"), catalog.cameras)
    assert catalog.vector_ids_matching(chosen, budget=-1.0) is None
    assert len(catalog.vector_ids_matching(chosen, budget=10.0)) == len(catalog.vector_ids_matching(chosen))


def counting_selections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every full selection a search asks the catalog for, from now on; each selection's 5 ms budget is
    past at once and candidates are checked whatever the library's size."""
    calls: list[object] = []
    real = Catalog.vector_ids_matching

    def counted(self: Catalog, *args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalog, "vector_ids_matching", counted)
    monkeypatch.setattr(postfilter, "SELECT_BUDGET", -1.0)
    monkeypatch.setattr(postfilter, "MIN_LIBRARY", 0)
    return calls


def test_a_filter_past_its_budget_is_not_selected_again(
    library: tuple[Searcher, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher, _ = library
    calls = counting_selections(monkeypatch)
    fresh = Searcher(searcher.config, searcher.index, lambda: None)  # type: ignore[arg-type,return-value]
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    options = Options(k=10, filters=Filters(near="Lisbon"))
    monkeypatch.setattr(postfilter.Later, "due", lambda self, key: False)  # no background selection here
    first = fresh.run(query, options)
    assert len(calls) == 1  # tried within the budget, then the candidates were checked
    assert fresh.run(query, options) == first and len(calls) == 1


def test_a_small_library_is_always_selected(library: tuple[Searcher, Path]) -> None:
    searcher, _ = library
    options = Options(k=10, filters=Filters(near="Lisbon"))
    assert not postfilter.wanted(options, postfilter.MIN_LIBRARY)
    assert postfilter.wanted(options, postfilter.MIN_LIBRARY + 1)
    assert not postfilter.wanted(Options(k=10, filters=Filters(near="Lisbon"), auto_cut=True), 10**6)
    assert not postfilter.wanted(Options(k=10, filters=Filters(words_match="bakery OR total")), 10**6)


def test_checking_gives_up_once_too_few_of_enough_candidates_pass() -> None:
    assert not postfilter.hopeless(160, 0, 10)  # too few candidates to tell
    assert postfilter.hopeless(postfilter.SAMPLE, 0, 10)
    assert not postfilter.hopeless(postfilter.SAMPLE, 2, 10)  # 3,200 would do
    assert postfilter.hopeless(postfilter.FETCH_LIMIT // 2, 9, 10)  # the next fetch would pass the limit


def test_a_filter_few_candidates_pass_is_selected_once_after_its_first_answer(
    library: tuple[Searcher, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher, _ = library
    calls = counting_selections(monkeypatch)
    fresh = Searcher(searcher.config, searcher.index, lambda: None)  # type: ignore[arg-type,return-value]
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    options = Options(k=40, filters=Filters(words="coffee", near="Lisbon"))  # 1 in 15: 800 candidates for 40
    monkeypatch.setattr(postfilter.Later, "due", lambda self, key: False)  # the foreground rule alone
    first = fresh.run(query, options)
    assert len(first) == 40 and len(calls) == 1  # tried within the budget, then checked
    assert fresh.run(query, options) == first and len(calls) == 2  # selected whole this time ...
    assert fresh.run(query, options) == first and len(calls) == 2  # ... and cached


def selections_in_background_finish() -> None:
    for thread in threading.enumerate():
        if thread.name == "imgd-select":
            thread.join(30)


def test_a_checked_filter_asked_again_is_selected_in_the_background(
    library: tuple[Searcher, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher, _ = library
    calls = counting_selections(monkeypatch)
    monkeypatch.setattr(query_module, "NARROW_SELECTION", 0)  # through FAISS's bitmap, as at 1M
    fresh = Searcher(searcher.config, searcher.index, lambda: None)  # type: ignore[arg-type,return-value]
    options = Options(k=10, filters=Filters(near="Lisbon"))
    queries = [np.random.default_rng(seed).standard_normal(DIM).astype(np.float32) for seed in range(4)]
    queries = [q / np.linalg.norm(q) for q in queries]
    first = fresh.run(queries[0], options)
    selections_in_background_finish()
    assert len(calls) == 1  # a one-off search (the direct path) never selects aside
    second = fresh.run(queries[1], options)  # asked again: answered by candidates, then selected aside
    selections_in_background_finish()
    assert len(calls) == 2 and calls[-1][1:] in ((), (None,))  # the whole selection, without a budget
    cached = fresh._selected(options.filters, "vectors", -1.0)
    assert cached is not None and len(cached) > 1000  # the bitmap later queries search
    later = [fresh.run(query, options) for query in queries]
    assert len(calls) == 2  # nothing selected in the foreground, nor aside again
    assert later[:2] == [first, second]
    for seed in range(len(queries)):  # the cached selection's answers are a fresh selection's
        assert later[seed] == answers(searcher, None, options, seed)


def test_a_filter_is_selected_aside_once_per_catalog_state() -> None:
    later = postfilter.Later()
    assert [later.due(("near", 1)) for _ in range(4)] == [False, True, False, False]
    assert [later.due(("near", 2)) for _ in range(2)] == [False, True]  # a new catalog state selects again


def test_a_selections_bitmap_is_kept_for_its_array_only(library: tuple[Searcher, Path]) -> None:
    searcher, _ = library
    ids = np.sort(searcher.catalog.vector_ids())
    one, two = ids[:1000].copy(), ids[1000:2000].copy()
    assert ivf.bitmap(one) is ivf.bitmap(one)  # built once for the same selection
    assert ivf.bitmap(one.copy()) is not ivf.bitmap(one)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    for allowed in (one, two, one):
        found = searcher.index.search(query, 10, allowed)
        assert len(found) == 10 and all(int(vid) in set(allowed.tolist()) for vid, _ in found)
