"""Read one image file safely: once from disk, hashed, EXIF-oriented, draft-decoded, converted to RGB.

Also what the bytes say about the picture (ImageMeta: taken date, camera, lens, GPS, type, upright
size), read from the same opened image at embed time, or from the header alone (`probe`) for
catalogs indexed before metadata was kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings

import numpy as np
import pillow_jxl  # noqa: F401 - registers JPEG XL with Pillow (Pillow 13 reads AVIF itself)
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from ..errors import ImageReadError
from ..filetypes import RAW_EXTENSIONS
from ..store.records import ImageMeta
from . import raw
from .exif import ORIENTATION_TAG, read_meta

# HEIC/HEIF in the default install: importing pillow-heif costs ~50 ms once per process (after numpy and
# Pillow), in the daemon, `imgd index` and direct searches (a search through the daemon never imports this).
register_heif_opener()
HEIF_AVAILABLE = True

# Truncated files must fail, not decode into a half-grey picture that gets indexed as if whole.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# decode() enforces Config.max_image_pixels from the header before any pixel is decoded; Pillow's own,
# lower limit (~89 Mpx) would refuse 100 Mpx camera photos the config allows.
Image.MAX_IMAGE_PIXELS = None

# The smallest side CLIP models look at; draft decoding never goes below twice this.
DRAFT_MIN_SIDE = 448
MAX_FILE_BYTES = 1 << 30


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open a regular file without ever blocking on a FIFO or device that took its name; the caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageReadError(path, "file vanished before it could be read") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise ImageReadError(path, f"read error ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageReadError(path, "not a regular file")
    return fd, info


def read_bytes(path: str) -> bytes:
    """Read a regular file without ever blocking on a FIFO or device that took its name."""
    fd, info = _open_regular(path)
    try:
        if info.st_size > MAX_FILE_BYTES:
            raise ImageReadError(path, "file larger than 1 GiB")
        # One read of the whole size into one buffer: 1 MiB reads joined wrote every byte twice and held two
        # copies at the peak (a 26 MB RAW: 36.5 against 15.8 ms median, benchmarks/RESULTS.md "Issue 23:
        # RAW rate"). The loop only runs for a file that grew since its stat.
        chunks = [os.read(fd, info.st_size + 1)]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as exc:
        raise ImageReadError(path, f"read error ({exc.strerror})") from None
    finally:
        os.close(fd)


def is_raw(path: str) -> bool:
    """Is this a camera RAW file, by its name: decoded by LibRaw rather than Pillow."""
    return os.path.splitext(path)[1].lower() in RAW_EXTENSIONS


def digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def read_and_hash(path: str) -> tuple[bytes, str]:
    """The file's bytes and content digest, read once: the digest decides whether decoding is needed at all."""
    data = read_bytes(path)
    if not data:
        raise ImageReadError(path, "empty file")
    return data, digest_bytes(data)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the way a viewer shows it: alpha over white, 16-bit scaled down."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        array = np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        lo, hi = float(array.min(initial=0)), float(array.max(initial=0))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(((array - lo) * scale).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def decode(
    path: str, data: bytes, max_pixels: int, min_side: int = DRAFT_MIN_SIDE
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame upright in RGB, with its full upright size; JPEGs decode at reduced scale."""
    image, meta = decode_with_meta(path, data, max_pixels, min_side)
    return image, (meta.width, meta.height)


def decode_with_meta(
    path: str, data: bytes, max_pixels: int, min_side: int = DRAFT_MIN_SIDE
) -> tuple[Image.Image, ImageMeta]:
    """decode(), and what the same opened image says about itself (no second read of the file)."""
    if is_raw(path):
        return raw.decode_with_meta(path, data, max_pixels, min_side, decode_picture)
    return decode_picture(path, data, max_pixels, min_side)


def decode_picture(
    path: str, data: bytes, max_pixels: int, min_side: int = DRAFT_MIN_SIDE
) -> tuple[Image.Image, ImageMeta]:
    """decode_with_meta() through Pillow, whatever the name says (a RAW's embedded preview comes here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(
                    path,
                    f"image too large ({width}x{height} pixels, limit {max_pixels}); possible decompression bomb",
                )
            if image.format in ("JPEG", "MPO"):  # phones write MPO: a JPEG with extra frames
                # Draft keeps both sides >= the request, so the model still sees at least min_side pixels.
                scale = min(width, height) / min_side
                if scale >= 2:
                    image.draft("RGB", (max(1, int(width / scale)), max(1, int(height / scale))))
            image.seek(0)
            image.load()
            exif = image.getexif()
            if exif.get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):
                width, height = height, width
            meta = read_meta(image.format, exif, width, height)
            image = ImageOps.exif_transpose(image) or image
            return to_rgb(image), meta
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(path, "image too large; possible decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise ImageReadError(path, f"cannot decode ({reason})") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode") from None
    except RuntimeError as exc:  # a plugin's own decoder (pillow-jxl's libjxl) failing on what looks like its format
        reason = str(exc).split("\n")[0].split(". ")[0].strip() or type(exc).__name__
        raise ImageReadError(path, f"cannot decode ({reason})") from None


def probe(path: str, expected: tuple[int, int] | None = None) -> ImageMeta:
    """Metadata from the file's header alone: no pixel is decoded, and a JPEG is read only up to its image data.

    `expected` is the (size, mtime_ns) the catalog knows; a file that changed since is refused, since
    its header may describe other bytes than the content it is filed under.
    """
    fd, info = _open_regular(path)
    try:
        if expected is not None and (info.st_size, info.st_mtime_ns) != expected:
            raise ImageReadError(path, "changed since it was indexed")
        if is_raw(path):  # LibRaw parses the header from memory; RAW headers are not at the file's start
            os.close(fd)
            fd = -1
            return raw.probe(path, read_bytes(path))
        handle = os.fdopen(fd, "rb")
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    with handle:
        try:
            image = Image.open(handle)
            width, height = image.size
            # PNG keeps EXIF wherever it likes; Pillow would decode the pixels to look behind them.
            exif = Image.Exif() if image.format == "PNG" and "exif" not in image.info else image.getexif()
            if exif.get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):
                width, height = height, width
            return read_meta(image.format, exif, width, height)
        except ImageReadError:
            raise
        except UnidentifiedImageError:
            raise ImageReadError(path, "not a recognised image format") from None
        except Exception as exc:  # noqa: BLE001 - a strange header must not stop a backfill
            first = str(exc).split("\n")[0].split(". ")[0].strip()
            raise ImageReadError(path, f"cannot read the header ({type(exc).__name__}: {first})") from None
