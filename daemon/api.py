"""The one way to ask imgd something: the daemon if it runs, else this process, with the same answer.

The CLI and the web UI build a typed request (protocol.py) and call `Api.call`; the daemon's socket
server and the in-process path both dispatch through `answer`, one handler per operation. A new
operation is a request class, a handler here and a command. Light at import: the heavy modules load
only when a request is answered in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import client
from .config import Config
from .errors import DaemonNotRunning
from .protocol import DupesRequest, FailedRequest, Request, SearchRequest, SimilarRequest, StatusRequest

if TYPE_CHECKING:
    from .embedder import Embedder
    from .query import Searcher


class Context(Protocol):
    """What handlers need: the daemon provides it, and so does LocalContext without one."""

    config: Config

    @property
    def searcher(self) -> Searcher: ...

    def status(self) -> dict[str, Any]: ...


Handler = Callable[[Context, Any], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


def handler(op: str) -> Callable[[Handler], Handler]:
    """Register the function answering one operation."""

    def register(fn: Handler) -> Handler:
        HANDLERS[op] = fn
        return fn

    return register


@handler(SearchRequest.op)
def _search(context: Context, request: SearchRequest) -> dict[str, Any]:
    return {"hits": context.searcher.search(request)}


@handler(SimilarRequest.op)
def _similar(context: Context, request: SimilarRequest) -> dict[str, Any]:
    return {"hits": context.searcher.similar(request)}


@handler(StatusRequest.op)
def _status(context: Context, request: StatusRequest) -> dict[str, Any]:
    return {"status": context.status()}


@handler(FailedRequest.op)
def _failed(context: Context, request: FailedRequest) -> dict[str, Any]:
    from .library import failed_files

    return {"failed": [{"path": path, "error": error} for path, error in failed_files(context.config)]}


@handler(DupesRequest.op)
def _dupes(context: Context, request: DupesRequest) -> dict[str, Any]:
    from . import dupes

    searcher = context.searcher if request.filters.active else None
    return dupes.answer(context.config, request, searcher, getattr(context, "dupes", None))


def answer(context: Context, request: Request) -> dict[str, Any]:
    """Dispatch one typed request to its handler; the socket server and the direct path both call this."""
    return HANDLERS[request.op](context, request)


class LocalContext:
    """Answers in this process: the saved index and the catalog's own model, opened on first need."""

    def __init__(self, config: Config, load_model: Callable[[str], Embedder]) -> None:
        self.config = config
        self._load_model = load_model
        self._searcher: Searcher | None = None

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            from .library import open_searcher

            self._searcher = open_searcher(self.config, self._load_model)
        return self._searcher

    def status(self) -> dict[str, Any]:
        from .library import catalog_status

        return catalog_status(self.config)


class Api:
    """The facade: ask the running daemon, and answer here when none runs (or when told to)."""

    def __init__(self, config: Config, load_model: Callable[[str], Embedder], direct: bool = False) -> None:
        self.config = config
        self.direct = direct
        self._local = LocalContext(config, load_model)
        self.answered_by: str | None = None  # "daemon" or "direct", for `-v` and tests

    @property
    def socket(self) -> Path:
        return self.config.socket

    def call(self, request: Request, timeout: float = 120.0) -> dict[str, Any]:
        if not self.direct:
            try:
                reply = client.request(self.socket, request.to_message(), timeout=timeout)
            except DaemonNotRunning:
                pass
            else:
                self.answered_by = "daemon"
                return {k: v for k, v in reply.items() if k not in ("v", "ok")}
        self.answered_by = "direct"
        # Through JSON, as the daemon's answer is: both paths hand the caller the very same values.
        return json.loads(json.dumps(answer(self._local, request)))
