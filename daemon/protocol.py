"""The requests imgd answers, defined once for the socket server, the client and the in-process path.

A request is a frozen dataclass that checks itself when built, so a request typed on the command line,
read from the socket or made by the web UI meets the same limits with the same one-line messages.
Stdlib only: `imgd search` through the daemon imports this and nothing heavy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import ImgdError

PROTOCOL_VERSION = 3  # 3: similar by content id, status without duplicates unless asked
MAX_K = 1000
MAX_TERMS = 32
ORIENTATIONS = ("landscape", "portrait", "square")
SORTS = ("score", "date", "path")
FILE_TYPES = ("jpg", "png", "webp", "gif", "bmp", "tiff", "heic")  # what --type accepts
_TYPE_ALIASES = {"jpeg": "jpg", "jpe": "jpg", "tif": "tiff", "heif": "heic"}
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


class RequestError(ImgdError):
    """A request that cannot be answered as asked: a bad value, a missing part."""


_WEIGHT = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?):(.*)$", re.IGNORECASE)


def split_weight(raw: str) -> tuple[float, str]:
    """`TEXT`, `WEIGHT:TEXT`, or `:TEXT` for a text that itself starts with a number and a colon.

    The one term grammar of the command line and the gallery's search box.
    """
    if raw.startswith(":"):
        return 1.0, raw[1:]
    match = _WEIGHT.match(raw)
    if match is not None:
        return float(match[1]), match[2]
    if re.match(r"^[+-]?[\d.][^:\s]*:", raw):
        raise RequestError(f"'{raw.split(':', 1)[0]}' in '{raw}' is not a number; write WEIGHT:TERM (2:dog), or :TERM.")
    return 1.0, raw


def min_size(text: str) -> dict[str, int]:
    """`--min-size`: `1920x1080`, a shorter side `1000`, or megapixels `12MP`, as Filters fields."""
    value = text.strip().lower()
    try:
        if value.endswith("mp"):
            return {"min_pixels": int(float(value[:-2]) * 1_000_000)}
        if "x" in value:
            width, height = value.split("x", 1)
            return {"min_width": int(width), "min_height": int(height)}
        return {"min_side": int(value)}
    except ValueError:
        raise RequestError(
            f"--min-size: '{text}' is not a size; write WIDTHxHEIGHT, a side in pixels, or 12MP."
        ) from None


def parse_date(text: str, what: str) -> str:
    """YYYY, YYYY-MM or YYYY-MM-DD -> the first day of that period as YYYY-MM-DD."""
    match = _DATE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise RequestError(f"{what}: '{text}' is not a date; write YYYY, YYYY-MM or YYYY-MM-DD.")
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        raise RequestError(f"{what}: '{text}' is not a real date.") from None


def file_type(name: str) -> str:
    key = name.strip().lower().lstrip(".")
    key = _TYPE_ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise RequestError(f"--type: unknown file type '{name}'; use {', '.join(FILE_TYPES)}.")
    return key


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"{what} must be a finite number, not {value!r}.")
    return float(value)


def _whole(value: Any, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise RequestError(f"{what} must be a whole number {bound}, not {value!r}.")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{what} must be a non-empty string.")
    return value


@dataclass(frozen=True)
class Term:
    """One part of a query: a text or an image path, weighted; a negative weight pushes results away."""

    kind: str  # "text" or "image"
    value: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("text", "image"):
            raise RequestError(f"a query term is 'text' or 'image', not {self.kind!r}.")
        _text(self.value, "a text term" if self.kind == "text" else "an image term")
        weight = _number(self.weight, f"the weight of '{self.value}'")
        if weight == 0:
            raise RequestError(f"the weight of '{self.value}' is 0; leave the term out instead.")
        object.__setattr__(self, "weight", weight)


@dataclass(frozen=True)
class Filters:
    """Which images may be answered at all; applied inside the vector search, never after a top k."""

    folders: tuple[str, ...] = ()  # absolute folders; an image under any of them
    after: str | None = None  # taken on or after this day (YYYY-MM-DD)
    before: str | None = None  # taken before this day
    camera: str | None = None  # case-insensitive substring of make or model
    types: tuple[str, ...] = ()  # keys of FILE_TYPES
    orientation: str | None = None  # landscape, portrait or square (upright)
    min_width: int = 0
    min_height: int = 0
    min_side: int = 0  # the shorter side
    min_pixels: int = 0

    def __post_init__(self) -> None:
        folders = tuple(self.folders)
        for folder in folders:
            if not isinstance(folder, str) or not folder.startswith("/"):
                raise RequestError(f"--in needs absolute folders, not {folder!r}.")
        object.__setattr__(self, "folders", folders)
        if self.after is not None:
            object.__setattr__(self, "after", parse_date(self.after, "--after"))
        if self.before is not None:
            object.__setattr__(self, "before", parse_date(self.before, "--before"))
        if self.after and self.before and self.after >= self.before:
            raise RequestError(f"--after {self.after} is not earlier than --before {self.before}; nothing can match.")
        if self.camera is not None:
            object.__setattr__(self, "camera", _text(self.camera, "--camera").strip())
        object.__setattr__(self, "types", tuple(sorted({file_type(t) for t in self.types})))
        if self.orientation is not None and self.orientation not in ORIENTATIONS:
            raise RequestError(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {self.orientation!r}.")
        for name in ("min_width", "min_height", "min_side", "min_pixels"):
            _whole(getattr(self, name), name.replace("_", "-"), 0)

    @property
    def active(self) -> bool:
        return self != Filters()


@dataclass(frozen=True)
class Options:
    """How many answers, which ones pass, in what order: shared by every request that lists images."""

    k: int = 10
    filters: Filters = field(default_factory=Filters)
    min_score: float | None = None
    auto_cut: bool = False  # stop where the scores fall away
    sort: str = "score"

    def __post_init__(self) -> None:
        _whole(self.k, "k (-k/--top-k)", 1, MAX_K)
        if self.min_score is not None:
            score = _number(self.min_score, "--min-score")
            if not -1.0 <= score <= 1.0:
                raise RequestError(f"--min-score is a cosine similarity from -1 to 1, not {score}.")
            object.__setattr__(self, "min_score", score)
        if self.sort not in SORTS:
            raise RequestError(f"--sort must be one of {', '.join(SORTS)}, not {self.sort!r}.")
        if not isinstance(self.filters, Filters):
            object.__setattr__(self, "filters", _build(Filters, self.filters, "filters"))


@dataclass(frozen=True)
class Request:
    """Base of every request: its operation name is the key of the daemon's operations table."""

    op: ClassVar[str] = ""

    def to_message(self) -> dict[str, Any]:
        return {"op": self.op, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class SearchRequest(Request):
    """Images nearest the weighted sum of the terms' vectors."""

    op: ClassVar[str] = "search"
    terms: tuple[Term, ...] = ()
    options: Options = field(default_factory=Options)

    def __post_init__(self) -> None:
        if not isinstance(self.terms, list | tuple):
            raise RequestError("'terms' must be a list.")
        terms = tuple(t if isinstance(t, Term) else _build(Term, t, "term") for t in self.terms)
        if not terms:
            raise RequestError("the query is empty; give a text, --like IMAGE, or both.")
        if len(terms) > MAX_TERMS:
            raise RequestError(f"a query holds at most {MAX_TERMS} terms, not {len(terms)}.")
        if all(t.weight < 0 for t in terms):
            raise RequestError("a query of only negative terms has nothing to look for; add a positive term.")
        object.__setattr__(self, "terms", terms)
        _ensure_options(self)


@dataclass(frozen=True)
class SimilarRequest(Request):
    """More like this file or content: its stored vector when catalogued (itself and its copies left out),
    else the file embedded. A caller that holds a content id (the gallery) sends it instead of a path."""

    op: ClassVar[str] = "similar"
    path: str = ""
    options: Options = field(default_factory=Options)
    content_id: int | None = None

    def __post_init__(self) -> None:
        if self.content_id is not None:
            _whole(self.content_id, "content_id", 1)
            if self.path != "":
                raise RequestError("similar takes a file path or a content id, not both.")
        elif not isinstance(self.path, str) or not self.path.startswith("/"):
            raise RequestError(f"similar needs an absolute file path, not {self.path!r}.")
        _ensure_options(self)


@dataclass(frozen=True)
class StatusRequest(Request):
    """The daemon's state and the catalog's counts: cheap enough to poll. `duplicates` adds the duplicate
    groups' summary (`imgd status` shows it), which the daemon regroups only after the library changed."""

    op: ClassVar[str] = "status"
    duplicates: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.duplicates, bool):
            raise RequestError(f"'duplicates' must be true or false, not {self.duplicates!r}.")


