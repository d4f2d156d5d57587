"""Read one video file safely: hashed in chunks, a bounded set of frames sampled, each one a small RGB picture.

Keyframes only where they are dense enough (they cost one decode each and no reference frames);
where they are sparse, a seek to the wanted time and a decode forward from the keyframe before it.
One sample every SAMPLE_EVERY seconds at most, at most MAX_FRAMES per video (the interval stretched
beyond that), at least one frame for the shortest clip; every file bounded by MAX_SECONDS of decoding
and by frames shrunk to at most FRAME_SIDE on their short side as soon as they are decoded, so an
hour of 4K holds as little memory as a minute of 480p.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ..errors import ImageReadError
from ..filetypes import VIDEO_EXTENSIONS
from ..store.records import ImageMeta
from . import imaging

SAMPLE_EVERY = 2.0  # seconds between samples, at most (where keyframes allow it cheaply)
MAX_GAP = 6.0  # where no keyframe comes within this, one is decoded at the wanted time
MAX_FRAMES = 120  # per video: beyond MAX_FRAMES * SAMPLE_EVERY seconds the interval stretches
MAX_SECONDS = 90.0  # of decoding per file: a file still not read by then fails
FRAME_SIDE = 448  # the short side frames are scaled to at once (CLIP looks at 224)
MAX_DIGEST_BYTES = 64 << 30  # a file larger than this is not a video anyone indexes
CHUNK = 1 << 20

T = TypeVar("T")


@dataclass
class Frame:
    """One sampled picture and its time in seconds from the start."""

    at: float
    image: Image.Image


@dataclass
class Video:
    """What one video file gave: its frames, its upright size and length, and its container type."""

    meta: ImageMeta
    duration: float
    frames: list[Frame] = field(default_factory=list)


def hash_file(path: str) -> str:
    """The content digest of a file read in chunks (the same digest imaging gives whole bytes)."""
    fd, info = imaging._open_regular(path)
    try:
        if info.st_size == 0:
            raise ImageReadError(path, "empty file")
        if info.st_size > MAX_DIGEST_BYTES:
            raise ImageReadError(path, "file larger than 64 GiB")
        digest = hashlib.blake2b(digest_size=20)
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    except OSError as exc:
        raise ImageReadError(path, f"read error ({exc.strerror})") from None
    finally:
        os.close(fd)


def video_type(path: str) -> str:
    """The stored type of a video: its extension, lower case ("mp4", "mov", ...)."""
    return os.path.splitext(path)[1].lower().lstrip(".")


def slots(duration: float, every: float = SAMPLE_EVERY, cap: int = MAX_FRAMES) -> list[float]:
    """The times to sample: every `every` seconds, stretched so at most `cap`, and at least one."""
    if not math.isfinite(duration) or duration <= 0:
        return [0.0]
    step = max(every, duration / cap)
    count = max(1, min(cap, math.ceil(duration / step - 1e-9)))
    return [round(i * step, 3) for i in range(count)]


def _small(frame: Any) -> Image.Image:
    """The frame in RGB, its short side at most FRAME_SIDE, scaled by FFmpeg before it reaches Python."""
    width, height = frame.width, frame.height
    scale = min(1.0, FRAME_SIDE / max(1, min(width, height)))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # AREA: a true downscale (no aliasing) and 1.4x faster than swscale's default bilinear at 1080p.
    return frame.to_image(width=size[0], height=size[1], interpolation="AREA")


class _Reader:
    """One open container and its first video stream, read within a deadline."""

    def __init__(self, path: str, container: Any, deadline: float, clock: Callable[[], float]) -> None:
        self.path = path
        self.container = container
        streams = container.streams.video
        if not streams:
            raise ImageReadError(path, "no video stream")
        self.stream = streams[0]
        context = self.stream.codec_context
        if context is None or getattr(context, "codec", None) is None:
            raise ImageReadError(path, "no decoder for its video codec")
        # Slice threads only: frame threads hold frames back and restart at every seek, which costs a
        # keyframe-per-seek reader twice the time (0.8 vs 1.6 s for a minute of 1080p here).
        self.stream.thread_type = "SLICE"
        self.base = self.stream.time_base
        self.deadline = deadline
        self.clock = clock
        self._dense: tuple[Any, Any] | None = None  # frame-threaded, for decoding runs of frames

    def close(self) -> None:
        if self._dense is not None:
            self._dense[0].close()

    def _decoding(self, keyframes: bool) -> tuple[Any, Any]:
        """(container, stream): this one for keyframes; for every frame from a keyframe on, a second one
        with frame threads (twice as fast through a run of frames, opened only where keyframes are sparse)."""
        if keyframes:
            return self.container, self.stream
        if self._dense is None:
            import av

            container = av.open(self.path, metadata_errors="ignore", timeout=10.0)
            container.streams.video[0].thread_type = "AUTO"
            self._dense = (container, container.streams.video[0])
        return self._dense

    def duration(self) -> float:
        if self.stream.duration is not None and self.base is not None:
            return float(self.stream.duration * self.base)
        if self.container.duration is not None:
            return self.container.duration / 1_000_000
        return 0.0

    def _check_time(self) -> None:
        if self.clock() > self.deadline:
            raise ImageReadError(self.path, f"video took longer than {MAX_SECONDS:.0f} s to read")

    def frames(self, at: float, keyframes: bool) -> Iterator[tuple[float, Any]]:
        """Decoded frames from the keyframe at or before `at` on (keyframes only, or every one)."""
        container, stream = self._decoding(keyframes)
        start = stream.start_time or 0
        if at > 0 and self.base is not None:
            container.seek(start + int(at / self.base), stream=stream, backward=True)
        stream.codec_context.skip_frame = "NONKEY" if keyframes else "DEFAULT"
        for frame in container.decode(stream):
            self._check_time()
            if frame.pts is None or frame.time is None:
                continue
            yield float(frame.pts - start) * float(self.base), frame


def read_video(
    path: str,
    every: float = SAMPLE_EVERY,
    cap: int = MAX_FRAMES,
    budget: float = MAX_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Video:
    """Sample a video's frames; ImageReadError with one reason when it cannot be read."""
    import av  # FFmpeg's libraries load only for a library with videos in it

    deadline = clock() + budget
    try:
        with av.open(path, metadata_errors="ignore", timeout=10.0) as container:
            reader = _Reader(path, container, deadline, clock)
            duration = reader.duration()
            try:
                frames = _sample(reader, slots(duration, every, cap), max(every, duration / cap))
            finally:
                reader.close()
            if not frames:
                raise ImageReadError(path, "no frame could be decoded")
            width, height = frames[0].image.size
            context = reader.stream.codec_context
            width, height = (context.width or width), (context.height or height)
            return Video(ImageMeta(video_type(path), width, height), duration, frames)
    except ImageReadError:
        raise
    except av.error.FileNotFoundError:
        raise ImageReadError(path, "file vanished before it could be read") from None
    except av.error.PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except av.error.InvalidDataError:
        raise ImageReadError(path, "not a video FFmpeg can read (damaged or truncated?)") from None
    except av.error.DecoderNotFoundError:
        raise ImageReadError(path, "no decoder for its video codec") from None
    except (av.error.FFmpegError, MemoryError, ValueError) as exc:
        raise ImageReadError(path, f"cannot decode video ({type(exc).__name__}: {exc})") from None


