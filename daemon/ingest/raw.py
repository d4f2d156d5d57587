"""Camera RAW files through LibRaw (rawpy): the embedded preview when it is large enough, else a half-size demosaic.

The preview is what the camera rendered (its colours, its white balance) and costs one JPEG decode; a
preview too small to embed well (under MIN_PREVIEW_SIDE on its short side) or absent falls back to
LibRaw's half-size demosaic, which skips interpolation and reads a quarter of the pixels. What the RAW
says about itself (date, camera, lens, GPS, orientation) is read from its own TIFF directories where
it has them (DNG, CR2, NEF, ARW, PEF, SRW, ...), else from the preview's EXIF, else from LibRaw.
The declared size is checked against max_pixels before a single pixel is unpacked (a RAW bomb), and
LibRaw's own allocation cap bounds what a lying header can still ask for.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import rawpy
from PIL import Image

from ..errors import ImageReadError
from ..store.records import ImageMeta
from . import exif

# A preview whose short side reaches this is used as it is: the same floor the JPEG path draft-decodes
# down to (imaging.DRAFT_MIN_SIDE), twice what a 224-pixel CLIP model looks at. Cameras embed 1620 px
# or full-size previews; the 160 px thumbnails some also carry fall below it.
MIN_PREVIEW_SIDE = 448
# Pillow's decode of a preview (imaging.decode_picture), handed in: imaging dispatches RAWs to this module.
PictureDecoder = Callable[[str, bytes, int, int], tuple[Image.Image, ImageMeta]]
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
# LibRaw's flip codes -> the turn that makes the sensor's picture upright (0 none, 3 half, 5 and 6 quarter turns).
FLIP_TURNS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def _opened(path: str, data: bytes) -> rawpy.RawPy:
    """A RawPy over the bytes, header parsed, nothing unpacked yet."""
    raw = rawpy.RawPy()
    try:
        raw.open_buffer(io.BytesIO(data))
    except rawpy.LibRawFileUnsupportedError:
        raw.close()
        raise ImageReadError(path, "not a RAW file LibRaw can read") from None
    except rawpy.LibRawError as exc:
        raw.close()
        raise ImageReadError(path, f"cannot read the RAW file ({_reason(exc)})") from None
    return raw


def _reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else ""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return text.split("\n")[0] or type(exc).__name__


def _upright(raw: rawpy.RawPy) -> tuple[int, int]:
    sizes = raw.sizes
    width, height = sizes.width, sizes.height
    return (height, width) if sizes.flip in (5, 6) else (width, height)


def decode_with_meta(
    path: str, data: bytes, max_pixels: int, min_side: int, picture: PictureDecoder
) -> tuple[Image.Image, ImageMeta]:
    """The RAW's picture upright in RGB (preview, else half-size demosaic) and what it says about itself."""
    raw = _opened(path, data)
    try:
        width, height = _upright(raw)  # before decoding: LibRaw halves its sizes for a half-size demosaic
        if width <= 0 or height <= 0:
            raise ImageReadError(path, "RAW file declares no picture")
        if width * height > max_pixels:
            raise ImageReadError(
                path, f"image too large ({width}x{height} pixels, limit {max_pixels}); possible decompression bomb"
            )
        image, preview_meta = _preview(path, raw, max_pixels, min_side, picture)
        if image is None:
            image = _demosaic(path, raw)
        meta = raw_meta(path, data, raw, (width, height), preview_meta)
        return image, meta
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode") from None
    finally:
        raw.close()


def _preview(
    path: str, raw: rawpy.RawPy, max_pixels: int, min_side: int, picture: PictureDecoder
) -> tuple[Image.Image | None, ImageMeta | None]:
    """The embedded preview, upright, if there is one large enough; with what its own EXIF says."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, ValueError):
        return None, None  # no preview, or one LibRaw cannot hand over: demosaic instead
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            with Image.open(io.BytesIO(thumb.data)) as header:
                size = header.size
                orientation = header.getexif().get(exif.ORIENTATION_TAG, 1)
        except Exception:  # noqa: BLE001 - a broken preview is no reason to give up on the RAW
            return None, None
        if min(size) < min(min_side, MIN_PREVIEW_SIDE):
            return None, None
        try:
            image, meta = picture(path, thumb.data, max_pixels, min_side)
        except ImageReadError:
            return None, None
        if orientation in (None, 1):  # the preview is stored as the sensor saw it: turn it as the RAW says
            image = _turned(image, raw.sizes.flip)
        return image, meta
    array = np.asarray(thumb.data)
    if array.ndim != 3 or min(array.shape[:2]) < min(min_side, MIN_PREVIEW_SIDE):
        return None, None
    return _turned(Image.fromarray(array.astype(np.uint8)).convert("RGB"), raw.sizes.flip), None


def _turned(image: Image.Image, flip: int) -> Image.Image:
    turn = FLIP_TURNS.get(flip)
    return image.transpose(turn) if turn is not None else image


def _demosaic(path: str, raw: rawpy.RawPy) -> Image.Image:
    """LibRaw's half-size demosaic (a quarter of the pixels, no interpolation), camera white balance, 8-bit sRGB."""
    try:
        raw.unpack()
        array = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, no_auto_bright=False)
    except rawpy.LibRawError as exc:
        raise ImageReadError(path, f"cannot decode the RAW file ({_reason(exc)})") from None
    return Image.fromarray(array, "RGB")


def raw_meta(
    path: str, data: bytes, raw: rawpy.RawPy, size: tuple[int, int], preview_meta: ImageMeta | None = None
) -> ImageMeta:
    """Date, camera, lens and GPS from the RAW's own TIFF directories, else the preview's EXIF, else LibRaw."""
    width, height = size
    kind = os.path.splitext(path)[1].lower().lstrip(".") or None
    meta = ImageMeta(format=kind, width=width, height=height)
    if data[:4] in TIFF_HEADERS:
        with contextlib.suppress(Exception):
            tags = Image.Exif()
            tags.load(data)
            meta = exif.read_meta(None, tags, width, height)
            if meta.taken is None:  # some writers (DNG converters) put the date in the first directory
                meta = replace(meta, taken=exif.taken_text(tags.get(exif.DATETIME_ORIGINAL)))
            meta = replace(meta, format=kind)
    if preview_meta is not None:
        facts = {
            name: getattr(preview_meta, name)
            for name in ("taken", "taken_offset", "make", "model", "lens", "latitude", "longitude")
            if getattr(meta, name) is None and getattr(preview_meta, name) is not None
        }
        if facts.get("latitude") is None or facts.get("longitude") is None:
            facts.pop("latitude", None)
            facts.pop("longitude", None)
        meta = replace(meta, **facts)
    if meta.taken is None:  # LibRaw's reading, last: rawpy unpacks the whole RAW to answer (20 ms at 2 Mpx)
        with contextlib.suppress(Exception):
            stamp = raw.other.timestamp
            if stamp.year > 1970:
                meta = replace(meta, taken=stamp.strftime("%Y-%m-%d %H:%M:%S"))
            if meta.lens is None and raw.lens.model:
                meta = replace(meta, lens=exif.text_value(raw.lens.model))
    return meta


def probe(path: str, data: bytes) -> ImageMeta:
    """A RAW's metadata without decoding a pixel (for catalogs indexed before metadata was kept)."""
    raw = _opened(path, data)
    try:
        return raw_meta(path, data, raw, _upright(raw))
    finally:
        raw.close()
