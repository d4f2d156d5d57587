"""The requests imgd answers, defined once for the socket server, the client and the in-process path.

A request is a frozen dataclass that checks itself when built, so a request typed on the command line,
read from the socket or made by the web UI meets the same limits with the same one-line messages.
A message names the request's fields (`after`, `folders`), never a command-line flag: the CLI and the
gallery each word it in their own terms (RequestError.worded).
Stdlib only: `imgd search` through the daemon imports this and nothing heavy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import ImgdError
from .wordfold import MIN_CHARS, fold

PROTOCOL_VERSION = 4  # 3: similar by content id, status without duplicates unless asked; 4: video filters, frames
MAX_K = 1000
MAX_TERMS = 32
ORIENTATIONS = ("landscape", "portrait", "square")
SORTS = ("score", "date", "path")
RAW_TYPES = ("cr2", "cr3", "nef", "nrw", "arw", "raf", "orf", "rw2", "dng", "pef", "srw")
# What --type accepts; "raw" stands for every RAW type.
FILE_TYPES = ("jpg", "png", "webp", "gif", "bmp", "tiff", "heic", "avif", "jxl", "raw", *RAW_TYPES)
VIDEO_TYPES = ("mp4", "mov", "m4v", "3gp", "mkv", "webm", "avi")  # videos are stored by their extension
_TYPE_ALIASES = {"jpeg": "jpg", "jpe": "jpg", "tif": "tiff", "heif": "heic"}
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


Naming = Callable[[str], str]  # how a caller names a request field: "after" -> "--after"
Wording = Callable[[Naming], str]  # a message, given how to name the fields it mentions


class RequestError(ImgdError):
    """A request that cannot be answered as asked: a bad value, a missing part.

    A message about fields is a function of how each field is named; str() names them by field.
    """

    def __init__(self, message: str | Wording) -> None:
        self._wording: Wording = message if callable(message) else (lambda _name: message)
        super().__init__(self.worded({}))

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with each field named as `names` says (a field it leaves out keeps its own name)."""
        return self._wording(lambda name: names.get(name, name))


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
            lambda name: f"{name('min_size')}: '{text}' is not a size; write WIDTHxHEIGHT, a side in pixels, or 12MP."
        ) from None


def parse_date(text: str, field_name: str) -> str:
    """YYYY, YYYY-MM or YYYY-MM-DD -> the first day of that period as YYYY-MM-DD."""
    match = _DATE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise RequestError(
            lambda name: f"{name(field_name)}: '{text}' is not a date; write YYYY, YYYY-MM or YYYY-MM-DD."
        )
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        raise RequestError(lambda name: f"{name(field_name)}: '{text}' is not a real date.") from None


def file_type(name: str) -> str:
    key = name.strip().lower().lstrip(".")
    key = _TYPE_ALIASES.get(key, key)
    if key not in FILE_TYPES + VIDEO_TYPES:
        known = ", ".join(FILE_TYPES + VIDEO_TYPES)
        raise RequestError(lambda naming: f"{naming('types')}: unknown file type '{name}'; use {known}.")
    return key


def _field(field_name: str) -> Wording:
    """The field `field_name` in a message, named as the caller names it."""
    return lambda name: name(field_name)


What = str | Wording  # what a value is: a description kept as it is ("a text term"), or a _field


def _named(what: What, name: Naming) -> str:
    return what if isinstance(what, str) else what(name)


def _number(value: Any, what: What) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(lambda name: f"{_named(what, name)} must be a finite number, not {value!r}.")
    return float(value)


