"""The handler table: one function per operation, answering a typed request against a Context.

The daemon's socket server and the in-process path (`LocalContext`, used by the facade when no daemon
runs) both dispatch through `answer`, so both give the same answer. A new operation is a request class
(protocol.py), a handler here and a command. Light at import: heavy modules load inside the handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..alertprotocol import AlertAddRequest, AlertListRequest, AlertLogRequest, AlertNameRequest, EventsRequest
from ..config import Config
from ..errors import ImgdError
from ..protocol import DupesRequest, FailedRequest, Request, SearchRequest, SimilarRequest, StatusRequest

if TYPE_CHECKING:
    from ..embedders import Embedder
    from ..search.query import Searcher
    from .alerts import AlertService
    from .dupetracker import DupeTracker


class Context(Protocol):
    """What handlers need: the daemon provides it, and so does LocalContext without one."""

    config: Config
    dupes: DupeTracker | None  # the daemon's live pairs; None: computed on request
    alerts: AlertService | None  # the daemon's saved-search thread, told of changes; None: no daemon

    @property
    def searcher(self) -> Searcher: ...

    def status(self, duplicates: bool = False) -> dict[str, Any]: ...


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
    return _hits(context.searcher, lambda searcher: searcher.search(request))


@handler(SimilarRequest.op)
def _similar(context: Context, request: SimilarRequest) -> dict[str, Any]:
    return _hits(context.searcher, lambda searcher: searcher.similar(request))


def _hits(searcher: Searcher, find: Callable[[Searcher], list[dict[str, Any]]]) -> dict[str, Any]:
    """The hits, and `exact_scan` when they came from a scan of the catalog (its index is being built)."""
    scanned = searcher.index.scanning
    hits = find(searcher)
    return {"hits": hits, **({"exact_scan": True} if scanned else {})}


@handler(StatusRequest.op)
def _status(context: Context, request: StatusRequest) -> dict[str, Any]:
    return {"status": context.status(duplicates=request.duplicates)}


@handler(FailedRequest.op)
def _failed(context: Context, request: FailedRequest) -> dict[str, Any]:
    from .library import failed_files

    return {"failed": [{"path": path, "error": error} for path, error in failed_files(context.config)]}


@handler(DupesRequest.op)
def _dupes(context: Context, request: DupesRequest) -> dict[str, Any]:
    """Groups from the daemon's live pairs when they serve this threshold, else computed here."""
    from ..search.dupes import request_groups

    threshold = request.threshold if request.threshold is not None else context.config.dupes_threshold
    allowed = context.searcher.allowed(request.filters) if request.filters.active else None
    source = context.dupes.source_for(threshold) if context.dupes is not None else None
    groups = request_groups(context.config.catalog_path, request, threshold, allowed, source)
    return {"threshold": threshold, "groups": [g.as_dict() for g in groups]}


@handler(AlertAddRequest.op)
def _alert_add(context: Context, request: AlertAddRequest) -> dict[str, Any]:
    from . import alerts

    added = alerts.add(context.config, context.searcher, request)
    if context.alerts is not None:
        context.alerts.reload()
    return added


@handler(AlertListRequest.op)
def _alert_list(context: Context, request: AlertListRequest) -> dict[str, Any]:
    from . import alerts

    return {"alerts": [saved.describe() for saved in alerts.load_saved(context.config)]}


@handler(AlertNameRequest.op)
def _alert(context: Context, request: AlertNameRequest) -> dict[str, Any]:
    """Show, remove or test one saved search."""
    from . import alerts

    if request.verb == "remove":
        removed = alerts.remove(context.config, request.name)
        if context.alerts is not None:
            context.alerts.reload()
        return removed
    if request.verb == "test":
        return alerts.test(context.config, context.searcher, request.name)
    shown = alerts.find(context.config, request.name).describe()
    return {"alert": shown, "log": alerts.action_log(context.config, request.name, 10)}


@handler(AlertLogRequest.op)
def _alert_log(context: Context, request: AlertLogRequest) -> dict[str, Any]:
    from . import alerts

    return {"log": alerts.action_log(context.config, request.name, request.limit)}


@handler(EventsRequest.op)
def _events(context: Context, request: EventsRequest) -> dict[str, Any]:
    """Only a daemon has events, and its server streams them before this table is asked."""
    raise ImgdError("no imgd daemon runs, so there are no events to follow; start one with `imgd run DIR`.")


def answer(context: Context, request: Request) -> dict[str, Any]:
    """Dispatch one typed request to its handler; the socket server and the direct path both call this."""
    return HANDLERS[request.op](context, request)


class LocalContext:
    """Answers in this process: the saved index and the catalog's own model, opened on first need."""

    def __init__(self, config: Config, load_model: Callable[[str], Embedder]) -> None:
        self.config = config
        self.dupes: DupeTracker | None = None  # no daemon: pairs are computed on request
        self.alerts: AlertService | None = None  # no daemon: saved searches are only stored and tested
        self._load_model = load_model
        self._searcher: Searcher | None = None

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            from .library import open_searcher

            self._searcher = open_searcher(self.config, self._load_model)
        return self._searcher

    def status(self, duplicates: bool = False) -> dict[str, Any]:
        """What the catalog holds; without a daemon there is no duplicates summary to show."""
        from .library import catalog_status

        return catalog_status(self.config)
