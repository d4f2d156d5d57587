"""What an ingest run says about each file it looked at: added, updated, moved, unchanged or failed.

Part of the engine (engine.py), split off for its size: the catalog's files row written, the summary
counted and the one log line per file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..errors import display_path
from ..store.catalog import Catalog
from ..store.records import IndexSummary

log = logging.getLogger("imgd.daemon.ingest.engine")  # the engine's lines, as before the split


class Outcomes:
    """The engine's per-file bookkeeping, on its catalog."""

    catalog: Catalog
    _event: Callable[..., None]  # the engine's (EventSource)

    def _record(self, item: Any, content_id: int, gone_contents: dict[int, list[str]], summary: IndexSummary) -> None:
        stat, previous = item.stat, item.previous
        # "indexed" and "updated" mean a forward pass; known bytes at a new place say they were not embedded.
        reused = "" if item.count else " (bytes already indexed, not embedded)"
        self.catalog.set_file(stat.path, stat.size, stat.mtime_ns, content_id)
        held = gone_contents.get(content_id)
        if held and stat.path in held:  # back where it was (a folder moved out and in again): not a move
            held.remove(stat.path)
        embedded = {"id": content_id, "embedded": bool(item.count)}
        if previous is not None and previous.status == "ok":
            if previous.content_id == content_id:
                summary.unchanged += 1
            else:
                summary.updated += 1
                log.info("updated %s%s", display_path(stat.path), reused)
                self._event("updated", stat.path, **embedded)
        elif gone_contents.get(content_id):
            old = gone_contents[content_id].pop()
            summary.moved += 1
            log.info("moved %s -> %s", display_path(old), display_path(stat.path))
            self._event("moved", stat.path, source=old, id=content_id)
        else:
            summary.added += 1
            log.info("added %s%s" if reused else "indexed %s%s", display_path(stat.path), reused)
            self._event("indexed", stat.path, **embedded)

    def _record_failure(self, item: Any, summary: IndexSummary) -> None:
        stat = item.stat
        if not os.path.lexists(stat.path):
            # Deleted or renamed away while being read: its own event (or the next reconcile) handles it.
            # A failed row here would be stale, and a rename would carry it to the new name for good.
            if self.catalog.remove_file(stat.path):
                summary.removed += 1
                log.info("removed %s", display_path(stat.path))
                self._event("removed", stat.path)
            return
        self.catalog.set_failed(stat.path, stat.size, stat.mtime_ns, item.error or "unknown error")
        summary.failed += 1
        summary.failures.append((stat.path, item.error or ""))
        log.warning("skipping %s: %s", display_path(stat.path), item.error)
        self._event("failed", stat.path, error=item.error or "unknown error")
