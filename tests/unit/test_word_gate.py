"""The words gate's cheap parts: the stroke test before the detector, and the small decode it looks at.

Whether the detector then finds the lines is tested with the real models in tests/integration/test_words.py.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from imgd.daemon.ingest.words import GATE_SIDE, _gate_picture, gate_decode, has_strokes
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def page(size: tuple[int, int], font_size: int, ink: int, paper: int, turn: int = 0, rows: int = 3) -> Image.Image:
    """A few lines of text, ink on paper (grey levels), turned `turn` degrees."""
    image = Image.new("RGB", size, (paper,) * 3)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(BOLD if rows == 1 else SANS), font_size)
    for row in range(rows):
        draw.text(
            (30, 30 + row * font_size * 2), "OPEN" if rows == 1 else "Settings wifi battery", fill=(ink,) * 3, font=font
        )
    return image.rotate(turn, expand=True, fillcolor=(paper,) * 3) if turn else image


def blobs(seed: int, size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """A soft photo-like picture without words: blurred coloured blobs."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y, r = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(20, 200)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.filter(ImageFilter.GaussianBlur(3))


def gradient(size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """A sky: one colour fading into another."""
    return Image.linear_gradient("L").resize(size).convert("RGB")


@pytest.mark.parametrize(
    "picture",
    [
        page((1080, 720), 22, 20, 240),  # a screenshot's small print
        page((1080, 720), 22, 150, 235, turn=90),  # middling contrast, sideways
        page((1024, 768), 30, 195, 235),  # faint print: its edges too soft for the edge test, its lines not
        page((1024, 768), 80, 30, 220, turn=182),  # a sign's large letters, upside down
        page((850, 1100), 24, 235, 40),  # light letters on a dark page
        page((2000, 1500), 400, 30, 230, rows=1),  # a poster's headline: strokes too wide for the thin-line test
    ],
)
def test_a_picture_with_words_passes_the_stroke_test(picture: Image.Image):
    assert has_strokes(_gate_picture(picture))


@pytest.mark.parametrize("picture", [blobs(1), blobs(2), gradient(), Image.new("RGB", (640, 480), "white")])
def test_a_picture_without_thin_lines_fails_it(picture: Image.Image):
    assert not has_strokes(_gate_picture(picture))


def test_the_gate_decodes_a_jpeg_only_as_large_as_its_longest_side_needs():
    data = io.BytesIO()
    blobs(3, (1024, 768)).save(data, "JPEG", quality=90)
    image, size = gate_decode("photo.jpg", data.getvalue(), 100_000_000)
    assert size == (1024, 768)
    assert image.size == (512, 384)  # a half: the longest side still >= GATE_SIDE, the shortest below it
    assert max(image.size) >= GATE_SIDE > min(image.size)
    png = io.BytesIO()
    blobs(3, (300, 200)).save(png, "PNG")
    assert gate_decode("small.png", png.getvalue(), 100_000_000)[0].size == (300, 200)
