"""What the engine tells the daemon about each file it changed, without printing or knowing who listens.

The engine notes an event as it writes a row and hands the events on only after the catalog and the
index hold the change: a listener (the daemon's event bus) may then read the file's row and vector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[..., None]  # listener(kind, path=..., **fields)


class EventSource:
    """A part of the engine: `on_event` (set by the daemon) hears indexed, updated, moved, removed, failed."""

    on_event: Listener | None = None

    def _event(self, kind: str, path: str, **fields: Any) -> None:
        """Note an event; it is told once what it describes is committed (_flush_events)."""
        if self.on_event is not None:
            self.__dict__.setdefault("_noted", []).append((kind, {"path": path, **fields}))

    def _flush_events(self) -> None:
        """Tell the listener every event noted so far, in order."""
        noted = self.__dict__.pop("_noted", None)
        if noted and self.on_event is not None:
            for kind, fields in noted:
                self.on_event(kind, **fields)
