"""Contents whose last path went away: held for a grace, then dropped from catalog and index in batches.

A part of Engine (it inherits OrphanHold), split out for size: it uses the engine's catalog, index and clock.
A move the watcher could not pair (a delete here, a create there, in either order) finds its bytes held
and keeps its vector. Nothing here costs the library's size per event: a removal looks only at what it
released, and the held contents expire oldest first, together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..store.catalog import Catalog
from ..store.index import VectorIndex


@dataclass
class _Released:
    """A content no path points at any more, held for a while in case its bytes turn up elsewhere."""

    since: float  # monotonic time it was first seen unreferenced
    paths: list[str] = field(default_factory=list)  # where it was, for the "moved" log line


class OrphanHold:
    """Engine's held contents."""

    catalog: Catalog
    index: VectorIndex
    monotonic: Callable[[], float]
    orphan_grace: float
    _released: dict[int, _Released]
    _expire_at: float

    def _drop_orphans(
        self,
        released: dict[int, list[str]] | None = None,
        candidates: Iterable[int] | None = None,
        recheck_held: bool = True,
    ) -> None:
        """Drop the contents no path points at once they have been unreferenced for orphan_grace seconds.

        released: content id -> paths just removed, remembered so a later match logs as a move.
        candidates: the contents a single change may have left without a path; with `released` and the
        contents already held they are all that is looked at, so an event costs what it released. None
        (a reconcile, which walks the library anyway) looks at every content. recheck_held=False: the
        change pointed no path at a content (a removal), so the held ones are still unreferenced.
        """
        now = self.monotonic()
        with self.catalog.transaction():
            if candidates is None:
                unreferenced = set(self.catalog.orphan_ids())
            elif recheck_held:
                unreferenced = set(self.catalog.orphans_among({*candidates, *(released or {}), *self._released}))
            else:
                unreferenced = set(self.catalog.orphans_among({*candidates, *(released or {})}))
            if recheck_held:
                # Oldest first, as they were held: expiry below stops at the first one still in its grace.
                held = {cid: entry for cid, entry in self._released.items() if cid in unreferenced}
            else:
                held = self._released  # a removal of 10k files, one event each, must not copy 10k entries each
            for content_id in unreferenced:
                held.setdefault(content_id, _Released(now))
            for content_id, paths in (released or {}).items():
                if content_id in held:
                    held[content_id].paths.extend(paths)
            self._released = held
            expired = []
            # Removals in a row drop their contents together, once a grace has passed: the index's removal
            # scans every stored id, so one per event would cost the library's size each time.
            if recheck_held or now >= self._expire_at:
                for content_id, entry in held.items():
                    if now - entry.since < self.orphan_grace:
                        break
                    expired.append(content_id)
                self._expire_at = now + self.orphan_grace
            for content_id in expired:
                del held[content_id]
            if not recheck_held:
                # Held before this removal: a file written since (the second half of a move) may point at it.
                expired = self.catalog.orphans_among(expired) if expired else []
            dropped = self.catalog.delete_contents(expired)
            generation = self.catalog.generation
        if dropped:
            self.index.remove(dropped, generation)
        self._flush_events()  # the end of every change: what it did to files is committed now

    @property
    def held_contents(self) -> int:
        """Unreferenced contents waiting out orphan_grace."""
        return len(self._released)

    def release_orphans(self) -> int:
        """Drop the held contents whose grace has run out; returns how many are still held."""
        if self._released:
            first = next(iter(self._released.values())).since  # the oldest: they are kept in order
            if self.monotonic() - first >= self.orphan_grace:
                self._drop_orphans(candidates=())
        return len(self._released)
