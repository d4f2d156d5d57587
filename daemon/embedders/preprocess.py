"""Model inputs without transformers: CLIP's image processor in numpy + PIL, and tokenizer.json
through the light `tokenizers` package. The torch path uses transformers' own processor; export
verifies that both give the same vectors, so this file only has to agree with it, not replace it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import shrink_to_side

if TYPE_CHECKING:  # imported where pictures are handled: a text search never loads PIL (~10 ms)
    from PIL import Image


@dataclass(frozen=True)
class ImagePrep:
    """The image processor's settings, recorded at export time beside the ONNX files."""

    side: int | None  # shortest edge after resizing; None resizes to (height, width) exactly
    height: int  # the crop (or the fixed size when side is None)
    width: int
    crop: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float
    resample: int = 3  # PIL's Image.Resampling.BICUBIC

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePrep:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def prepare(self, image: Image.Image) -> Image.Image:
        """What imgd's decode threads do: shrink (never enlarge) to the processor's side."""
        return shrink_to_side(image, self.side)

    def _resize(self, image: Image.Image) -> Image.Image:
        from PIL import Image

        if self.side is None:
            if image.size == (self.width, self.height):
                return image
            return image.resize((self.width, self.height), Image.Resampling(self.resample))
        width, height = image.size
        if min(width, height) == self.side:
            return image
        if width <= height:
            size = (self.side, int(self.side * height / width))
        else:
            size = (int(self.side * width / height), self.side)
        return image.resize(size, Image.Resampling(self.resample))

    def _crop(self, array: np.ndarray) -> np.ndarray:
        """Centre crop, zero-padding an image smaller than the crop as transformers does."""
        height, width = array.shape[:2]
        top, left = (height - self.height) // 2, (width - self.width) // 2
        if top >= 0 and left >= 0:
            return array[top : top + self.height, left : left + self.width]
        new_h, new_w = max(height, self.height), max(width, self.width)
        padded = np.zeros((new_h, new_w, array.shape[2]), dtype=array.dtype)
        pad_top, pad_left = -(-(new_h - height) // 2), -(-(new_w - width) // 2)
        padded[pad_top : pad_top + height, pad_left : pad_left + width] = array
        top, left = top + pad_top, left + pad_left
        return padded[max(0, top) : top + self.height, max(0, left) : left + self.width]

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """A float32 batch [N, 3, H, W], as CLIP's processor makes it."""
        batch = np.empty((len(images), 3, self.height, self.width), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        for i, image in enumerate(images):
            if image.mode != "RGB":
                image = image.convert("RGB")
            array = np.asarray(self._resize(image))
            if self.crop:
                array = self._crop(array)
            scaled = (array.astype(np.float64) * self.rescale).astype(np.float32)
            batch[i] = ((scaled - mean) / std).transpose(2, 0, 1)
        return batch


class TextPrep:
    """tokenizer.json with the truncation and padding the torch path uses."""

    def __init__(self, tokenizer_json: str, max_length: int, pad_id: int) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(pad_id=pad_id)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        }


PROBE_TEXTS = (
    "a photo of a dog on the beach",
    "Ein Hund am Strand, ¿dónde está? 東京の夜",
    " ".join(["a very long caption that the tokenizer has to cut"] * 12),
)
PROBE_SIZES = ((640, 480), (300, 500), (224, 224), (17, 33))


def probe_image(seed: int = 0, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A fixed picture with edges and noise, so verification sees resizing, cropping and colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    noisy = np.asarray(image).astype(np.int16) + rng.integers(-20, 21, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
