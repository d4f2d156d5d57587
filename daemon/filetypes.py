"""Which files imgd looks at: the names it never indexes, and the extensions of photos, RAWs and videos."""

from __future__ import annotations

DEFAULT_EXCLUDES: tuple[str, ...] = (
    "*.part",
    "*.crdownload",
    "*.tmp",
    "*.download",
    "*.partial",
    "*~",
    ".*",  # hidden files and folders, rsync's .name.XXXXXX temp files, macOS ._* resource forks
    "@eaDir",
    ".thumbnails",
    "#recycle",
    "$RECYCLE.BIN",
)

PHOTO_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
    ".jxl",
)
# Camera RAW files, read through LibRaw (rawpy).
RAW_EXTENSIONS: tuple[str, ...] = (
    ".cr2",
    ".cr3",
    ".nef",
    ".nrw",
    ".arw",
    ".raf",
    ".orf",
    ".rw2",
    ".dng",
    ".pef",
    ".srw",
)
# Videos, read through FFmpeg (PyAV); a MOV beside a photo of the same stem is a live photo's other half.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".m4v", ".3gp", ".mkv", ".webm", ".avi")

IMAGE_EXTENSIONS: tuple[str, ...] = PHOTO_EXTENSIONS + RAW_EXTENSIONS + VIDEO_EXTENSIONS  # what is indexed
# What the scanner and the watcher look at: what is indexed, and videos as the other half of a live photo.
WATCHED_EXTENSIONS: tuple[str, ...] = tuple(dict.fromkeys(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))


def extension(path: str) -> str:
    """The lowered extension of a path's last component, as os.path.splitext gives it (".jpg"; "" for ".jpg").

    Per file in a walk of a million: a find from the right, where splitext copies and splits the path.
    """
    dot = path.rfind(".")
    start = path.rfind("/") + 1
    if dot <= start:
        return ""  # no dot in the name, or only a leading one (a hidden file has no extension)
    if path[dot - 1] == "." and not path[start:dot].strip("."):
        return ""  # the name is dots up to its last one: splitext skips leading dots
    return path[dot:].lower()
