"""Synthetic coloured shapes with labels and captions: the world the shapes test model knows.

Six clearly distinct colours x five shapes, each drawn at a random size, position and turn on a light,
dark or muted background with pixel noise, all decided by a seed, so a test can generate the same
labelled corpus again and know which images a query ought to find.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 70, 230),
    "yellow": (245, 220, 30),
    "purple": (150, 40, 190),
    "orange": (250, 135, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
BACKGROUNDS = ("light", "dark", "muted")
CLASSES = [(colour, shape) for colour in COLOURS for shape in SHAPES]

# Every word a caption uses; the model's tokenizer keeps each one a single token.
CAPTION_WORDS = (
    "a",
    "an",
    "of",
    "on",
    "photo",
    "picture",
    "drawing",
    "shape",
    "background",
    *COLOURS,
    *SHAPES,
    *BACKGROUNDS,
)


def _background(kind: str, rng: random.Random) -> tuple[int, int, int]:
    if kind == "light":
        grey = rng.randint(200, 245)
        return tuple(min(255, grey + rng.randint(-6, 6)) for _ in range(3))  # type: ignore[return-value]
    if kind == "dark":
        grey = rng.randint(15, 60)
        return tuple(max(0, grey + rng.randint(-6, 6)) for _ in range(3))  # type: ignore[return-value]
    # Muted: a grey with a faint tint, far from any of the saturated shape colours.
    grey = rng.randint(80, 170)
    return tuple(max(0, min(255, grey + rng.randint(-25, 25))) for _ in range(3))  # type: ignore[return-value]


def _polygon(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """Corner points of a shape of radius r centred on (cx, cy), turned by `turn` radians."""
    if shape == "square":
        points = [(math.pi / 4 + k * math.pi / 2, r) for k in range(4)]
    elif shape == "triangle":
        points = [(-math.pi / 2 + k * 2 * math.pi / 3, r) for k in range(3)]
    elif shape == "star":
        points = [(-math.pi / 2 + k * math.pi / 5, r if k % 2 == 0 else 0.42 * r) for k in range(10)]
    elif shape == "cross":
        w = 0.34 * r  # half the width of an arm
        corners = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w)]
        corners += [(-w, w), (-w, r)]
        points = [(math.atan2(y, x), math.hypot(x, y)) for x, y in corners]
    else:
        raise ValueError(f"no polygon for {shape!r}")
    return [(cx + d * math.cos(a + turn), cy + d * math.sin(a + turn)) for a, d in points]


def shape_image(
    colour: str,
    shape: str,
    seed: int,
    size: tuple[int, int] = (96, 96),
    background: str | None = None,
) -> Image.Image:
    """One `colour` `shape` picture; everything else (size, place, turn, background, noise) follows the seed."""
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"unknown colour or shape: {colour!r} {shape!r}")
    rng = random.Random(f"{colour}/{shape}/{seed}")
    background = background or rng.choice(BACKGROUNDS)
    width, height = size
    side = min(width, height)
    # Drawn 4x larger and shrunk, for smooth edges.
    scale = 4
    image = Image.new("RGB", (width * scale, height * scale), _background(background, rng))
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.25, 0.45) * side
    cx = rng.uniform(r, width - r)
    cy = rng.uniform(r, height - r)
    jitter = rng.randint(-12, 12)
    fill = tuple(max(0, min(255, c + jitter + rng.randint(-8, 8))) for c in COLOURS[colour])
    if shape == "circle":
        draw.ellipse([(cx - r) * scale, (cy - r) * scale, (cx + r) * scale, (cy + r) * scale], fill=fill)
    else:
        turn = rng.uniform(-0.3, 0.3)
        draw.polygon([(x * scale, y * scale) for x, y in _polygon(shape, cx, cy, r, turn)], fill=fill)
    image = image.resize(size, Image.Resampling.LANCZOS)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(3, 12), (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def background_of(colour: str, shape: str, seed: int) -> str:
    """The background kind shape_image(colour, shape, seed) draws on when none is asked for."""
    return random.Random(f"{colour}/{shape}/{seed}").choice(BACKGROUNDS)


TEMPLATES = (
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a picture of a {colour} {shape}",
    "{colour} {shape}",
    "a {colour} {shape} on a {background} background",
    "a {shape} on a {background} background",
    "a {colour} shape on a {background} background",
    "a photo of a {shape}",
    "a drawing of a {shape}",
    "a {shape}",
    "{shape}",
    "{colour}",
    "a {colour} shape",
    "a {colour} drawing",
)


def captions(colour: str, shape: str, background: str) -> list[str]:
    """Everything that may truthfully be said of one picture, from the full description to one word."""
    return [caption(template, colour, shape, background) for template in TEMPLATES]


def caption(template: str, colour: str, shape: str, background: str) -> str:
    """Fill in a template, with "an" before a vowel ("an orange star")."""
    return re.sub(r"\ba (?=[aeiou])", "an ", template.format(colour=colour, shape=shape, background=background))


def described(template: str, colour: str, shape: str, background: str) -> tuple[str | None, str | None, str | None]:
    """What a caption made from template pins down: (colour, shape, background), None where it says nothing."""
    return (
        colour if "{colour}" in template else None,
        shape if "{shape}" in template else None,
        background if "{background}" in template else None,
    )


def write_corpus(
    folder: Path, per_class: int, seed: int = 0, size: tuple[int, int] = (96, 96), fmt: str = "png"
) -> list[tuple[Path, str, str]]:
    """Write per_class pictures of each of the 30 classes into folder; return (path, colour, shape) rows.

    File names say nothing about the content (a hash-like number), so a search cannot cheat on them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    order = random.Random(seed)
    rows = []
    for colour, shape in CLASSES:
        for n in range(per_class):
            image_seed = seed * 1_000_003 + n
            path = folder / f"img-{order.getrandbits(40):010x}.{fmt}"
            image = shape_image(colour, shape, image_seed, size)
            image.save(path, **({"quality": 92} if fmt in ("jpg", "jpeg") else {}))
            rows.append((path, colour, shape))
    return rows


def corpus_images(
    per_class: int, seed: int = 0, size: tuple[int, int] = (96, 96)
) -> list[tuple[Image.Image, str, str]]:
    """The pictures write_corpus(folder, per_class, seed) writes, in memory."""
    return [
        (shape_image(colour, shape, seed * 1_000_003 + n, size), colour, shape)
        for colour, shape in CLASSES
        for n in range(per_class)
    ]
