"""What the gallery asks of imgd: typed requests through daemon/api/facade.py, and catalog ids for files.

The facade asks the running daemon over its socket and answers in-process when none runs, so the
gallery gives the answers `imgd search` gives. Files are named to the browser by catalog id only:
"<content id>-<hash of the path>". An id is resolved against the catalog's live paths of that
content, so no path from a request is ever opened. Answers carry content ids, so naming their files
costs no catalog read; "more like this" sends the content id itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgd.daemon.alertprotocol import AlertListRequest, AlertLogRequest
from imgd.daemon.api.facade import Api
from imgd.daemon.config import Config
from imgd.daemon.errors import CatalogError
from imgd.daemon.protocol import (
    MAX_K,
    DupesRequest,
    Filters,
    Options,
    RequestError,
    SearchRequest,
    SimilarRequest,
    StatusRequest,
    Term,
    min_size,
    radius,
    split_weight,
)
from imgd.daemon.store.catalog import Catalog, ThreadReaders

if TYPE_CHECKING:  # the model loads only when no daemon answers
    from imgd.daemon.embedders import Embedder

ID_PATTERN = re.compile(r"(\d{1,18})-([0-9a-f]{16})")


# The request fields as the gallery's controls name them (index.html): errors name fields, never flags.
CONTROLS = {
    "after": "taken from",
    "before": "taken before",
    "camera": "camera",
    "folders": "in folder",
    "types": "file type",
    "min_size": "min size",
    "min_score": "min score",
    "sort": "order",
    "k": "the number of results",
    "threshold": "the threshold",
    "near": "near",
    "within_km": "km",
    "country": "country",
    "words": "words",
}


def path_tag(path: str) -> str:
    return hashlib.blake2b(os.fsencode(path), digest_size=8).hexdigest()


def content_of(item_id: str) -> int | None:
    """The content id an item id names, or None for a malformed one (no catalog read)."""
    match = ID_PATTERN.fullmatch(item_id)
    return int(match.group(1)) if match is not None else None


def said(exc: Exception) -> str:
    """An error as one sentence for the page: request fields named as the gallery's controls."""
    text = (exc.worded(CONTROLS) if isinstance(exc, RequestError) else str(exc)).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def parse_query(text: str) -> tuple[Term, ...]:
    """The search box: comma-separated texts, each may be weighted (2:dog) or negative (-people).

    The web form of `imgd search "beach" 2:dog --not people`: "beach, 2:dog, -people".
    """
    terms = []
    for part in text.split(","):
        part = part.strip()
        sign = 1.0
        if part.startswith("-"):
            sign, part = -1.0, part[1:].strip()
        weight, part = split_weight(part)
        part = part.strip()
        if part:
            terms.append(Term("text", part, sign * weight))
    if not terms:
        raise RequestError("Type something to search for.")
    return tuple(terms)


def parse_options(params: Mapping[str, str], k: int) -> Options:
    """The gallery's filter controls -> the same Options `imgd search` builds from its flags."""
    filters: dict[str, Any] = {}
    folder = params.get("in", "").strip()
    if folder:
        filters["folders"] = (in_folder(folder),)
    types = params.get("type", "").strip()
    if types:
        filters["types"] = tuple(t for t in types.split(",") if t.strip())
    if params.get("orientation"):
        filters["orientation"] = params["orientation"]
    if params.get("min_size", "").strip():
        filters.update(min_size(params["min_size"]))
    # taken on/after, before; make or model; places; the words in the picture (a literal phrase, as --words)
    for name in ("after", "before", "camera", "near", "country", "words"):
        if params.get(name, "").strip():
            filters[name] = params[name].strip()
    if params.get("within", "").strip():
        filters["within_km"] = radius(params["within"])
    min_score = None
    if params.get("min_score", "").strip():
        try:
            min_score = float(params["min_score"])
        except ValueError:
            raise RequestError("The minimum score must be a number from -1 to 1.") from None
    return Options(
        k=max(1, min(MAX_K, k)),
        filters=Filters(**filters),
        min_score=min_score,
        sort=params.get("sort") or "score",
    )


def in_folder(text: str) -> str:
    """The "in folder" box: an absolute folder that is there (a relative one would be the gallery's own)."""
    folder = os.path.expanduser(text)
    if not os.path.isabs(folder):
        raise RequestError(f"The folder must be a whole path from /, such as /home/me/Pictures, not '{text}'.")
    if not os.path.isdir(folder):
        raise RequestError(f"There is no folder {folder}.")
    return os.path.normpath(folder)


@dataclass(frozen=True)
class Hit:
    """One result as the browser gets it: an id, never a path to ask for."""

    id: str
    score: float
    path: str
    width: int | None = None
    height: int | None = None
    sibling: str | None = None  # the RAW or video listed through this photo (the first)
    time: float | None = None  # a video's best frame, in seconds
    words: tuple[str, ...] = ()  # the lines of the picture's words that matched the search, if any
    siblings: tuple[str, ...] = ()  # every RAW and video listed through this photo, in path order


@dataclass(frozen=True)
class DupeFile:
    """One member of a duplicate group as the browser gets it: its id, never its path to ask for."""

    id: str
    path: str
    score: float  # cosine to the group's keeper (1.0 for the keeper and its exact copies)
    size: int
    width: int
    height: int
    same_content: bool


@dataclass(frozen=True)
class DupeSet:
    """A group of images that are the same picture, the suggested keeper first."""

    kind: str  # "exact", "near" or "burst"
    reclaimable: int
    members: tuple[DupeFile, ...]


