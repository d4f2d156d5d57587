"""The pure parts of words in pictures: folding, FTS5 quoting, reciprocal rank fusion, the words filter's two forms.

The OCR itself is tested with the real models in tests/integration/test_words.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from imgd.daemon.ingest.wordspass import WordsPass
from imgd.daemon.protocol import Filters, RequestError
from imgd.daemon.search.words import RRF_K, WordsMatch, filters_of, fuse
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.records import FileRow
from imgd.daemon.store.words import WordLine
from imgd.daemon.wordfold import fold, fold_lines, phrase, tokens


def test_folding_drops_case_accents_and_spaces_but_keeps_lines_apart():
    assert fold("Café  NOIR") == "cafenoir"
    assert fold("Crème Brûlée") == "cremebrulee"
    assert fold("Straße") == "strasse"
    assert fold_lines(["HARDWARE STORE", "  ", "Total 17.49"]) == "hardwarestore\ntotal17.49"


def test_a_phrase_is_quoted_so_its_punctuation_is_text():
    assert phrase("INV-2023") == '"inv-2023"'
    assert phrase('say "hi" now') == '"say""hi""now"'


def test_a_search_looks_for_its_words_of_three_characters_or_more_once_each():
    assert tokens(["receipt from the hardware store", "The store"]) == ["receipt", "from", "the", "hardware", "store"]
    assert tokens(["a b", "of"]) == []


@pytest.mark.parametrize("words", ["", "ab", " a b ", "é", "--"])
def test_words_of_fewer_than_three_characters_are_refused(words):
    with pytest.raises(RequestError, match="at least 3"):
        Filters(words=words)


def test_fusion_ranks_a_content_in_both_lists_above_one_in_either():
    hits = [(0.9, "/a", 1), (0.8, "/b", 2), (0.7, "/c", 3), (0.1, "/w", 4)]  # 4 came from the words ranking only
    fused = fuse(hits, by_words=[3, 4], k=3)
    assert [hit[2] for hit in fused] == [3, 4, 1]
    # 4, last by its vector but second by its words, still beats 1, first by its vector alone
    assert 1 / (RRF_K + 4) + 1 / (RRF_K + 2) > 1 / (RRF_K + 1)


def test_fusion_keeps_every_path_of_a_kept_content_and_cuts_at_k_contents():
    hits = [(0.9, "/a", 1), (0.9, "/a-copy", 1), (0.5, "/b", 2)]
    assert fuse(hits, by_words=[2], k=1) == [(0.5, "/b", 2)]
    assert fuse(hits, by_words=[], k=2) == hits


def test_the_words_filter_selects_in_sql_what_it_matches_in_python(tmp_path: Path):
    catalog = Catalog(tmp_path / "catalog.db")
    pages = {
        "/r.png": ["HARDWARE STORE", "TOTAL 17.49"],
        "/m.png": ["Café Noir"],
        "/blank.png": [],
        "/low.png": ["hardware (barely legible)"],
    }
    with catalog.transaction():
        for n, (path, lines) in enumerate(pages.items()):
            catalog.ensure_model("m", 2)
            content_id, _ = catalog.add_photo(f"{n:064x}", [1.0, 0.0], 4, 4)
            catalog.set_file(path, 1, 1, content_id)
            confidence = 0.3 if path == "/low.png" else 0.9
            catalog.set_words(content_id, [WordLine(line, confidence) for line in lines], 0.5, 0.0)
    ids = {path: catalog.get_file(path).content_id for path in pages}
    try:
        for words in ("hardw", "HARDWARE store", "17.49", "cafe", "noir", "xyz"):
            (chosen,) = filters_of(Filters(words=words))
            selected = set(catalog.content_ids_matching([chosen]).tolist())
            searchable = {p: fold_lines([x for x in ls if p != "/low.png"]) for p, ls in pages.items()}
            expected = {ids[p] for p, text in searchable.items() if chosen.match(FileRow(p, words=text))}
            assert selected == expected, words
        assert catalog.word_lines([ids["/low.png"]])[ids["/low.png"]][0].confidence == 0.3  # kept, not searched
        assert catalog.words_read_count() == (4, 2)
    finally:
        catalog.close()


def test_an_explicit_expression_is_sqlites_alone():
    with pytest.raises(NotImplementedError):
        WordsMatch("hammer OR nails").match(FileRow("/x", words="hammer"))


class _Pass(WordsPass):
    """The words pass's choice of what to read next, over a real catalog (no models, no pictures)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog


def _add(catalog: Catalog, n: int) -> int:
    with catalog.transaction():
        catalog.ensure_model("m", 2)
        content_id, _ = catalog.add_photo(f"{n:064x}", [1.0, 0.0], 4, 4)
        catalog.set_file(f"/p/{n}.png", 1, 1, content_id)
    return content_id


def _read(catalog: Catalog, batch: list[tuple[int, list]]) -> list[int]:
    with catalog.transaction():
        for content_id, _ in batch:
            catalog.set_words(content_id, [], 0.5, 0.0)
    return [content_id for content_id, _ in batch]


