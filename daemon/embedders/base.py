"""What every backend shares: the Embedder protocol and the small helpers around vectors and names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import ModelUnavailable

if TYPE_CHECKING:  # PIL is imported where a picture is resized: a text search never loads it
    from PIL import Image


class Embedder(Protocol):
    """What the engine needs from a model: a name and fingerprint to record, a size, and two encoders."""

    name: str
    dim: int
    device: str
    precision: str
    backend: str
    fingerprint: str | None

    def prepare(self, image: Image.Image) -> Image.Image:
        """Shrink a decoded image to what the model looks at; safe to call from decode threads."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def model_key(name: str) -> str:
    """The name recorded in the catalog: an absolute path for local folders, else the hub name."""
    expanded = os.path.expanduser(name)
    return str(Path(expanded).resolve()) if os.path.isdir(expanded) else name


def shrink_to_side(image: Image.Image, side: int | None, upscale: bool = False) -> Image.Image:
    """Resize so the shortest edge is `side`, with the size arithmetic and filter of CLIP's processor."""
    from PIL import Image

    if side is None:
        return image
    width, height = image.size
    if min(width, height) == side or (not upscale and min(width, height) < side):
        return image
    if width <= height:
        size = (side, int(side * height / width))
    else:
        size = (int(side * width / height), side)
    return image.resize(size, Image.Resampling.BICUBIC)


def check_text_dim(text_model: str, text_dim: int, model: str, dim: int) -> None:
    """A text model must speak into the image model's space: at the least, the same dimension."""
    if text_dim != dim:
        raise ModelUnavailable(
            f"text model '{text_model}' gives {text_dim}-dimensional vectors but the image model '{model}' "
            f"gives {dim}; pick a text model trained for that image model (for clip-ViT-B-32: "
            "clip-ViT-B-32-multilingual-v1)."
        )
