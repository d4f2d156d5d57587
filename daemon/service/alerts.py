"""Saved searches that act on new pictures: the matcher, the daemon's alert thread, and the requests' answers.

Each saved search's query is encoded once; a newly indexed picture then costs one small matrix product
over all of them (a video: its best frame), and the few that score above their threshold check their
filters on that one file's row. Matching and acting happen on threads of their own, fed by the event
bus, so indexing never waits for a saved search, a hook or a slow disk.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..alertprotocol import AlertAddRequest
from ..config import Config
from ..errors import display_path
from ..paths import is_under
from ..protocol import MAX_K, Options, RequestError, SearchRequest
from ..search.filters import from_request
from ..search.query import Searcher, combine
from ..store import alerts as rows
from ..store.catalog import Catalog
from . import actions
from .events import EventBus, Subscription

if TYPE_CHECKING:
    from ..store.index import VectorIndex

log = logging.getLogger(__name__)

ACTION_THREADS = 2  # hooks and file actions at once; a hanging hook holds one until its time limit
MATCH_EVENTS = ("indexed", "updated")  # what a saved search looks at: new bytes, just embedded


@dataclass(frozen=True)
class Saved:
    """One saved search, as the requests and the matcher use it."""

    name: str
    query: SearchRequest
    command: tuple[str, ...] = ()
    file_action: str | None = None
    folder: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_row(cls, row: rows.SavedRow) -> Saved:
        body = {k: v for k, v in row.query.items() if k not in ("v", "op")}
        request = AlertAddRequest(name=row.name, query=body, **row.action)
        return cls.from_request(request)

    @classmethod
    def from_request(cls, request: AlertAddRequest) -> Saved:
        return cls(request.name, request.query, request.command, request.file_action, request.folder, request.timeout)

    @property
    def action(self) -> dict[str, Any]:
        """The stored action: what to do, where, and a command's time limit."""
        return {
            "command": list(self.command),
            "file_action": self.file_action,
            "folder": self.folder,
            "timeout": self.timeout,
        }

    @property
    def min_score(self) -> float | None:
        return self.query.options.min_score

    def describe(self) -> dict[str, Any]:
        """What `imgd alert list` and `show` print."""
        terms = [{"kind": term.kind, "value": term.value, "weight": term.weight} for term in self.query.terms]
        return {
            "name": self.name,
            "terms": terms,
            "query": self.query.to_message(),
            **self.action,
            "min_score": self.min_score,
        }


def query_vector(searcher: Searcher, query: SearchRequest) -> np.ndarray:
    """The one vector a saved search compares pictures with (a missing example image: its one-line error)."""
    return combine([searcher.term_vector(term) for term in query.terms], [term.weight for term in query.terms])


def threshold(searcher: Searcher, saved: Saved, vector: np.ndarray) -> float | None:
    """--min-score, or where --auto ends this query over the library now (None: no images yet)."""
    if saved.min_score is not None:
        return saved.min_score
    return searcher.cut_score(vector, saved.query.options.filters)


class Matcher:
    """The saved searches' vectors as one matrix: a picture's vectors against all of them in one product."""

    def __init__(self, names: list[str], vectors: np.ndarray, thresholds: np.ndarray) -> None:
        self.names = names
        vectors = np.asarray(vectors, dtype=np.float32)
        self.vectors = vectors.reshape(len(names), -1) if names else vectors.reshape(0, 0)
        self.thresholds = np.asarray(thresholds, dtype=np.float32)

    def matches(self, vectors: np.ndarray) -> list[tuple[str, float]]:
        """(name, score) of each saved search this content passes: a video at its best frame."""
        if not self.names or not len(vectors):
            return []
        best = (np.asarray(vectors, dtype=np.float32) @ self.vectors.T).max(axis=0)
        return [(self.names[i], float(best[i])) for i in np.flatnonzero(best >= self.thresholds)]


# -- the requests' answers (handlers.py calls these, in the daemon and in the direct path) ------------


def _reader(config: Config) -> Catalog | None:
    return Catalog(config.catalog_path, readonly=True) if config.catalog_path.exists() else None


def load_saved(config: Config) -> list[Saved]:
    """Every saved search in the catalog (none before there is a catalog)."""
    catalog = _reader(config)
    if catalog is None:
        return []
    try:
        return [Saved.from_row(row) for row in rows.saved(catalog)]
    finally:
        catalog.close()


def find(config: Config, name: str) -> Saved:
    """The saved search of that name, or the one sentence saying there is none."""
    for saved in load_saved(config):
        if saved.name == name:
            return saved
    raise RequestError(f"no saved search is named {name!r}; `imgd alert list` shows them.")


def add(config: Config, searcher: Searcher, request: AlertAddRequest) -> dict[str, Any]:
    """Validate (the query must encode) and store a new saved search; a name in use is refused."""
    if any(saved.name == request.name for saved in load_saved(config)):
        raise RequestError(f"a saved search is already named {request.name!r}; remove it first.")
    query_vector(searcher, request.query)
    saved = Saved.from_request(request)
    catalog = Catalog(config.catalog_path)
    try:
        rows.save(catalog, saved.name, saved.query.to_message(), saved.action)
    finally:
        catalog.close()
    return {"added": saved.describe()}


def remove(config: Config, name: str) -> dict[str, Any]:
    find(config, name)
    catalog = Catalog(config.catalog_path)
    try:
        rows.remove(catalog, name)
    finally:
        catalog.close()
    return {"removed": name}