def _whole(value: Any, what: What, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise RequestError(lambda name: f"{_named(what, name)} must be a whole number {bound}, not {value!r}.")
    return value


def _text(value: Any, what: What) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(lambda name: f"{_named(what, name)} must be a non-empty string.")
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
    near: str | None = None  # a city's name or "LAT,LON" (the daemon resolves names: search/near.py)
    within_km: float | None = None  # how far from `near`; None: NEAR_KM
    country: str | None = None  # a country's name or ISO code
    videos: bool | None = None  # True: videos only; False: no videos; None: both
    min_duration: float | None = None  # seconds; a filter on length keeps videos only
    max_duration: float | None = None
    words: str | None = None  # the words in the picture hold this text (literally; case and accents folded)
    words_match: str | None = None  # the words match this FTS5 expression

    def __post_init__(self) -> None:
        if self.words is not None:
            words = self.words
            if not isinstance(words, str) or len(fold(words)) < MIN_CHARS:
                raise RequestError(
                    lambda name: f"{name('words')} needs at least {MIN_CHARS} letters or digits, not {words!r}."
                )
        if self.words_match is not None:
            _text(self.words_match, _field("words_match"))
        folders = tuple(self.folders)
        relative = [f for f in folders if not isinstance(f, str) or not f.startswith("/")]
        if relative:
            raise RequestError(lambda name: f"{name('folders')} needs absolute folders, not {relative[0]!r}.")
        object.__setattr__(self, "folders", folders)
        if self.after is not None:
            object.__setattr__(self, "after", parse_date(self.after, "after"))
        if self.before is not None:
            object.__setattr__(self, "before", parse_date(self.before, "before"))
        if self.after and self.before and self.after >= self.before:
            after, before = self.after, self.before
            raise RequestError(
                lambda name: (
                    f"{name('after')} {after} is not earlier than {name('before')} {before}; nothing can match."
                )
            )
        if self.camera is not None:
            object.__setattr__(self, "camera", _text(self.camera, _field("camera")).strip())
        object.__setattr__(self, "types", tuple(sorted({file_type(t) for t in self.types})))
        if self.orientation is not None and self.orientation not in ORIENTATIONS:
            raise RequestError(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {self.orientation!r}.")
        for name in ("min_width", "min_height", "min_side", "min_pixels"):
            _whole(getattr(self, name), name.replace("_", "-"), 0)
        _check_place(self)
        _check_videos(self)

    @property
    def active(self) -> bool:
        return self != Filters()


NEAR_KM = 25.0  # --near's reach when --within is not given: a city and its outskirts
_POSITION = re.compile(r"^\s*([+-]?[\d.]+(?:e[+-]?\d+)?)\s*,\s*([+-]?[\d.]+(?:e[+-]?\d+)?)\s*$", re.IGNORECASE)
_NUMBERS = re.compile(r"^[\s\d.,+-]*$")  # what a position (and nothing else) is written with


def position(text: str) -> tuple[float, float] | None:
    """`LAT,LON` in degrees; None for a name. A text of digits and commas that is not a real position is an error."""
    if not _NUMBERS.match(text):
        return None
    match = _POSITION.match(text)
    try:
        lat, lon = (float(match[1]), float(match[2])) if match else (math.nan, math.nan)
    except ValueError:
        lat = lon = math.nan
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RequestError(
            lambda name: (
                f"{name('near')}: '{text}' is not a position; write LAT,LON in degrees "
                "(latitude -90 to 90, longitude -180 to 180), or a city's name."
            )
        )
    return lat, lon


def radius(text: str) -> float:
    """`--within`: kilometres, a number above 0 (`400`, `2.5`, `400km`)."""
    value = text.strip().lower().removesuffix("km").strip() if isinstance(text, str) else text
    try:
        km = float(value)
    except (TypeError, ValueError):
        km = math.nan
    if not math.isfinite(km) or km <= 0:
        raise RequestError(lambda name: f"{name('within_km')}: '{text}' is not a distance; write kilometres above 0.")
    return km


def _check_place(filters: Filters) -> None:
    """--near, --within and --country as given (names are looked up where the gazetteer is: the daemon)."""
    if filters.near is not None:
        near = _text(filters.near, _field("near")).strip()
        position(near)
        object.__setattr__(filters, "near", near)
    if filters.within_km is not None:
        km = _number(filters.within_km, _field("within_km"))
        if km <= 0:
            raise RequestError(lambda name: f"{name('within_km')} is a distance in kilometres above 0, not {km:g}.")
        if filters.near is None:
            raise RequestError(lambda name: f"{name('within_km')} is a distance from {name('near')}; give both.")
        object.__setattr__(filters, "within_km", km)
    if filters.country is not None:
        object.__setattr__(filters, "country", _text(filters.country, _field("country")).strip())


def _check_videos(filters: Filters) -> None:
    """The video fields of Filters: a yes/no, and lengths in seconds that leave something to match."""
    if filters.videos is not None and not isinstance(filters.videos, bool):
        raise RequestError(lambda name: f"{name('videos')} must be true, false or null, not {filters.videos!r}.")
    for key in ("min_duration", "max_duration"):
        value = getattr(filters, key)
        if value is not None:
            seconds = _number(value, _field(key))
            if seconds < 0:
                raise RequestError(lambda name, k=key, s=seconds: f"{name(k)} is a number of seconds, not {s:g}.")
            object.__setattr__(filters, key, seconds)
    low, high = filters.min_duration, filters.max_duration
    if low is not None and high is not None and low > high:
        raise RequestError(
            lambda name: f"{name('min_duration')} {low:g} is above {name('max_duration')} {high:g}; nothing can match."
        )
    if filters.videos is False and (low is not None or high is not None):
        raise RequestError(lambda name: f"a duration filter selects videos; it cannot go with {name('videos')} false.")


@dataclass(frozen=True)
class Options:
    """How many answers, which ones pass, in what order: shared by every request that lists images."""

    k: int = 10
    filters: Filters = field(default_factory=Filters)
    min_score: float | None = None
    auto_cut: bool = False  # stop where the scores fall away
    sort: str = "score"
    frames: bool = False  # each video's sampled times, beside its best one
    fuse_words: bool = True  # a search's texts also look at the words in pictures, fused with its ranking

    def __post_init__(self) -> None:
        _whole(self.k, _field("k"), 1, MAX_K)
        if not isinstance(self.frames, bool):
            raise RequestError(f"'frames' must be true or false, not {self.frames!r}.")
        if not isinstance(self.fuse_words, bool):
            raise RequestError(f"'fuse_words' must be true or false, not {self.fuse_words!r}.")
        if self.min_score is not None:
            score = _number(self.min_score, _field("min_score"))
            if not -1.0 <= score <= 1.0:
                raise RequestError(
                    lambda name: f"{name('min_score')} is a cosine similarity from -1 to 1, not {score}."
                )
            object.__setattr__(self, "min_score", score)
        if self.sort not in SORTS:
            sort = self.sort
            raise RequestError(lambda name: f"{name('sort')} must be one of {', '.join(SORTS)}, not {sort!r}.")
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
            raise RequestError("the query is empty; give a text or an image term.")
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
            _whole(self.content_id, _field("content_id"), 1)
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
        gap = _number(self.burst_gap, _field("burst_gap"))
        if not 0.0 < gap <= 3600.0:
            raise RequestError(
                lambda name: f"{name('burst_gap')} is a number of seconds above 0 and at most 3600, not {gap:g}."
            )
        object.__setattr__(self, "burst_gap", gap)
        if self.threshold is not None:
            threshold = _number(self.threshold, _field("threshold"))
            if not 0.0 < threshold <= 1.0:
                raise RequestError(
                    lambda name: f"{name('threshold')} is a cosine similarity above 0 and at most 1, not {threshold}."
                )
            object.__setattr__(self, "threshold", threshold)
        if not isinstance(self.filters, Filters):
            object.__setattr__(self, "filters", _build(Filters, self.filters, "filters"))
        within = tuple(self.within) if isinstance(self.within, list | tuple) else None
        if within is None or not all(isinstance(f, str) and f.startswith("/") for f in within):
            given = self.within
            raise RequestError(lambda name: f"{name('within')} needs absolute folders, not {given!r}.")
        object.__setattr__(self, "within", within)