class Backend:
    """Search and status through the facade; catalog ids resolved against the catalog's live paths."""

    def __init__(self, config: Config, load_model: Callable[[str], Embedder]) -> None:
        self.config = config
        self._load_model = load_model
        self._models: dict[str, Embedder] = {}
        self._readers = ThreadReaders(config.catalog_path)
        self._lock = threading.Lock()
        self._api = Api(config, self._model)
        self._index_stamp = self._stamp()

    # -- the catalog ------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """This thread's read-only catalog connection (SQLite connections are not shared)."""
        return self._readers.get()

    def resolve(self, item_id: str) -> str | None:
        """The live catalog path an id names, or None (malformed, removed, failed or missing)."""
        match = ID_PATTERN.fullmatch(item_id)
        if match is None or not self.config.catalog_path.exists():
            return None
        content_id, tag = int(match.group(1)), match.group(2)
        for path in self.catalog.paths_for([content_id]).get(content_id, []):
            if path_tag(path) == tag:
                return path
        return None

    # -- requests ---------------------------------------------------------------------------

    def search(self, terms: tuple[Term, ...], options: Options) -> list[Hit]:
        return self._hits(self._call(SearchRequest(terms=terms, options=options)))

    def similar(self, content_id: int, options: Options) -> list[Hit]:
        """More like a catalogued picture, by the content id the page holds: no path to look up."""
        return self._hits(self._call(SimilarRequest(content_id=content_id, options=options)))

    def dupes(self, threshold: float | None, filters: Filters) -> tuple[float, list[DupeSet]]:
        """The groups `imgd dupes` lists for the same threshold and filters, members named by id."""
        reply = self._call(DupesRequest(threshold=threshold, filters=filters))
        sets = []
        for group in reply["groups"]:
            members = tuple(
                DupeFile(
                    f"{m['content_id']}-{path_tag(m['path'])}",
                    m["path"],
                    float(m["score"]),
                    int(m["size"]),
                    int(m["width"]),
                    int(m["height"]),
                    bool(m["same_content"]),
                )
                for m in group["members"]
            )
            sets.append(DupeSet(group["kind"], int(group["reclaimable"]), members))
        return float(reply["threshold"]), sets

    def recent(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """A page of the newest pictures, what the page opens on, and whether more follow."""
        if not self.config.catalog_path.exists():
            return [], False
        rows = self.catalog.recent(offset, limit + 1)
        return [
            {
                "id": f"{cid}-{path_tag(path)}",
                "score": None,
                "name": os.path.basename(path),
                "width": width,
                "height": height,
                "taken": taken,
            }
            for cid, path, width, height, taken in rows[:limit]
        ], len(rows) > limit

    def status(self) -> dict[str, Any]:
        """The page's status line: the cheap status (no duplicate grouping, no file stat in the daemon)."""
        info = dict(self._call(StatusRequest())["status"])
        newest = None
        if self.config.catalog_path.exists():
            try:
                newest = self.catalog.newest_file()
            except CatalogError:
                newest = None
        info["newest"] = newest
        return info

    def alerts(self) -> dict[str, Any]:
        """The saved searches and their recent matches, read-only: no command, no folder, pictures by id."""
        saved = self._call(AlertListRequest())["alerts"]
        log = self._call(AlertLogRequest(limit=200))["log"]
        recent: dict[str, list[dict[str, Any]]] = {item["name"]: [] for item in saved}
        seen: set[tuple[str, str]] = set()
        for entry in reversed(log):  # newest first
            record = self.catalog.get_file(entry["path"]) if entry["outcome"] == "ok" else None
            if entry["name"] not in recent or record is None or record.content_id is None:
                continue
            item_id = f"{record.content_id}-{path_tag(entry['path'])}"
            if (entry["name"], item_id) not in seen and len(recent[entry["name"]]) < 24:
                seen.add((entry["name"], item_id))
                name = os.path.basename(entry["path"])
                recent[entry["name"]].append({"id": item_id, "score": round(entry["score"], 4), "name": name})
        return {
            "alerts": [
                {
                    "name": item["name"],
                    "query": ", ".join(
                        (f"{t['weight']:g}:" if t["weight"] != 1 else "")
                        + (t["value"] if t["kind"] == "text" else "(a picture)")
                        for t in item["terms"]
                    ),
                    "acts": [kind for kind in (item["file_action"], "exec" if item["command"] else None) if kind],
                    "recent": recent[item["name"]],
                }
                for item in saved
            ]
        }

    def close(self) -> None:
        self._readers.close_mine()

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _hits(reply: dict[str, Any]) -> list[Hit]:
        return [
            Hit(
                f"{row['id']}-{path_tag(row['path'])}",
                float(row["score"]),
                row["path"],
                row.get("width"),
                row.get("height"),
                row.get("sibling"),
                row.get("time"),
                tuple(row.get("words") or ()),
                tuple(row.get("siblings") or ()),
            )
            for row in reply["hits"]
        ]

    def _call(self, request: Any) -> dict[str, Any]:
        """Ask through the facade; without a daemon, reopen the in-process path when `imgd index` rewrote the index."""
        stamp = self._stamp()
        with self._lock:
            if stamp != self._index_stamp:
                self._api = Api(self.config, self._model)
                self._index_stamp = stamp
            api = self._api
        return api.call(request)

    def _stamp(self) -> tuple[float, int] | None:
        try:
            info = self.config.index_path.stat()
        except OSError:
            return None
        return info.st_mtime, info.st_size

    def _model(self, name: str) -> Embedder:
        """Load each model once per process, however often the in-process path is reopened."""
        with self._lock:
            if name not in self._models:
                self._models[name] = self._load_model(name)
            return self._models[name]
