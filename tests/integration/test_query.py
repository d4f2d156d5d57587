"""The query language through the CLI: terms and weights, filters inside the search, cut-offs, order,
`similar`, and the output formats every image-listing command shares.

Meaning (does "a red circle" find red circles?) needs the trained shapes model: tests/integration/test_semantics.py.
Here the tiny random model is enough, because every assertion is about which images may come back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_image
from imgd.cli.main import cli
from imgd.cli.options import parse_term
from imgd.daemon.protocol import Term
from imgd.daemon.search.query import combine


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def base_args(state_dir: Path, tiny_model: Path) -> list[str]:
    return ["--state-dir", str(state_dir), "--model", str(tiny_model), "--device", "cpu"]


@pytest.fixture
def library(runner, base_args, tmp_path) -> Path:
    """30 images: landscape JPEGs in a/, portrait PNGs in b/, squares in c/, and one copy of a/0.jpg in c/."""
    pics = tmp_path / "pics"
    for i in range(10):
        write_image(pics / "a" / f"{i}.jpg", seed=i, size=(120, 80))
        write_image(pics / "b" / f"{i}.png", seed=100 + i, size=(60, 90))
        write_image(pics / "c" / f"{i}.webp", seed=200 + i, size=(64, 64))
    shutil.copy(pics / "a" / "0.jpg", pics / "c" / "copy-of-a0.jpg")
    result = runner.invoke(cli, [*base_args, "index", str(pics)])
    assert result.exit_code == 0, result.output
    return pics


def search(runner, base_args, *args: str, command: str = "search") -> tuple[int, list[dict], str]:
    result = runner.invoke(cli, [*base_args, command, "--direct", "--json", *args])
    hits = json.loads(result.stdout) if result.exit_code in (0, 1) and result.stdout.strip() else []
    return result.exit_code, hits, result.stderr


def test_weights_negatives_and_escapes_parse_as_documented():
    assert parse_term("text", "dog") == Term("text", "dog", 1.0)
    assert parse_term("text", "2:dog") == Term("text", "dog", 2.0)
    assert parse_term("text", "0.5:people", -1.0) == Term("text", "people", -0.5)
    assert parse_term("text", ":10:30 meeting") == Term("text", "10:30 meeting", 1.0)
    assert parse_term("text", "note: buy milk") == Term("text", "note: buy milk", 1.0)
    assert parse_term("image", "3:ref.jpg").value == os.path.abspath("ref.jpg")


def test_the_query_vector_is_the_normalised_weighted_sum_of_normalised_terms():
    a, b = np.array([3.0, 0.0]), np.array([0.0, 0.5])
    assert np.allclose(combine([a, b], [1.0, 1.0]), np.array([1, 1]) / np.sqrt(2))
    assert np.allclose(combine([a, b], [2.0, -1.0]), np.array([2, -1]) / np.sqrt(5))


def test_filters_apply_inside_the_search_so_k_matches_come_back(runner, base_args, library):
    for args, folders in [
        (["--in", str(library / "b")], {"b"}),
        (["--type", "png"], {"b"}),
        (["--portrait"], {"b"}),
        (["--landscape", "--in", str(library / "a")], {"a"}),
        (["--square"], {"c"}),
        (["--min-size", "100x70"], {"a", "c"}),  # a/ and its copy in c/ (the same 120x80 content)
        (["--min-size", "64"], {"a", "c"}),  # the shorter side: landscape 80 and square 64 pass, portrait 60 not
        (["--min-size", "0.009MP"], {"a", "c"}),  # 9600 pixels: only 120x80
    ]:
        code, hits, _ = search(runner, base_args, "-k", "10", "a photo", *args)
        assert code == 0, args
        assert len({h["id"] for h in hits}) == 10, (args, hits)
        assert {Path(h["path"]).parent.name for h in hits} <= folders, (args, hits)


def test_a_folder_filter_lists_only_the_copies_inside_it(runner, base_args, library):
    _, hits, _ = search(runner, base_args, "-k", "30", "--in", str(library / "c"), "x")
    paths = {h["path"] for h in hits}
    assert str(library / "c" / "copy-of-a0.jpg") in paths
    assert str(library / "a" / "0.jpg") not in paths
    assert len(hits) == 11


def test_min_score_cuts_and_nothing_passing_exits_1(runner, base_args, library):
    _, everything, _ = search(runner, base_args, "-k", "40", "a photo")
    middle = everything[len(everything) // 2]["score"]
    _, kept, _ = search(runner, base_args, "-k", "40", "--min-score", str(middle), "a photo")
    assert kept and all(h["score"] >= middle for h in kept)
    assert len(kept) < len(everything)
    code, hits, stderr = search(runner, base_args, "--min-score", "1", "a photo")
    assert (code, hits) == (1, [])
    assert "no matching images" in stderr


def test_sort_by_path_orders_the_same_answers(runner, base_args, library):
    _, by_score, _ = search(runner, base_args, "-k", "8", "a photo")
    _, by_path, _ = search(runner, base_args, "-k", "8", "--sort", "path", "a photo")
    assert sorted(h["path"] for h in by_score) == [h["path"] for h in by_path]
    assert [h["rank"] for h in by_path] == list(range(1, 9))


def test_a_negative_term_changes_the_ranking_and_an_image_term_adds_to_text(runner, base_args, library):
    _, plain, _ = search(runner, base_args, "-k", "30", "a photo")
    _, pushed, _ = search(runner, base_args, "-k", "30", "a photo", "--not", "2:a photo of a dog")
    _, pulled, _ = search(runner, base_args, "-k", "1", "0.1:a photo", "--like", str(library / "b" / "3.png"))
    assert [h["path"] for h in plain] != [h["path"] for h in pushed]
    assert pulled[0]["path"] == str(library / "b" / "3.png")


def test_similar_leaves_out_the_file_and_its_identical_copies(runner, base_args, library):
    code, hits, _ = search(runner, base_args, "-k", "5", str(library / "a" / "0.jpg"), command="similar")
    paths = {h["path"] for h in hits}
    assert code == 0 and len(hits) == 5
    assert str(library / "a" / "0.jpg") not in paths
    assert str(library / "c" / "copy-of-a0.jpg") not in paths


def test_similar_to_an_uncatalogued_file_embeds_it_and_finds_its_twin(runner, base_args, library, tmp_path):
    outside = write_image(tmp_path / "outside" / "twin.jpg", seed=105, size=(60, 90), quality=90)  # b/5.png as JPEG
    code, hits, _ = search(runner, base_args, "-k", "1", str(outside), command="similar")
    assert code == 0 and hits[0]["path"] == str(library / "b" / "5.png")


def test_every_output_format_lists_the_same_images(runner, base_args, library):
    args = [*base_args, "search", "--direct", "-k", "4", "a photo"]
    as_json = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
    jsonl = [json.loads(line) for line in runner.invoke(cli, [*args, "--jsonl"]).stdout.splitlines()]
    paths_only = runner.invoke(cli, [*args, "-f"]).stdout.splitlines()
    nul = runner.invoke(cli, [*args, "-0"]).stdout_bytes.split(b"\0")
    lines = runner.invoke(cli, args).stdout.splitlines()

    assert as_json == jsonl
    assert [h["path"] for h in as_json] == paths_only == [os.fsdecode(p) for p in nul[:-1]] and nul[-1] == b""
    assert [line.split("  ", 1)[1] for line in lines] == paths_only
    first = as_json[0]
    assert set(first) >= {"rank", "score", "path", "id", "size", "width", "height"}
    assert first["size"] == os.path.getsize(first["path"])
    assert -1.0 <= first["score"] <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--after", "yesterday", "x"], "'yesterday' is not a date"),
        (["--after", "2024", "--before", "2023", "x"], "is not earlier than --before"),
        (["--type", "psd", "x"], "unknown file type 'psd'"),
        (["abc2:x", "2q:dog"], "'2q' in '2q:dog' is not a number"),
        (["--like", "/nonexistent/ref.jpg"], "no such file"),
        (["--min-size", "big", "x"], "is not a size"),
        (["--min-score", "2", "x"], "from -1 to 1"),
        (["--not", "dog"], "only negative terms"),
        ([], "give a text to search for"),
        (["-k", "1001", "x"], "1001"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(runner, base_args, library, args, message):
    result = runner.invoke(cli, [*base_args, "search", "--direct", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreadable_image_term_is_exit_2(runner, base_args, library, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    result = runner.invoke(cli, [*base_args, "search", "--direct", "--like", str(broken)])
    assert result.exit_code == 2
    assert "broken.jpg: not a recognised image format" in result.output


# -- filters on metadata: taken date and camera ---------------------------------------------------


@pytest.fixture
def dated(runner, base_args, tmp_path) -> Path:
    """Six photos: three cameras, dates across 2021-2023 (one undated, whose file mtime is 2022-07-01)."""
    from test_metadata import exif_bytes

    pics = tmp_path / "dated"
    shots = [
        ("a.jpg", "2021:05:01 10:00:00", "Canon", "EOS R5"),
        ("b.jpg", "2022:01:15 08:30:00", "Canon", "EOS R5"),
        ("c.jpg", "2022:12:31 23:59:59", "Google", "Pixel 7"),
        ("d.jpg", "2023:03:03 12:00:00", "Google", "Pixel 7"),
        ("e.jpg", "2023:11:11 11:11:11", "FUJIFILM", "X-T4"),
    ]
    for i, (name, taken, make, model) in enumerate(shots):
        write_image(pics / name, seed=300 + i, exif=exif_bytes(taken=taken, make=make, model=model))
    undated = write_image(pics / "f.png", seed=310)
    stamp = 1656676800  # 2022-07-01 12:00 UTC
    os.utime(undated, (stamp, stamp))
    result = runner.invoke(cli, [*base_args, "index", str(pics)])
    assert result.exit_code == 0, result.output
    return pics


def names(hits: list[dict]) -> set[str]:
    return {Path(h["path"]).name for h in hits}


def test_date_filters_use_the_exif_date_else_the_file_time(runner, base_args, dated):
    cases = [
        (["--after", "2022"], {"b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.png"}),
        (["--after", "2022", "--before", "2023"], {"b.jpg", "c.jpg", "f.png"}),
        (["--before", "2022-01-15"], {"a.jpg"}),
        (["--after", "2022-06", "--before", "2022-08"], {"f.png"}),
        (["--after", "2023-11-11"], {"e.jpg"}),
    ]
    for args, expected in cases:
        code, hits, _ = search(runner, base_args, "-k", "10", "a photo", *args)
        assert code == 0 and names(hits) == expected, (args, names(hits))


def test_camera_matches_make_or_model_case_insensitively(runner, base_args, dated):
    for needle, expected in [("canon", {"a.jpg", "b.jpg"}), ("PIXEL", {"c.jpg", "d.jpg"}), ("x-t4", {"e.jpg"})]:
        _, hits, _ = search(runner, base_args, "-k", "10", "--camera", needle, "a photo")
        assert names(hits) == expected, needle
    code, hits, _ = search(runner, base_args, "--camera", "Nikon", "a photo")
    assert (code, hits) == (1, [])


def test_results_carry_their_date_camera_and_type_and_sort_by_date(runner, base_args, dated):
    _, hits, _ = search(runner, base_args, "-k", "10", "--sort", "date", "a photo")
    assert [Path(h["path"]).name for h in hits] == ["a.jpg", "b.jpg", "f.png", "c.jpg", "d.jpg", "e.jpg"]
    first = hits[0]
    assert (first["taken"], first["taken_source"], first["camera"], first["type"]) == (
        "2021-05-01T10:00:00",
        "exif",
        "Canon EOS R5",
        "jpeg",
    )
    undated = next(h for h in hits if h["path"].endswith("f.png"))
    assert undated["taken_source"] == "mtime" and undated["camera"] is None and undated["type"] == "png"


def test_metadata_filters_combine_with_the_others(runner, base_args, dated):
    _, hits, _ = search(runner, base_args, "-k", "10", "--camera", "canon", "--after", "2022", "--type", "jpg", "x")
    assert names(hits) == {"b.jpg"}
    _, hits, _ = search(runner, base_args, "-k", "10", "--type", "png", "--before", "2023", "x")
    assert names(hits) == {"f.png"}


def test_a_cached_filter_sees_metadata_read_after_it(make_config, embedder, tmp_path):
    """Backfill changes what --camera selects without touching the index: the filter cache must notice."""
    from imgd.daemon.protocol import Filters, Options
    from imgd.daemon.service.library import open_library, open_searcher
    from test_metadata import exif_bytes

    pics = tmp_path / "cams"
    for i in range(3):
        write_image(pics / f"{i}.jpg", seed=i, exif=exif_bytes(make="Canon", model="EOS R5"))
    library = open_library(make_config(), embedder)
    try:
        library.engine.reconcile([str(pics)])
        library.engine.save_index()
        with library.catalog.transaction():  # as a catalog from before metadata: rows waiting for backfill
            library.catalog.conn.execute("UPDATE media SET version = 0, make = NULL, model = NULL")
        searcher = open_searcher(library.config, lambda name: embedder)
        canon = Options(k=5, filters=Filters(camera="canon"))
        assert searcher.run(embedder.encode_texts(["x"])[0], canon) == []
        library.engine.backfill_media()
        assert len(searcher.run(embedder.encode_texts(["x"])[0], canon)) == 3
    finally:
        library.close()


def test_the_automatic_cut_keeps_the_group_that_stands_out_not_a_lone_top_score():
    from imgd.daemon.search.query import auto_cut

    background = np.linspace(-0.3, 0.2, 400)  # what the rest of the library scores for the query
    matches = np.array([0.46, 0.455, 0.45, 0.449, 0.445, 0.44, 0.43, 0.425])
    near = np.array([0.33, 0.31, 0.29, 0.27, 0.25, 0.23, 0.21])
    assert auto_cut(np.concatenate([matches, near]), background) == len(matches)
    lone = np.concatenate([[0.6], matches, near])  # one near-identical picture on top must not end the list
    assert auto_cut(lone, background) == len(matches) + 1
    assert auto_cut(np.array([0.05, 0.02]), background) == 0  # nothing above the library's upper quartile
    assert auto_cut(np.array([0.5, 0.4]), background) == 2


def test_scores_are_shown_within_minus_one_and_one(make_config, embedder, tmp_path):
    """float16 storage lets an image's cosine to itself come out as 1.0001; a cosine is never shown above 1."""
    from imgd.daemon.protocol import Options
    from imgd.daemon.service.library import open_library, open_searcher

    pics = tmp_path / "pics"
    write_image(pics / "a.png", seed=1)
    library = open_library(make_config(), embedder)
    try:
        library.engine.reconcile([str(pics)])
        library.engine.save_index()
        searcher = open_searcher(library.config, lambda name: embedder)
        stored = library.catalog.vector(library.catalog.get_file(str(pics / "a.png")).content_id)
        hits = searcher.run(stored * 1.01, Options(k=1))  # a query a hair longer than a unit vector
        assert hits[0]["score"] == 1.0
        hits = searcher.run(-stored * 1.01, Options(k=1))
        assert hits[0]["score"] == -1.0
    finally:
        library.close()