def _sample(reader: _Reader, times: list[float], step: float) -> list[Frame]:
    """A frame per slot: the nearest keyframe when one is within half a step, else the frame at the slot."""
    taken: list[Frame] = []
    last = -math.inf
    for at in times:
        if at < last + step / 2 and taken:
            continue  # the keyframe taken for an earlier slot already stands for this one
        picked = None
        for when, frame in reader.frames(at, keyframes=True):
            if when <= last:
                continue
            if when >= at - step / 2 and when < at + step / 2:
                picked = (when, frame)
            break  # one keyframe at most after the seek: the next one is another slot's
        if picked is None and (at - last >= MAX_GAP - 1e-6 or not taken):
            # Keyframes are sparse here: decode forward from the one before the slot to the slot itself.
            for when, frame in reader.frames(at, keyframes=False):
                if when >= at - 1e-3 or when > last + MAX_GAP:
                    picked = (when, frame)
                    break
        if picked is None:
            continue
        when, frame = picked
        taken.append(Frame(round(max(0.0, when), 3), _small(frame)))
        last = when
    return taken


NEAR_SAME = 0.97  # cosine at or above which a frame repeats the one kept before it


@dataclass
class Sampled:
    """A video's frames prepared for the embedder (and for the new model during a model change)."""

    meta: ImageMeta
    duration: float
    times: list[float]
    images: list[Any]
    next_images: list[Any]