def test(config: Config, searcher: Searcher, name: str) -> dict[str, Any]:
    """What the saved search matches in the library now, acting on nothing."""
    saved = find(config, name)
    vector = query_vector(searcher, saved.query)
    cut = threshold(searcher, saved, vector)
    if cut is None:
        return {"threshold": None, "hits": []}
    options = Options(k=MAX_K, filters=saved.query.options.filters, min_score=max(-1.0, min(1.0, cut)))
    with searcher._switch.shared():
        hits = searcher.run(vector, options)
    return {"threshold": cut, "hits": hits}


def action_log(config: Config, name: str | None, limit: int) -> list[dict[str, Any]]:
    catalog = _reader(config)
    if catalog is None:
        return []
    try:
        return rows.action_log(catalog, name, limit)
    finally:
        catalog.close()


# -- the daemon's side ------------------------------------------------------------------------------


class AlertService:
    """Checks each newly embedded picture against every saved search and runs the actions of those it matches."""

    def __init__(self, config: Config, searcher: Searcher, index: VectorIndex, bus: EventBus) -> None:
        self.config = config
        self.searcher = searcher
        self.index = index
        self.bus = bus
        self._saved: dict[str, Saved] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._cuts: dict[str, tuple[int, float | None]] = {}  # auto thresholds, with the library size they are for
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None
        self._actions = ThreadPoolExecutor(max_workers=ACTION_THREADS, thread_name_prefix="imgd-alert-action")
        self._writer: Catalog | None = None

    def start(self) -> None:
        """Listen from now on (before the catch-up starts: pictures that came while stopped are checked too)."""
        self._subscription = self.bus.subscribe(buffer=100_000)
        self._thread = threading.Thread(target=self._run, name="imgd-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription.put({"event": "stop"})
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._actions.shutdown(wait=False, cancel_futures=True)
        if self._writer is not None:
            self._writer.close()

    def reload(self, new_model: bool = False) -> None:
        """Read the saved searches again (one was added or removed; `new_model`: every vector is stale)."""
        saved = {s.name: s for s in load_saved(self.config)}
        with self._lock:
            self._saved = saved
            self._vectors = {name: v for name, v in self._vectors.items() if name in saved and not new_model}
            self._cuts.clear()

    def _run(self) -> None:
        self.reload()
        assert self._subscription is not None
        while True:
            event = self._subscription.get()
            if event is None or event.get("event") == "stop":
                return
            if event.get("event") in MATCH_EVENTS and event.get("embedded"):
                try:
                    self.check(event["path"], int(event["id"]))
                except Exception:  # noqa: BLE001 - a saved search must never stop the others
                    log.exception("could not check %s against the saved searches", display_path(event["path"]))
            elif event.get("event") == "dropped":
                log.warning("%d changes went by unchecked by the saved searches", event["count"])

    def matcher(self) -> Matcher:
        """The saved searches' vectors and thresholds now: encoded once, auto thresholds kept while the
        library's size stays within a tenth of the size they were computed for."""
        with self._lock:
            saved = list(self._saved.values())
        size = len(self.index)
        names, vectors, cuts = [], [], []
        for item in saved:
            vector = self._vectors.get(item.name)
            if vector is None:
                vector = self._vectors[item.name] = query_vector(self.searcher, item.query)
            known = self._cuts.get(item.name)
            if item.min_score is not None:
                cut: float | None = item.min_score
            elif known is not None and abs(known[0] - size) <= known[0] // 10:
                cut = known[1]
            else:
                cut = threshold(self.searcher, item, vector)
                self._cuts[item.name] = (size, cut)
            if cut is not None:
                names.append(item.name)
                vectors.append(vector)
                cuts.append(cut)
        return Matcher(names, np.array(vectors, dtype=np.float32), np.array(cuts, dtype=np.float32))

    def check(self, path: str, content_id: int) -> list[tuple[str, float]]:
        """Match one new picture; hand each saved search it matches to the action threads."""
        if not self._saved:
            return []
        catalog = self.searcher.catalog
        found = self.matcher().matches(rows.content_vectors(catalog, content_id))
        matched = []
        for name, score in found:
            saved = self._saved.get(name)
            if saved is None or (saved.folder is not None and is_under(path, saved.folder)):
                continue  # its own output (a copy it made) is no new picture for it
            filters = saved.query.options.filters
            if filters.active:
                chosen = from_request(filters, lambda: rows.camera_of(catalog, content_id))
                if not rows.path_passes(catalog, path, [f.clause() for f in chosen]):
                    continue
            matched.append((name, score))
            log.info("saved search %s matched %s (score %.3f)", name, display_path(path), score)
            self.bus.publish("matched", name=name, path=path, score=round(score, 6), id=content_id)
            self._actions.submit(self._act, saved, path, score)
        return matched

    def _act(self, saved: Saved, path: str, score: float) -> None:
        """Run a saved search's actions for one picture, each logged; nothing is retried."""
        target = path
        if saved.file_action is not None and saved.folder is not None:
            done = actions.place(saved.file_action, path, saved.folder)
            self._record(saved, done.path, score, saved.file_action, done)  # where it is now
            if done.outcome != "ok":
                return
            target = done.path
        if saved.command:
            done = actions.run_hook(saved.command, target, score, saved.name, saved.timeout)
            self._record(saved, done.path, score, "exec", done)

    def _record(self, saved: Saved, path: str, score: float, action: str, done: actions.Outcome) -> None:
        level = logging.INFO if done.outcome == "ok" else logging.WARNING
        log.log(
            level, "saved search %s: %s %s %s %s", saved.name, action, done.outcome, display_path(path), done.detail
        )
        with self._log_lock:
            try:
                if self._writer is None:
                    self._writer = Catalog(self.config.catalog_path)
                rows.log_action(self._writer, saved.name, path, score, action, done.outcome, done.detail)
            except Exception as exc:  # noqa: BLE001 - the action happened; only its log line is lost
                log.warning("could not log saved search %s's action (%s)", saved.name, exc)
