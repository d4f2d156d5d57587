"""What EXIF says about a picture: taken date and offset, camera, lens, GPS; read defensively.

Shared by the Pillow decoder (imaging.py) and the RAW decoder (raw.py): a damaged or odd EXIF block
gives fewer facts, never a failed image.
"""

from __future__ import annotations

import contextlib
import math
import re
from datetime import datetime

from PIL import Image

from ..store.records import ImageMeta

ORIENTATION_TAG = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL = 0x010F, 0x0110
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, LENS_MODEL = 0x9003, 0x9011, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4
FORMAT_NAMES = {"MPO": "jpeg", "HEIF": "heic"}  # MPO is a phone JPEG with extra frames; HEIF covers .heic
_EXIF_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"[+-](\d{2}):(\d{2})")


def text_value(value: object) -> str | None:
    """An EXIF string as cameras write it: NUL-padded, sometimes bytes, sometimes blank."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:200] or None


def taken_text(value: object) -> str | None:
    """EXIF DateTimeOriginal as "YYYY-MM-DD HH:MM:SS"; None when blank, zeroed or impossible."""
    text = text_value(value)
    match = _EXIF_DATE.match(text or "")
    if not match:
        return None
    try:
        moment = datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00" and the like
        return None
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _offset(value: object) -> str | None:
    text = text_value(value)
    match = _EXIF_OFFSET.fullmatch(text or "")
    if not match or int(match[1]) > 14 or int(match[2]) > 59:
        return None
    return text


def _coordinate(value: object, ref: object, limit: float) -> float | None:
    """Degrees from EXIF's (degrees, minutes, seconds) rationals, negative to the south and west."""
    try:
        parts = [float(part) for part in value] if isinstance(value, tuple | list) else [float(value)]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(part) and part >= 0 for part in parts):
        return None
    degrees = sum(part / 60**i for i, part in enumerate(parts))
    if (text_value(ref) or "").upper()[:1] in ("S", "W"):
        degrees = -degrees
    return round(degrees, 7) if abs(degrees) <= limit else None


def read_meta(fmt: str | None, exif: Image.Exif, width: int, height: int) -> ImageMeta:
    """What EXIF says; a damaged or odd EXIF block gives fewer facts, never a failed image."""
    kind = FORMAT_NAMES.get(fmt or "", (fmt or "").lower() or None)
    facts: dict[str, object] = {}
    with contextlib.suppress(Exception):
        facts["make"] = text_value(exif.get(MAKE))
        facts["model"] = text_value(exif.get(MODEL))
    with contextlib.suppress(Exception):
        sub = exif.get_ifd(EXIF_IFD)
        facts["taken"] = taken_text(sub.get(DATETIME_ORIGINAL))
        facts["taken_offset"] = _offset(sub.get(OFFSET_TIME_ORIGINAL)) if facts["taken"] else None
        facts["lens"] = text_value(sub.get(LENS_MODEL))
    with contextlib.suppress(Exception):
        gps = exif.get_ifd(GPS_IFD)
        lat = _coordinate(gps.get(GPS_LAT), gps.get(GPS_LAT_REF), 90.0)
        lon = _coordinate(gps.get(GPS_LON), gps.get(GPS_LON_REF), 180.0)
        # Receivers without a fix write 0/0 ("null island"): no position is better than a wrong one.
        if lat is not None and lon is not None and (lat, lon) != (0.0, 0.0):
            facts["latitude"], facts["longitude"] = lat, lon
    return ImageMeta(format=kind, width=width, height=height, **facts)  # type: ignore[arg-type]
