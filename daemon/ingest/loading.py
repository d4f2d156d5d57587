"""One file read, hashed, decoded and prepared for the embedder: what the engine's decode threads and a
cluster's workers (cluster.py) both run, so a file is read the same way wherever it is embedded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..embedders import Embedder
from ..errors import ImageReadError, display_path
from ..store.records import FileRecord, FileStat, ImageMeta
from ..verbosity import DETAIL
from . import imaging, video

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    stat: FileStat
    previous: FileRecord | None
    digest: str | None = None
    image: object | None = None
    width: int = 0
    height: int = 0
    error: str | None = None
    meta: ImageMeta | None = None
    next_image: object | None = None  # prepared for the new model, during a model change
    frames: video.Sampled | None = None  # a video's prepared frames, in place of image and next_image
    vectors: np.ndarray | None = None  # embedded already, by a cluster's worker (cluster.py): one row a picture

    @property
    def count(self) -> int:
        """Pictures to embed: a video's frames, a photo's one, none for known bytes."""
        if self.vectors is not None:
            return len(self.vectors)
        return len(self.frames.times) if self.frames is not None else int(self.image is not None)


def load_file(
    stat: FileStat,
    previous: FileRecord | None,
    config: Config,
    embedder: Embedder,
    next_embedder: Embedder | None = None,
    known: Callable[[str], bool] = lambda digest: False,
) -> _Loaded:
    """Read, hash, decode and prepare one file for the embedder; a file that cannot be read says why.

    Known bytes (`known(digest)`) are not decoded. The engine's decode threads and a cluster's workers both
    run this, so a file is read the same way wherever it is embedded.
    """
    result = _Loaded(stat, previous)
    try:
        if video.is_video(stat.path):
            result.digest = video.hash_file(stat.path)
            if not known(result.digest):
                result.frames = video.prepare(stat.path, embedder, next_embedder)
                result.meta = result.frames.meta
                result.width, result.height = result.meta.width, result.meta.height
            return result
        data, result.digest = imaging.read_and_hash(stat.path)
        if known(result.digest):
            log.log(DETAIL, "known content, not embedded again: %s", display_path(stat.path))
            return result
        image, result.meta = imaging.decode_with_meta(stat.path, data, config.max_image_pixels)
        result.width, result.height = result.meta.width, result.meta.height
        result.image = embedder.prepare(image)
        if next_embedder is not None:
            result.next_image = next_embedder.prepare(image)
    except ImageReadError as exc:
        result.error = exc.reason
    except Exception as exc:  # noqa: BLE001 - one strange file must never stop a run
        result.error = f"unexpected error ({type(exc).__name__}: {exc})"
    return result
