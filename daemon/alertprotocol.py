"""The requests about saved searches and the event stream, registered beside protocol.py's own.

Kept apart from protocol.py for its size; the handlers import this, so a daemon parses them. Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .protocol import Request, RequestError, SearchRequest, _build, _field, _number, _whole, register

ALERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FILE_ACTIONS = ("move", "copy", "link")  # what a saved search may do with a matching file
MAX_HOOK_SECONDS = 3600.0


def alert_name(name: Any) -> str:
    """A saved search's name: letters, digits, `_`, `.` and `-`, at most 64."""
    if not isinstance(name, str) or not ALERT_NAME.match(name):
        raise RequestError(f"{name!r} is not a saved search name; use letters, digits, '_', '.' and '-' (at most 64).")
    return name


@register
@dataclass(frozen=True)
class AlertAddRequest(Request):
    """Save a search that acts on each new picture it matches: the whole search request is kept, so
    every term and filter it can hold comes along. Threshold: `query.options.min_score`, or the cut-off
    `auto` gives for the query over the library. `command`: an argv (never a shell), run with the path."""

    op: ClassVar[str] = "alert_add"
    name: str = ""
    query: SearchRequest = field(default_factory=SearchRequest)
    command: tuple[str, ...] = ()
    file_action: str | None = None  # one of FILE_ACTIONS, into `folder`
    folder: str | None = None
    timeout: float = 30.0  # seconds a command may run before it is killed

    def __post_init__(self) -> None:
        alert_name(self.name)
        if not isinstance(self.query, SearchRequest):
            if not isinstance(self.query, dict):
                raise RequestError("'query' must be an object.")
            body = {k: v for k, v in self.query.items() if k not in ("v", "op")}
            object.__setattr__(self, "query", _build(SearchRequest, body, "query"))
        command = tuple(self.command) if isinstance(self.command, list | tuple) else None
        if command is None or not all(isinstance(part, str) and part for part in command):
            raise RequestError(lambda name: f"{name('command')} must be a program and its arguments.")
        object.__setattr__(self, "command", command)
        if (self.file_action is None) != (self.folder is None):
            raise RequestError("a file action needs a folder, and a folder a file action.")
        if self.file_action is not None and self.file_action not in FILE_ACTIONS:
            raise RequestError(f"the file action is one of {', '.join(FILE_ACTIONS)}, not {self.file_action!r}.")
        if self.folder is not None and (not isinstance(self.folder, str) or not self.folder.startswith("/")):
            raise RequestError(lambda name: f"{name('folder')} must be an absolute folder, not {self.folder!r}.")
        seconds = _number(self.timeout, _field("timeout"))
        if not 0 < seconds <= MAX_HOOK_SECONDS:
            raise RequestError(
                lambda name: f"{name('timeout')} is a number of seconds above 0 and at most 3600, not {seconds:g}."
            )
        object.__setattr__(self, "timeout", seconds)

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "query": self.query.to_message()}


@register
@dataclass(frozen=True)
class AlertListRequest(Request):
    """Every saved search with its action and threshold."""

    op: ClassVar[str] = "alert_list"


@register
@dataclass(frozen=True)
class AlertNameRequest(Request):
    """One saved search by name: `show` it, `remove` it, or `test` it over the library (acting on nothing)."""

    op: ClassVar[str] = "alert"
    name: str = ""
    verb: str = "show"

    def __post_init__(self) -> None:
        alert_name(self.name)
        if self.verb not in ("show", "remove", "test"):
            raise RequestError(f"a saved search can be shown, removed or tested, not {self.verb!r}.")


@register
@dataclass(frozen=True)
class AlertLogRequest(Request):
    """What the saved searches did lately (one's, or all of them), oldest first."""

    op: ClassVar[str] = "alert_log"
    name: str | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.name is not None:
            alert_name(self.name)
        _whole(self.limit, _field("limit"), 1, 500)


@register
@dataclass(frozen=True)
class EventsRequest(Request):
    """The daemon's events as they happen: a streaming reply, one event a line (only a daemon has them)."""

    op: ClassVar[str] = "events"
