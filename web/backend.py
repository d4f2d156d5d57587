"""What the gallery asks of imgd, in one place: search, status and catalog ids.

It asks the running daemon over its socket and answers in-process when none runs, like `imgd search`.
When daemon/api.py (the facade the CLI will share) lands, it replaces the two `_ask_*` methods here
and nothing else in the web app changes.

Files are named to the browser by catalog id only: "<content id>-<hash of the path>". An id is
resolved against the catalog's live paths of that content, so no path from a request is ever opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgd.daemon import client
from imgd.daemon.catalog import Catalog
from imgd.daemon.config import Config
from imgd.daemon.errors import CatalogError, DaemonNotRunning, ImgdError

if TYPE_CHECKING:  # the model and FAISS load only when no daemon answers
    from imgd.daemon.embedder import Embedder
    from imgd.daemon.engine import Searcher

ID_PATTERN = re.compile(r"(\d{1,18})-([0-9a-f]{16})")


def path_tag(path: str) -> str:
    return hashlib.blake2b(os.fsencode(path), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Hit:
    """One result as the browser gets it: an id, never a path to ask for."""

    id: str
    score: float
    path: str


class Backend:
    """Search through the daemon, or in this process without one; resolve catalog ids to paths."""

    def __init__(self, config: Config, load_model: Callable[[str], Embedder]) -> None:
        self.config = config
        self._load_model = load_model
        self._models: dict[str, Embedder] = {}
        self._local = threading.local()
        self._searcher: Searcher | None = None
        self._searcher_stamp: tuple[float, float] | None = None
        self._lock = threading.Lock()

    # -- the catalog ------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """This thread's read-only catalog connection (SQLite connections are not shared)."""
        reader = getattr(self._local, "catalog", None)
        if reader is None:
            reader = self._local.catalog = Catalog(self.config.catalog_path, readonly=True)
        return reader

    def item_id(self, path: str) -> str | None:
        record = self.catalog.get_file(path)
        if record is None or record.content_id is None or record.status != "ok":
            return None
        return f"{record.content_id}-{path_tag(path)}"

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

    # -- queries ----------------------------------------------------------------------------

    def search(self, k: int, text: str | None = None, image: str | None = None) -> list[Hit]:
        """The k best images for a text or an image file, as catalog ids with scores."""
        raw = self._ask_search(k, text=text, image=image)
        hits = []
        for item in raw:
            item_id = self.item_id(item["path"])
            if item_id is not None:  # removed between the search and this lookup
                hits.append(Hit(item_id, float(item["score"]), item["path"]))
        return hits

    def status(self) -> dict[str, Any]:
        info = self._ask_status()
        newest = None
        if self.config.catalog_path.exists():
            try:
                newest = self.catalog.newest_file()
            except CatalogError:
                newest = None
        info["newest"] = newest
        return info

    def close(self) -> None:
        reader = getattr(self._local, "catalog", None)
        if reader is not None:
            reader.close()

    # -- the two ways of answering (daemon/api.py will own these) ----------------------------

    def _ask_search(self, k: int, text: str | None, image: str | None) -> list[dict[str, Any]]:
        try:
            return client.search(self.config.socket, k, text=text, image=image)
        except DaemonNotRunning:
            pass
        return [hit.as_dict() for hit in self._in_process().query(k, text=text, image=image)]

    def _ask_status(self) -> dict[str, Any]:
        try:
            return client.status(self.config.socket)
        except DaemonNotRunning:
            from imgd.daemon.library import catalog_status

            return catalog_status(self.config)

    def _model(self, name: str) -> Embedder:
        """Load each model once per process, however often the index is reopened."""
        if name not in self._models:
            self._models[name] = self._load_model(name)
        return self._models[name]

    def _in_process(self) -> Searcher:
        """The direct path, reloaded when `imgd index` rewrote the index since it was opened."""
        from imgd.daemon.library import open_searcher

        try:
            info = self.config.index_path.stat()
            stamp = (info.st_mtime, float(info.st_size))
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._searcher is None or stamp != self._searcher_stamp:
                self._searcher = open_searcher(self.config, self._model)
                self._searcher_stamp = stamp
            return self._searcher


__all__ = ["Backend", "Hit", "ImgdError", "path_tag"]