def is_video(path: str) -> bool:
    """Is this file a video by its name (filetypes.VIDEO_EXTENSIONS)?"""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def split(items: Iterable[T]) -> tuple[list[T], list[T]]:
    """(photos, videos) of (stat, record) pairs, each in its order."""
    photos: list[T] = []
    videos: list[T] = []
    for item in items:
        (videos if is_video(item[0].path) else photos).append(item)  # type: ignore[index]
    return photos, videos


def prepare(path: str, embedder: Any, next_embedder: Any = None) -> Sampled:
    """Sample a video and prepare each frame for the embedder(s); the pictures themselves are let go."""
    found = read_video(path)
    images = [embedder.prepare(frame.image) for frame in found.frames]
    nexts = [next_embedder.prepare(frame.image) for frame in found.frames] if next_embedder is not None else []
    return Sampled(found.meta, found.duration, [frame.at for frame in found.frames], images, nexts)


def distinct(vectors: np.ndarray, near: float = NEAR_SAME) -> list[int]:
    """Positions of the frames to keep: each one unless it is near-identical to the last one kept."""
    keep = [0] if len(vectors) else []
    for position in range(1, len(vectors)):
        if float(np.dot(vectors[position], vectors[keep[-1]])) < near:
            keep.append(position)
    return keep


_AT = re.compile(r"^(?P<path>.+)@(?:(?P<h>\d+):)??(?:(?P<m>\d+):)?(?P<s>\d+(?:\.\d+)?)$")


def split_time(path: str) -> tuple[str, float | None]:
    """`trip.mp4@1:23` -> (`trip.mp4`, 83.0): a video's frame by its time (h:mm:ss, m:ss or seconds);
    a path that names a file itself, or carries no time, is returned whole with None."""
    match = _AT.match(path)
    if match is None or os.path.lexists(path) or not is_video(match["path"]):
        return path, None
    seconds = int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60 + float(match["s"])
    return match["path"], seconds


def frame_at(path: str, at: float, budget: float = MAX_SECONDS) -> Image.Image:
    """The picture at `at` seconds (the first frame from there on), scaled as samples are: a thumbnail's."""
    import av

    try:
        with av.open(path, metadata_errors="ignore", timeout=10.0) as container:
            reader = _Reader(path, container, time.monotonic() + budget, time.monotonic)
            try:
                for when, frame in reader.frames(max(0.0, at), keyframes=False):
                    if when >= at - 1e-3:
                        return _small(frame)
            finally:
                reader.close()
            return read_video(path, budget=budget).frames[-1].image  # past the end: the last sample
    except ImageReadError:
        raise
    except (av.error.FFmpegError, MemoryError, ValueError) as exc:
        raise ImageReadError(path, f"cannot decode video ({type(exc).__name__}: {exc})") from None
