"""Plain records passed between modules; no I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileStat:
    """What the scanner saw of one regular file."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileRecord:
    """One catalog row for a path: the content it points at, or why it failed."""

    path: str
    size: int
    mtime_ns: int
    content_id: int | None
    status: str  # "ok", "failed" or "missing"
    error: str | None = None

    def unchanged(self, stat: FileStat, indexed: bool = False) -> bool:
        """Is the file on disk still the one this row was written for: the same size and mtime?

        The row's verdict stands while this holds, a failure included: a broken file is not read again
        by every reconcile, only once it changes. `indexed` also asks for a row that holds the file's
        content ("ok"), for an event on the path (chmod or chown may have made a failed file readable
        without touching its size or mtime) and for a caller that wants the row's vector.
        """
        if indexed and self.status != "ok":
            return False
        return (self.size, self.mtime_ns) == (stat.size, stat.mtime_ns)


@dataclass(frozen=True)
class FileDetail:
    """A live file as a duplicate listing shows it."""

    path: str
    content_id: int
    size: int
    width: int
    height: int
    taken: str | None = None  # EXIF capture time, "YYYY-MM-DD HH:MM:SS" on the camera's clock
    camera: str | None = None  # make and model, for telling two cameras' bursts apart


class ChangeKind(enum.Enum):
    """What the watcher saw happen to a path."""

    UPSERT = "upsert"  # created, modified or moved in: look at it once it settles
    DELETE = "delete"  # gone (a file or a whole folder)
    MOVE = "move"  # renamed within the watched folders: rewrite paths, never re-embed
    RESCAN = "rescan"  # events may have been lost: reconcile this folder with the disk


@dataclass(frozen=True)
class Change:
    """One item on the watcher -> worker queue."""

    kind: ChangeKind
    path: str
    dest: str | None = None
    is_dir: bool = False
    recheck: bool = False  # a new file at this path (created, moved in): hash it even if size and mtime match


@dataclass
class IndexSummary:
    """Counts of what one reconcile/ingest did, for the summary line and status."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0
    unchanged: int = 0
    missing: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: IndexSummary) -> None:
        for name in ("added", "updated", "moved", "removed", "failed", "unchanged", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.moved or self.removed)


@dataclass(frozen=True)
class ImageMeta:
    """What one image's bytes say about it, read once at embed time and kept per content."""

    format: str | None  # "jpeg", "png", "heic", "webp", ... (Pillow's format, lower case)
    width: int  # upright: after the EXIF orientation
    height: int
    taken: str | None = None  # EXIF DateTimeOriginal, "YYYY-MM-DD HH:MM:SS" on the camera's clock
    taken_offset: str | None = None  # its OffsetTimeOriginal ("+02:00") when the camera wrote one
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    latitude: float | None = None  # degrees, south negative
    longitude: float | None = None  # degrees, west negative


@dataclass(frozen=True)
class FileMeta:
    """Metadata of one indexed path, for output: its content's facts plus what belongs to the file."""

    path: str
    size: int
    taken: str | None  # ISO 8601; with its offset when known
    taken_source: str | None  # "exif", or "mtime" when the bytes carry no date (or are not read yet)
    width: int
    height: int
    file_type: str | None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    city: str | None = None  # its place (store/places.py), named from the GPS
    region: str | None = None
    country: str | None = None  # ISO code

    def as_dict(self) -> dict[str, object]:
        gps = None if self.latitude is None or self.longitude is None else [self.latitude, self.longitude]
        return {
            "path": self.path,
            "size": self.size,
            "taken": self.taken,
            "taken_source": self.taken_source,
            "width": self.width,
            "height": self.height,
            "type": self.file_type,
            "make": self.make,
            "model": self.model,
            "lens": self.lens,
            "gps": gps,
        }


@dataclass(frozen=True)
class FileRow:
    """One live file with what its content's bytes say: what a filter tests, in SQL as `f` and `m`, in Python as this.

    A content passes a search's filters when one of its live files does. Fields not known where a
    filter runs in Python keep their defaults (a bare path, for the filters that read only the path).
    """

    path: str
    mtime_ns: int = 0
    format: str | None = None  # the media row's, as ImageMeta; None until its bytes are read
    width: int = 0  # upright
    height: int = 0
    taken: str | None = None  # EXIF capture time, "YYYY-MM-DD HH:MM:SS" on the camera's clock
    make: str | None = None
    model: str | None = None
    latitude: float | None = None  # degrees, as ImageMeta
    longitude: float | None = None
    country: str | None = None  # the ISO code of its place's country (store/places.py)
    duration: float | None = None  # seconds, for a video; None for a photo
    words: str = ""  # the folded text of the words read in its picture (wordfold.fold_lines)
