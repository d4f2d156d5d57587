"""The committed shapes model knows what things are: a text query finds the colour and shape it names.

The model (tests/models/shapes-clip, trained by benchmarks/train_shapes.py) is loaded through imgd's own
embedder and searched over a labelled corpus from tests/shapekit.py that it never saw in training, so
these tests hold the ground that the end-to-end semantic tests stand on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapekit
from imgd.daemon.embedders import Embedder, load_embedder
from PIL import Image

CORPUS_SEED = 3  # training used seeds from 10**9 up: these pictures are new to the model


class Corpus:
    """Embedded pictures of all 30 classes, 10 each, with their labels."""

    def __init__(self, embedder: Embedder, pictures: list[tuple[Image.Image, str, str]]) -> None:
        self.embedder = embedder
        self.vectors = embedder.encode_images([embedder.prepare(image) for image, _, _ in pictures])
        self.colours = np.array([colour for _, colour, _ in pictures])
        self.shapes = np.array([shape for _, _, shape in pictures])

    def text(self, words: str) -> np.ndarray:
        vector = self.embedder.encode_texts([words])[0]
        return vector / np.linalg.norm(vector)

    def top(self, query: np.ndarray, k: int = 10) -> np.ndarray:
        return np.argsort(-(self.vectors @ query), kind="stable")[:k]


def precision_at_10(corpus: Corpus, query: str, colour: str | None, shape: str | None) -> float:
    hits = corpus.top(corpus.text(query))
    right = np.ones(len(hits), bool)
    if colour:
        right &= corpus.colours[hits] == colour
    if shape:
        right &= corpus.shapes[hits] == shape
    return float(right.mean())


@pytest.fixture(scope="module")
def pictures() -> list[tuple[Image.Image, str, str]]:
    return shapekit.corpus_images(10, CORPUS_SEED)


@pytest.fixture(scope="module")
def corpus(shapes_model: Path, pictures: list[tuple[Image.Image, str, str]]) -> Corpus:
    return Corpus(load_embedder(str(shapes_model), device="cpu", batch_size=64), pictures)


@pytest.mark.parametrize(
    ("colour", "shape"),
    [("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "star"), ("purple", "cross")],
)
def test_a_colour_and_shape_query_finds_that_colour_and_shape(corpus: Corpus, colour: str, shape: str) -> None:
    assert precision_at_10(corpus, f"a {colour} {shape}", colour, shape) >= 0.9


def test_an_is_understood_before_a_vowel(corpus: Corpus) -> None:
    assert precision_at_10(corpus, "an orange star", "orange", "star") >= 0.9


@pytest.mark.parametrize("colour", list(shapekit.COLOURS))
def test_a_colour_alone_finds_only_that_colour(corpus: Corpus, colour: str) -> None:
    assert precision_at_10(corpus, colour, colour, None) == 1.0


def test_a_negative_term_removes_what_it_names(corpus: Corpus) -> None:
    circles = corpus.text("a circle")
    red = corpus.text("red")
    query = circles - red
    hits = corpus.top(query / np.linalg.norm(query))
    assert not (corpus.colours[hits] == "red").any()
    assert (corpus.shapes[hits] == "circle").mean() >= 0.8


def test_the_same_check_fails_a_model_that_knows_nothing(
    embedder: Embedder, pictures: list[tuple[Image.Image, str, str]]
) -> None:
    """The random-weight tiny CLIP scores far below the bar these tests set: they can fail."""
    blind = Corpus(embedder, pictures)
    scores = [precision_at_10(blind, f"a {colour} {shape}", colour, shape) for colour, shape in shapekit.CLASSES[::6]]
    assert np.mean(scores) < 0.5


def test_a_query_longer_than_the_model_reads_is_cut_not_refused(corpus: Corpus) -> None:
    """Words the model does not know are spelt letter by letter: this one is 58 tokens, over its 32."""
    vector = corpus.text("a red circle next to the hardware store receipt from a very long street somewhere")
    assert vector.shape == corpus.vectors.shape[1:] and np.isfinite(vector).all()


def test_write_corpus_writes_the_labelled_pictures_corpus_images_makes(tmp_path: Path) -> None:
    rows = shapekit.write_corpus(tmp_path / "pics", per_class=1, seed=4)
    assert len(rows) == 30 and len({path.name for path, _, _ in rows}) == 30
    assert all(colour not in path.name and shape not in path.name for path, colour, shape in rows)
    again = shapekit.corpus_images(1, seed=4)
    assert [(colour, shape) for _, colour, shape in rows] == [(colour, shape) for _, colour, shape in again]
    with Image.open(rows[7][0]) as written:
        assert np.array_equal(np.asarray(written), np.asarray(again[7][0]))  # PNG: the same pixels
    assert not np.array_equal(np.asarray(again[0][0]), np.asarray(shapekit.corpus_images(1, seed=5)[0][0]))


def test_the_readme_screenshots_show_the_shapes_model_answering_a_query_it_knows(
    corpus: Corpus, shapes_model: Path
) -> None:
    """The README's first pictures once showed a random model answering "sunset by the sea" with flowers."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "docs" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", path)
    assert spec is not None and spec.loader is not None
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)

    assert screenshots.MODEL.resolve() == shapes_model.resolve()
    colour, shape = screenshots.QUERY.split()[-2:]
    assert precision_at_10(corpus, screenshots.QUERY, colour, shape) == 1.0
