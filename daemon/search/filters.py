"""Search filters: each one rule, written as a SQL clause for the catalog and a Python match for a row in hand.

`from_request` turns a request's Filters into these objects; the catalog runs their clauses in one
query of content ids (store/selection.py holds the contract, since the store may not import search),
and match() checks a row already in hand, such as each path of a hit against --in. The two forms of
every filter are tested to agree on a table of rows (tests/test_filters.py): that is what makes them
one rule. A filter selects contents (through their files), never vectors.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from ..protocol import RAW_TYPES, Filters
from ..store.core import prefix_range
from ..store.records import FileRow
from ..store.selection import FILE, PATH, Clause, Filter, any_live_file
from . import words
from .near import place_filters

CameraPair = tuple[str | None, str | None]  # (make, model) as stored

_TYPE_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "tif": "tiff", "heif": "heic"}  # what people type -> stored format


def fold(text: str | None) -> str | None:
    """Case-insensitive matching beyond ASCII (SQLite's lower() and LIKE fold ASCII only)."""
    return text.casefold() if isinstance(text, str) else text


def wall_clock(moment: dt.datetime) -> str:
    """A naive time as the stored EXIF text compares: "YYYY-MM-DD HH:MM:SS"."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def epoch_ns(moment: dt.datetime) -> int:
    """A naive wall-clock time on this machine's clock as an mtime, for comparing files' mtime_ns."""
    try:
        return int(moment.timestamp()) * 1_000_000_000
    except (OverflowError, OSError, ValueError):
        return -(2**63) if moment.year < 1970 else 2**63 - 1


@dataclass(frozen=True)
class InFolders(Filter):
    """A file strictly inside one of the folders (a path that only shares a prefix is not)."""

    scope: ClassVar[str] = PATH
    folders: tuple[str, ...]

    def clause(self) -> Clause:
        ranges = [prefix_range(folder) for folder in self.folders]
        sql = " OR ".join("(f.path >= ? AND f.path < ?)" for _ in ranges)
        return (f"({sql})" if sql else "0"), [bound for pair in ranges for bound in pair]

    def match(self, row: FileRow) -> bool:
        # fsencode maps each character on its own, so a prefix of the text is a prefix of the stored bytes.
        return any(row.path.startswith(folder.rstrip(os.sep) + os.sep) for folder in self.folders)


@dataclass(frozen=True)
class TakenBetween(Filter):
    """Taken in [start, end): the EXIF time as wall-clock text, else the file's mtime as an instant here."""

    scope: ClassVar[str] = FILE
    start: dt.datetime | None = None  # inclusive, naive
    end: dt.datetime | None = None  # exclusive

    def _bounds(self) -> list[tuple[str, str, int]]:
        """(operator, wall-clock text, epoch ns) of each bound given."""
        bounds = [(">=", self.start), ("<", self.end)]
        return [(op, wall_clock(moment), epoch_ns(moment)) for op, moment in bounds if moment is not None]

    def clause(self) -> Clause:
        bounds = self._bounds()
        sql = " AND ".join(
            f"(CASE WHEN m.taken IS NULL THEN f.mtime_ns {op} ? ELSE m.taken {op} ? END)" for op, _, _ in bounds
        )
        return sql or "1", [value for _, text, epoch in bounds for value in (epoch, text)]

    def any_file(self, live: str) -> Clause:
        # An EXIF date is the content's: only the undated contents need their files looked up.
        bounds = self._bounds()
        dated = ["m.taken IS NOT NULL", *(f"m.taken {op} ?" for op, _, _ in bounds), *([live] if live else [])]
        mtimes = " AND ".join(f"f.mtime_ns {op} ?" for op, _, _ in bounds) or "1"
        undated, epochs = any_live_file([(mtimes, [epoch for _, _, epoch in bounds])])
        sql = f"(({' AND '.join(dated)}) OR (m.taken IS NULL AND {undated}))"
        return sql, [text for _, text, _ in bounds] + epochs

    def match(self, row: FileRow) -> bool:
        for op, text, epoch in self._bounds():
            value, bound = (row.taken, text) if row.taken is not None else (row.mtime_ns, epoch)
            if not (value >= bound if op == ">=" else value < bound):
                return False
        return True


@dataclass(frozen=True)
class Camera(Filter):
    """A case-insensitive substring of "make model", beyond ASCII.

    The few distinct cameras are matched in Python when the filter is built, and the clause selects
    them by equality: a Python function called on every row costs 2.7 us a row, 2.7 s at 1M. So the
    clause knows the cameras of the catalog it was built among, and agrees with match() on those.
    """

    text: str
    cameras: tuple[CameraPair, ...] = ()  # the catalog's cameras that match, from among()

    @classmethod
    def among(cls, text: str, cameras: Iterable[CameraPair]) -> Camera:
        """The filter for `text`, with the catalog's (make, model) pairs that it matches."""
        needle = fold(text) or ""
        return cls(text, tuple(pair for pair in cameras if needle in _camera(*pair)))

    def clause(self) -> Clause:
        sql = " OR ".join("(m.make IS ? AND m.model IS ?)" for _ in self.cameras)
        return (f"({sql})" if sql else "0"), [value for pair in self.cameras for value in pair]

    def match(self, row: FileRow) -> bool:
        return (fold(self.text) or "") in _camera(row.make, row.model)


def _camera(make: str | None, model: str | None) -> str:
    return fold(f"{make or ''} {model or ''}") or ""


@dataclass(frozen=True)
class FileTypes(Filter):
    """One of the stored formats ("jpeg", "png", "heic", ...); what people type ("JPG", "heif") is mapped."""

    types: tuple[str, ...]

    def __post_init__(self) -> None:
        stored = {_TYPE_ALIASES.get(t.lower(), t.lower()) for t in self.types}
        if "raw" in stored:  # every camera RAW type; each is stored under its own extension
            stored = (stored - {"raw"}) | set(RAW_TYPES)
        object.__setattr__(self, "types", tuple(sorted(stored)))

    def clause(self) -> Clause:
        return f"m.format IN ({','.join('?' * len(self.types))})", list(self.types)

    def match(self, row: FileRow) -> bool:
        return row.format in self.types


_ORIENTATION_SQL = {"landscape": "m.width > m.height", "portrait": "m.width < m.height", "square": "m.width = m.height"}


@dataclass(frozen=True)
class Orientation(Filter):
    """Landscape, portrait or square, upright (after the EXIF orientation)."""

    name: str

    def clause(self) -> Clause:
        return _ORIENTATION_SQL[self.name], []

    def match(self, row: FileRow) -> bool:
        shape = "landscape" if row.width > row.height else "portrait" if row.width < row.height else "square"
        return shape == self.name


# measure -> (SQL over m, the same in Python)
_MEASURES: dict[str, tuple[str, Callable[[FileRow], int]]] = {
    "width": ("m.width", lambda row: row.width),
    "height": ("m.height", lambda row: row.height),
    "side": ("min(m.width, m.height)", lambda row: min(row.width, row.height)),  # the shorter side
    "pixels": ("m.width * m.height", lambda row: row.width * row.height),
}


@dataclass(frozen=True)
class AtLeast(Filter):
    """A minimum upright size: of the width, the height, the shorter side or the pixel count."""

    measure: str  # a key of _MEASURES
    value: int

    def clause(self) -> Clause:
        return f"{_MEASURES[self.measure][0]} >= ?", [self.value]

    def match(self, row: FileRow) -> bool:
        return _MEASURES[self.measure][1](row) >= self.value


@dataclass(frozen=True)
class Videos(Filter):
    """Videos only (a length is known), or no videos: a photo's duration is NULL."""

    wanted: bool

    def clause(self) -> Clause:
        return ("m.duration IS NOT NULL" if self.wanted else "m.duration IS NULL"), []

    def match(self, row: FileRow) -> bool:
        return (row.duration is not None) == self.wanted


@dataclass(frozen=True)
class Lasting(Filter):
    """A video of at least `low` and at most `high` seconds (photos have no length, so never pass)."""

    low: float | None = None
    high: float | None = None

    def clause(self) -> Clause:
        bounds = [(">=", self.low), ("<=", self.high)]
        parts = [f"m.duration {op} ?" for op, value in bounds if value is not None]
        return " AND ".join(["m.duration IS NOT NULL", *parts]), [v for _, v in bounds if v is not None]

    def match(self, row: FileRow) -> bool:
        if row.duration is None:
            return False
        return (self.low is None or row.duration >= self.low) and (self.high is None or row.duration <= self.high)


def from_request(filters: Filters, cameras: Callable[[], Iterable[CameraPair]]) -> list[Filter]:
    """The filter objects of a request (dates as the first instant of their day); `cameras` reads the
    catalog's (make, model) pairs, asked only for a camera filter."""

    def day(text: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(text) if text else None

    selected: list[Filter] = on_path(filters)
    if filters.after or filters.before:
        selected.append(TakenBetween(day(filters.after), day(filters.before)))
    if filters.camera:
        selected.append(Camera.among(filters.camera, cameras()))
    if filters.types:
        selected.append(FileTypes(filters.types))
    if filters.orientation is not None:
        selected.append(Orientation(filters.orientation))
    for measure in _MEASURES:
        value = getattr(filters, f"min_{measure}")
        if value:
            selected.append(AtLeast(measure, value))
    if filters.videos is not None:
        selected.append(Videos(filters.videos))
    if filters.min_duration is not None or filters.max_duration is not None:
        selected.append(Lasting(filters.min_duration, filters.max_duration))
    selected.extend(words.filters_of(filters))
    return selected + place_filters(filters)


def on_path(filters: Filters) -> list[Filter]:
    """The filters a bare path can be checked against: a content may have one copy inside --in and one outside."""
    return [InFolders(filters.folders)] if filters.folders else []