@dataclass(frozen=True)
class FailedRequest(Request):
    op: ClassVar[str] = "failed"


REQUESTS: dict[str, type[Request]] = {
    cls.op: cls for cls in (SearchRequest, SimilarRequest, StatusRequest, FailedRequest)
}


def register(cls: type[Request]) -> type[Request]:
    """Add a request type (a class decorator): a new operation is one request, one handler, one command."""
    REQUESTS[cls.op] = cls
    return cls


def _ensure_options(request: Request) -> None:
    options = request.options
    if isinstance(options, dict):
        object.__setattr__(request, "options", _build(Options, options, "options"))
    elif not isinstance(options, Options):
        raise RequestError("'options' must be an object.")


def _build(cls: type, value: Any, what: str) -> Any:
    if not isinstance(value, dict):
        raise RequestError(f"'{what}' must be an object.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - names
    if unknown:
        raise RequestError(f"unknown field(s) in '{what}': {', '.join(sorted(unknown))}.")
    try:
        return cls(**value)
    except TypeError as exc:
        raise RequestError(f"'{what}' is malformed ({exc}).") from None


def parse(message: Any) -> Request:
    """A request read from the socket -> the typed request, or a RequestError naming what is wrong."""
    if not isinstance(message, dict):
        raise RequestError("a request must be a JSON object.")
    body = {k: v for k, v in message.items() if k not in ("v", "op")}
    op = message.get("op")
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise RequestError(f"unknown operation {op!r}.")
    return _build(cls, body, op)


@register
@dataclass(frozen=True)
class DupesRequest(Request):
    """Groups of images that are the same picture, among the images the filters let through.

    `filters.folders` narrows which images are compared; `within` keeps only the groups with an image
    under one of those folders. `threshold` None means the configured default.
    """

    op: ClassVar[str] = "dupes"
    threshold: float | None = None
    filters: Filters = field(default_factory=Filters)
    within: tuple[str, ...] = ()
    bursts: bool = False  # also list bursts: shots of one camera seconds apart that look alike
    burst_gap: float = 3.0  # seconds between two shots of a burst, at most

    def __post_init__(self) -> None:
        if not isinstance(self.bursts, bool):
            raise RequestError(f"'bursts' must be true or false, not {self.bursts!r}.")
        gap = _number(self.burst_gap, "--burst-gap")
        if not 0.0 < gap <= 3600.0:
            raise RequestError(f"--burst-gap is a number of seconds above 0 and at most 3600, not {gap:g}.")
        object.__setattr__(self, "burst_gap", gap)
        if self.threshold is not None:
            threshold = _number(self.threshold, "--threshold")
            if not 0.0 < threshold <= 1.0:
                raise RequestError(f"--threshold is a cosine similarity above 0 and at most 1, not {threshold}.")
            object.__setattr__(self, "threshold", threshold)
        if not isinstance(self.filters, Filters):
            object.__setattr__(self, "filters", _build(Filters, self.filters, "filters"))
        within = tuple(self.within) if isinstance(self.within, list | tuple) else None
        if within is None or not all(isinstance(f, str) and f.startswith("/") for f in within):
            raise RequestError(f"--in needs absolute folders, not {self.within!r}.")
        object.__setattr__(self, "within", within)
