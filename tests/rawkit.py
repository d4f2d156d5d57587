"""Camera RAW files for tests: a DNG written by pidng from any RGB picture, optionally with an embedded JPEG preview.

The picture is sampled through an RGGB Bayer filter (one colour per pixel, 16 bits), so LibRaw has to
demosaic it like a real camera's; an identity colour matrix and neutral white balance keep its colours
close to the picture's. The preview is a second TIFF directory (NewSubfileType 1) holding a JPEG, as
cameras write it: pidng writes one directory only, so it is chained on after the fact.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from pidng.core import RAW2DNG, DNGTags, Tag
from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
from PIL import Image

WHITE = 4095  # 12-bit sensor values in 16-bit samples


def bayer(picture: Image.Image) -> np.ndarray:
    """The RGGB mosaic of an RGB picture, linear, 12-bit."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255.0
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)  # undo sRGB
    height, width = linear.shape[:2]
    mosaic = np.empty((height, width), np.float64)
    mosaic[0::2, 0::2] = linear[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = linear[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = linear[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = linear[1::2, 1::2, 2]
    return np.clip(mosaic * WHITE, 0, WHITE).astype(np.uint16)


def dng_bytes(
    picture: Image.Image,
    make: str = "Testcam",
    model: str = "RAW-1",
    taken: str | None = "2024:05:17 10:30:00",
    orientation: int = 1,
    preview: Image.Image | None = None,
) -> bytes:
    """A DNG of the picture (even width and height), as LibRaw reads it; with a JPEG preview when given one."""
    width, height = picture.size
    tags = DNGTags()
    tags.set(Tag.ImageWidth, width)
    tags.set(Tag.ImageLength, height)
    tags.set(Tag.TileWidth, width)
    tags.set(Tag.TileLength, height)
    tags.set(Tag.Orientation, orientation)
    tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    tags.set(Tag.SamplesPerPixel, 1)
    tags.set(Tag.BitsPerSample, 16)
    tags.set(Tag.CFARepeatPatternDim, [2, 2])
    tags.set(Tag.CFAPattern, CFAPattern.RGGB)
    tags.set(Tag.BlackLevel, 0)
    tags.set(Tag.WhiteLevel, WHITE)
    tags.set(Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]])
    tags.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    tags.set(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    tags.set(Tag.BaselineExposure, [[0, 1]])
    tags.set(Tag.Make, make)
    tags.set(Tag.Model, model)
    tags.set(Tag.UniqueCameraModel, f"{make} {model}")
    tags.set(Tag.DNGVersion, DNGVersion.V1_4)
    tags.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    if taken:
        tags.set(Tag.DateTimeOriginal, taken)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    data = bytes(writer.convert(bayer(picture)))
    return _with_preview(data, preview) if preview is not None else data


def _with_preview(data: bytes, preview: Image.Image) -> bytes:
    """Chain a second directory holding a JPEG preview after the DNG's first (little-endian TIFF)."""
    assert data[:4] == b"II*\x00"
    buffer = io.BytesIO()
    preview.convert("RGB").save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    next_at = first + 2 + 12 * count  # where IFD0 says which directory follows it
    out = bytearray(data)
    if len(out) % 2:
        out += b"\x00"
    jpeg_at = len(out)
    out += jpeg
    if len(out) % 2:
        out += b"\x00"
    ifd_at = len(out)
    entries = [
        (254, 4, 1, 1),  # NewSubfileType: a reduced-resolution copy
        (256, 4, 1, preview.width),
        (257, 4, 1, preview.height),
        (259, 3, 1, 6),  # old-style JPEG
        (262, 3, 1, 6),  # YCbCr
        (277, 3, 1, 3),
        (513, 4, 1, jpeg_at),  # JPEGInterchangeFormat
        (514, 4, 1, len(jpeg)),  # JPEGInterchangeFormatLength
    ]
    out += struct.pack("<H", len(entries))
    for tag, kind, number, value in entries:
        packed = struct.pack("<HHI", tag, kind, number)
        out += packed + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    out += struct.pack("<I", 0)
    struct.pack_into("<I", out, next_at, ifd_at)
    return bytes(out)


def write_dng(path: Path, picture: Image.Image, **options: object) -> Path:
    """Write dng_bytes(picture, ...) to path."""
    path.write_bytes(dng_bytes(picture, **options))  # type: ignore[arg-type]
    return path


def bomb_bytes(declared: int) -> bytes:
    """A small DNG whose header declares a declared x declared picture (a RAW bomb, or a lie)."""
    data = bytearray(dng_bytes(Image.new("RGB", (64, 48), (200, 30, 30))))
    first = struct.unpack_from("<I", data, 4)[0]
    for number in range(struct.unpack_from("<H", data, first)[0]):
        at = first + 2 + 12 * number
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257, 322, 323):  # width, length, tile width, tile length
            struct.pack_into("<H" if kind == 3 else "<I", data, at + 8, declared)
    return bytes(data)