def test_the_pass_reads_the_newest_first_and_a_new_arrival_before_the_older_rest(tmp_path: Path):
    catalog = Catalog(tmp_path / "catalog.db")
    try:
        first = [_add(catalog, n) for n in range(5)]
        words = _Pass(catalog)
        assert _read(catalog, words._words_next(2)) == [first[4], first[3]]
        late = _add(catalog, 99)
        assert _read(catalog, words._words_next(2)) == [late]
        assert _read(catalog, words._words_next(2)) == [first[2], first[1]]
        assert _read(catalog, words._words_next(2)) == [first[0]]
        assert words._words_next(2) == [] and catalog.words_backlog_count() == 0
        assert catalog.words_read_count() == (6, 0)
        with catalog.transaction():
            catalog.delete_contents([late])  # a content's words go with it
        assert catalog.words_read_count() == (5, 0)
    finally:
        catalog.close()


def test_a_batch_gives_way_as_soon_as_a_file_arrives_and_keeps_what_it_read(tmp_path: Path):
    from concurrent.futures import ThreadPoolExecutor

    from imgd.daemon import config as config_module

    def make_config(**values: object):
        return config_module.load(None, {"state_dir": tmp_path, **values}, env={})

    catalog = Catalog(tmp_path / "catalog.db")
    pool = ThreadPoolExecutor(1, thread_name_prefix="imgd-decode")
    try:
        ids = [_add(catalog, n) for n in range(6)]
        words = _Pass(catalog)
        words.config, words._pool = make_config(), pool
        words.should_stop, words.clock = (lambda: False), (lambda: 0.0)
        words._read = lambda reader, item: (item[0], [WordLine("TOTAL 17.49", 0.9)])  # the batch's logic alone
        words._words_child = object()  # no child started: nothing is read here
        arrived = iter([False, True])
        assert words.read_words(limit=4, interrupt=lambda: next(arrived)) == 2  # stopped after the second
        assert catalog.words_read_count() == (2, 2) and catalog.words_backlog_count() == 4
        assert words.read_words(limit=4) == 4 and words.read_words() == 0  # the two left behind come next
        assert sorted(catalog.words_matching('"17.49"')) == ids
        words.config = make_config(words_enabled=False)
        _add(catalog, 7)
        assert words.read_words() == 0  # [words] enabled = false: nothing is read
    finally:
        pool.shutdown()
        catalog.close()


def test_what_the_child_had_in_hand_when_it_ended_is_read_again_alone_and_what_ends_it_alone_has_no_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # The batch's logic alone (the real child is killed in tests/integration/test_words.py).
    import logging
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from imgd.daemon import config as config_module

    catalog = Catalog(tmp_path / "catalog.db")
    pool = ThreadPoolExecutor(2, thread_name_prefix="imgd-decode")
    try:
        hostile, unlucky, *rest = [_add(catalog, n) for n in range(4)]
        tries: dict[int, int] = {}

        def read(reader: object, item: tuple[int, list]) -> tuple[int, list[WordLine] | None]:
            tries[item[0]] = tries.get(item[0], 0) + 1
            if item[0] == hostile or (item[0] == unlucky and tries[item[0]] == 1):
                return item[0], None  # the child ended with it in hand
            return item[0], [WordLine(f"LINE{item[0]}", 0.9)]

        words = _Pass(catalog)
        words.config, words._pool = config_module.load(None, {"state_dir": tmp_path, "decode_threads": 2}, env={}), pool
        words.should_stop, words.clock, words._read = (lambda: False), (lambda: 0.0), read
        words._words_child = SimpleNamespace(last_end="killed by SIGKILL")
        caplog.set_level(logging.WARNING, logger="imgd")
        assert words.read_words(limit=4) == 4
        assert tries == {hostile: 2, unlucky: 2, rest[0]: 1, rest[1]: 1}  # each again once, no more
        assert catalog.words_read_count() == (4, 3) and catalog.words_backlog_count() == 0  # all recorded
        assert catalog.words_matching(f'"line{unlucky}"') == [unlucky] and not catalog.words_matching(
            f'"line{hostile}"'
        )
        said = [r.getMessage() for r in caplog.records]
        assert said == [
            "the words reader stopped (killed by SIGKILL) with 2 picture(s) in hand; reading them again one at a time",
            "cannot read the words of /p/0.png: the words reader stopped on it alone (killed by SIGKILL);"
            " recorded with no words",
        ], said
    finally:
        pool.shutdown()
        catalog.close()


def test_the_fused_words_ranking_gives_up_past_its_budget_and_the_search_goes_on_without_it(tmp_path: Path):
    from imgd.daemon.search.words import ranked

    catalog = Catalog(tmp_path / "catalog.db")
    try:
        with catalog.transaction():
            for n in range(1, 3001):
                catalog.conn.execute("INSERT INTO words_fts(rowid, text) VALUES (?, ?)", (n, f"store total {n}"))
        assert catalog.words_matching('"store"', budget=-1.0) is None  # past its deadline at once
        assert len(catalog.words_matching('"store"', budget=10.0)) == 3000
        assert len(ranked(catalog, ["store"], None)) == 200  # within the real budget: the best 200
        assert catalog.words_matching('"store"', limit=5) == catalog.words_matching('"store"', limit=5)
    finally:
        catalog.close()
