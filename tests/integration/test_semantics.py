"""Meaning, end to end: with the trained shapes model (tests/models/shapes-clip) a query finds what it
names, through the CLI directly and through a real daemon, with identical answers.

Each test asks `imgd` as a user would and checks the labels of what comes back: colour and shape
queries, a negative term, an image term plus a text term, the automatic cut-off, and filters combined
with meaning.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemonkit import DaemonProcess
from imgd.cli.main import cli
from shapekit import CLASSES, shape_image

pytestmark = pytest.mark.slow  # indexing 300 pictures and a daemon: tens of seconds


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, shapes_model: Path) -> dict:
    """300 pictures: 30 red circles among 270 of the other 29 classes, in two folders; indexed once."""
    root = tmp_path_factory.mktemp("semantics")
    others = [c for c in CLASSES if c != ("red", "circle")]
    plan = [("red", "circle")] * 30 + [others[i % len(others)] for i in range(270)]
    labels: dict[str, tuple[str, str]] = {}
    for i, (colour, shape) in enumerate(plan):
        folder = root / "pics" / ("left" if i % 2 else "right")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{i:04d}.png"
        shape_image(colour, shape, 7000 + i, (96, 96)).save(path)
        labels[str(path)] = (colour, shape)
    args = ["--state-dir", str(root / "state"), "--model", str(shapes_model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "index", str(root / "pics")], env={"IMGD_BACKEND": "torch"})
    assert result.exit_code == 0, result.output
    return {"root": root, "args": args, "labels": labels}


def ask(library: dict, *query: str, command: str = "search", env: dict | None = None) -> list[dict]:
    result = CliRunner().invoke(cli, [*library["args"], command, "--direct", "--json", *query], env=env)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout) if result.stdout.strip() else []


def labels_of(library: dict, hits: list[dict]) -> list[tuple[str, str]]:
    return [library["labels"][h["path"]] for h in hits]


@pytest.mark.parametrize(("colour", "shape"), [("red", "circle"), ("blue", "square"), ("yellow", "star")])
def test_a_colour_and_shape_query_finds_that_colour_and_shape(library, colour, shape):
    found = labels_of(library, ask(library, "-k", "10", f"a {colour} {shape}"))
    precision = sum(label == (colour, shape) for label in found) / len(found)
    assert len(found) == 10 and precision >= 0.9, found


def test_a_negative_term_removes_what_it_names(library):
    plain = labels_of(library, ask(library, "-k", "10", "a circle"))
    without_red = labels_of(library, ask(library, "-k", "10", "a circle", "--not", "red"))
    assert sum(colour == "red" for colour, _ in plain) >= 2  # some of the 30 red circles are in a plain "a circle"
    assert sum(colour == "red" for colour, _ in without_red) == 0, without_red
    assert sum(shape == "circle" for _, shape in without_red) >= 8, without_red


def test_an_image_term_and_a_text_term_pull_toward_both(library):
    reference = library["root"] / "blue-ref.png"
    shape_image("blue", "circle", 123456, (96, 96)).save(reference)  # a blue circle outside the library
    by_image = labels_of(library, ask(library, "-k", "10", "--like", str(reference)))
    by_text = labels_of(library, ask(library, "-k", "10", "a square"))
    both = labels_of(library, ask(library, "-k", "10", "--like", str(reference), "a square"))
    blue_squares = Counter(both)[("blue", "square")]
    assert blue_squares > Counter(by_image)[("blue", "square")]
    assert blue_squares > Counter(by_text)[("blue", "square")]
    assert sum(colour == "blue" for colour, _ in both) > sum(colour == "blue" for colour, _ in by_text)
    assert sum(shape == "square" for _, shape in both) > sum(shape == "square" for _, shape in by_image)


def test_the_automatic_cut_off_returns_the_matches_and_stops(library):
    hits = labels_of(library, ask(library, "--auto", "a red circle"))
    true_positives = sum(label == ("red", "circle") for label in hits)
    precision, recall = true_positives / max(1, len(hits)), true_positives / 30
    assert precision >= 0.8 and recall >= 0.8, (len(hits), precision, recall)
    colour_only = labels_of(library, ask(library, "--auto", "red"))
    reds = sum(colour == "red" for colour, _ in library["labels"].values())
    assert sum(colour == "red" for colour, _ in colour_only) >= 0.8 * reds
    assert sum(colour == "red" for colour, _ in colour_only) >= 0.8 * len(colour_only)


def test_filters_combine_with_meaning(library):
    left = str(library["root"] / "pics" / "left")
    hits = ask(library, "-k", "10", "--in", left, "a red circle")
    assert all(h["path"].startswith(left + os.sep) for h in hits)
    assert sum(label == ("red", "circle") for label in labels_of(library, hits)) == 10  # 15 are in left/
    only_png = ask(library, "-k", "5", "--type", "jpg", "a red circle")
    assert only_png == []  # every picture is a PNG


def test_similar_finds_the_same_class_and_leaves_the_picture_out(library):
    source = next(p for p, label in library["labels"].items() if label == ("yellow", "star"))
    hits = ask(library, "-k", "5", source, command="similar")
    assert source not in {h["path"] for h in hits}
    assert sum(label == ("yellow", "star") for label in labels_of(library, hits)) >= 4


def test_the_daemon_gives_the_same_meaningful_answers(library, shapes_model, tmp_path):
    with DaemonProcess(tmp_path, shapes_model, [library["root"] / "pics"], IMGD_BACKEND="torch") as daemon:
        daemon.state_dir = library["root"] / "state"
        daemon.env["IMGD_STATE_DIR"] = str(daemon.state_dir)
        daemon.start()
        daemon.wait_idle()
        env = {"XDG_RUNTIME_DIR": str(daemon.runtime)}
        for query, wanted in (
            (["a red circle"], lambda colour, shape: (colour, shape) == ("red", "circle")),
            (["--auto", "a red circle"], lambda colour, shape: (colour, shape) == ("red", "circle")),
            (["a circle", "--not", "red"], lambda colour, shape: colour != "red"),
        ):
            args = [*library["args"], "search", "--json", "-k", "10", *query]
            via_daemon = CliRunner().invoke(cli, args, env=env)
            direct = CliRunner().invoke(cli, [*args, "--direct"], env=env)
            assert via_daemon.exit_code == direct.exit_code == 0
            assert via_daemon.stdout == direct.stdout, query
            found = labels_of(library, json.loads(via_daemon.stdout))
            assert found and sum(wanted(*label) for label in found) >= 0.9 * len(found), (query, found)
        assert daemon.stop(signal.SIGTERM) == 0
