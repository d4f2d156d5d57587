"""Test videos written by PyAV from shapes pictures, and the broken ones imgd must fail on in one line.

Tiny on purpose (128x128, 10 frames a second, a keyframe a second): each costs well under a second to
write, and session fixtures write each once.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from shapekit import shape_image

SIZE = (128, 128)


def write_video(
    path: Path,
    scenes: list[tuple[str, str, float]],
    fps: int = 10,
    size: tuple[int, int] = SIZE,
    gop: int | None = None,
    codec: str = "libx264",
    one_seed: bool = False,
) -> Path:
    """Write scenes of (colour, shape, seconds): each one still shapes picture for its length (with
    one_seed, a colour and shape is the same picture in every scene that shows it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.gop_size = gop or fps
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        for number, (colour, shape, seconds) in enumerate(scenes):
            seed = 0 if one_seed else number
            picture = np.asarray(shape_image(colour, shape, seed=seed, size=size, background="light"))
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            for _ in range(round(seconds * fps)):
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def circle_then_square(path: Path) -> Path:
    """The video the tests search: a red circle for 0-4 s, then a blue square for 4-8 s."""
    return write_video(path, [("red", "circle", 4.0), ("blue", "square", 4.0)])


def long_video(path: Path, hours: float = 1.0, size: tuple[int, int] = (3840, 2160)) -> Path:
    """An hour of 4K that costs seconds to write: one frame every ten minutes, each a keyframe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(1, 600))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.gop_size = 1
        plain = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
        for number in range(round(hours * 6)):
            plain[:, :, number % 3] = (number * 40) % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(plain, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def audio_only(path: Path) -> Path:
    """A file named like a video that holds one second of sound and no picture."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for number in range(16):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, number * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def unknown_codec(path: Path, source: Path) -> Path:
    """An AVI of MPEG-4 frames whose codec tag is rewritten to one no decoder knows."""
    data = source.read_bytes()
    for tag in (b"FMP4", b"XVID", b"DIVX", b"mp4v"):
        data = data.replace(tag, b"QQQQ")
    path.write_bytes(data)
    return path


def truncated(path: Path, source: Path) -> Path:
    """The first half of a video (its index, written last, is missing)."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
