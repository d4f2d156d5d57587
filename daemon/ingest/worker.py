"""The one consumer thread: settles new files, batches them, and calls the Engine.

Moves and deletes apply at once, in event order; created or changed files wait until they have
been quiet for `settle_seconds` and their size and mtime stopped changing, so a download or a slow
copy is embedded once, with its final content. A content whose last path went away is held for a
grace period and dropped only once nothing is waiting, so a move seen as a delete and a create, in
either order, finds its bytes known and keeps its vector.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import DiskFull, display_path
from ..paths import is_under
from ..store.records import Change, ChangeKind, IndexSummary
from ..verbosity import DETAIL
from .engine import Engine, Stopped
from .scanner import stat_file

log = logging.getLogger(__name__)

TICK = 0.1
MAX_UPSERT_BATCH = 2048
MIN_BACKOFF, MAX_BACKOFF = 5.0, 60.0  # seconds between tries while the disk is full


@dataclass
class _Pending:
    seen: float  # monotonic time of the last event
    signature: tuple[int, int] | None  # size and mtime at that event
    recheck: bool = False  # a new file at this path: hash it even if size and mtime match its row


def _signature(path: str) -> tuple[int, int] | None:
    stat = stat_file(path)
    return (stat.size, stat.mtime_ns) if stat else None


@dataclass
class WorkerStats:
    """What status reports about the worker; written by the worker thread only."""

    pending: int = 0
    busy: str = "starting"
    rate: float = 0.0
    remaining: int = 0
    done_total: int = 0
    last_error: str | None = None
    totals: IndexSummary = field(default_factory=IndexSummary)


class Worker:
    """Owns the Engine for the daemon's lifetime; every write happens on this thread."""

    def __init__(
        self,
        engine: Engine,
        roots: Sequence[str],
        changes: queue.Queue[Change],
        settle_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        stop_event: threading.Event | None = None,
        orphan_grace: Callable[[], float] | None = None,
        finish_change: Callable[[], list[int]] | None = None,
        reembed_pause: float = 0.0,
    ) -> None:
        self.engine = engine
        self.roots = list(roots)
        self.changes = changes
        self.settle_seconds = settle_seconds
        self.monotonic = monotonic
        # How long a move may take to show up as both its halves; the watcher knows (polling is slower).
        self.orphan_grace = orphan_grace or (lambda: settle_seconds + 2.0)
        self.pending: dict[str, _Pending] = {}
        self.rescans: set[str] = set()
        self.stats = WorkerStats()
        self.stop_event = stop_event or threading.Event()  # the engine was built watching the same flag
        self.idle = threading.Event()
        self._backoff = MIN_BACKOFF
        self._media_due = True  # contents from before metadata was kept may lack it: read their headers
        self._places_due = True  # positions stored before places were named (a catalog kept from before them)
        self._words_due = True  # pictures embedded but not read for words yet (any new file makes it so)
        # A model change: the daemon's switch (it holds searches off), else the engine's own.
        self.finish_change = finish_change or engine.finish_change
        self.reembed_pause = reembed_pause  # seconds between re-embedding batches, leaving the CPU to others
        self._reembed_at = 0.0
        self._thread = threading.Thread(target=self._run, name="imgd-worker", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, initial_reconcile: bool = True) -> None:
        if initial_reconcile:
            self.rescans.add("")
        self._thread.start()

    def stop(self, timeout: float | None = 20.0) -> None:
        self.stop_event.set()
        if self._thread.ident is not None:  # a stop during the daemon's start-up may come before start()
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def request_rescan(self, folder: str = "") -> None:
        self.changes.put(Change(ChangeKind.RESCAN, folder))

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._drain()
                if self.rescans:
                    self._rescan()
                    self._backoff = MIN_BACKOFF
                    self._words_due = True
                    continue
                ready, recheck = self._settled()
                if ready:
                    self._upsert(ready, recheck)
                    self._words_due = True
                    continue
                if self._media_due and self.changes.empty():
                    # A small batch at a time, between events, so a new file never waits behind it.
                    self.stats.busy = "reading metadata"
                    self._media_due = self.engine.backfill_media() > 0
                    continue
                if self._places_due and self.changes.empty():
                    # Like the metadata: a batch of ~50 ms between events, settled files first.
                    self.stats.busy = "naming places"
                    self._places_due = self.engine.place_batch() > 0
                    continue
                if self.engine.changing and self.changes.empty() and self.monotonic() >= self._reembed_at:
                    self._reembed()
                    continue
                if self._words_due and self.changes.empty() and not self.pending and not self.engine.changing:
                    # Lowest priority: a few pictures at a time, a batch ends as soon as a file arrives, and
                    # none runs during a model change (its pauses leave the CPU to other work).
                    self.stats.busy = "reading words"
                    self._words_due = self.engine.read_words(interrupt=self._file_waiting) > 0
                    continue
                waiting = bool(self.pending) or not self.changes.empty()
                # Held contents are dropped only when no file waits that might turn out to hold them.
                held = self.engine.held_contents if waiting else self.engine.release_orphans()
                changing = self.engine.changing  # resting between batches (reembed_pause)
                self.stats.busy = "settling" if held else "changing model" if changing else "idle"
                self.stats.pending = len(self.pending) + self.changes.qsize()
                if not waiting and not held and not changing:
                    self.idle.set()
                self._wait()
            except Stopped:
                break
            except DiskFull as exc:
                # Temporary: say so once per attempt, without a traceback, and back off; the failed
                # step is rolled back and the rescan redoes it once space is freed.
                self.stats.last_error = str(exc)
                log.error("%s; indexing paused, retrying in %.0fs (free some space)", exc, self._backoff)
                self.rescans.add("")
                self.stats.busy = "retrying"
                self.stop_event.wait(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything one batch throws
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("indexing step failed; rescanning to recover")
                self.rescans.add("")
                self.stats.busy = "retrying"  # not idle: a rescan is due after the pause
                self.stop_event.wait(5.0)

    def files_waiting(self) -> bool:
        """New files are being embedded or wait to be (any thread): background passes give way meanwhile."""
        return self.stats.busy == "indexing" or self._file_waiting()

    def _file_waiting(self) -> bool:
        """A new event or a settling file: the words pass gives way to it."""
        return not self.changes.empty() or bool(self.pending)

    def _wait(self) -> None:
        try:
            change = self.changes.get(timeout=TICK)
        except queue.Empty:
            return
        self._apply(change)

    def _drain(self) -> None:
        deletes: list[Change] = []  # removals in a row: one catalog transaction, one orphan check
        while True:
            try:
                change = self.changes.get_nowait()
            except queue.Empty:
                break
            if change.kind is ChangeKind.DELETE:
                deletes.append(change)
                continue
            self._forget(deletes)
            deletes = []
            self._apply(change)
        self._forget(deletes)

    def _forget(self, deletes: list[Change]) -> None:
        """Apply removals together: `rm -rf` of 10k files is 10k events, queued faster than one at a time goes."""
        if not deletes:
            return
        self.idle.clear()
        self.engine.orphan_grace = self.orphan_grace()
        for change in deletes:
            log.debug("event: delete %s", display_path(change.path))
            self._drop_pending(change.path, change.is_dir)
        # Removals commute: files first, then folders (their rows below them), each in one call.
        files = [change.path for change in deletes if not change.is_dir]
        folders = [change.path for change in deletes if change.is_dir]
        if files:
            self.engine.forget(files)
        if folders:
            self.engine.forget(folders, folder=True)

    def _apply(self, change: Change) -> None:
        self.idle.clear()
        if log.isEnabledFor(logging.DEBUG):
            target = f" -> {display_path(change.dest)}" if change.dest else ""
            log.debug("event: %s %s%s", change.kind.value, display_path(change.path), target)
        self.engine.orphan_grace = self.orphan_grace()
        if change.kind in (ChangeKind.UPSERT, ChangeKind.MOVE):
            self._wake_missing_root(change.dest or change.path)
        if change.kind is ChangeKind.UPSERT:
            self._pend(change.path, change.recheck)
        elif change.kind is ChangeKind.DELETE:
            self._forget([change])
        elif change.kind is ChangeKind.MOVE:
            self._move(change)
        elif change.kind is ChangeKind.RESCAN:
            self.rescans.add(change.path)

    def _pend(self, path: str, recheck: bool = False) -> None:
        """Wait for path to settle; a recheck already asked for sticks."""
        earlier = self.pending.get(path)
        recheck = recheck or (earlier is not None and earlier.recheck)
        self.pending[path] = _Pending(self.monotonic(), _signature(path), recheck)

    def _wake_missing_root(self, path: str) -> None:
        """A file arriving in a root whose entries were kept as missing (it was empty): reconcile it now."""
        root = self.engine.missing_root(path, self.roots)
        if root is not None:
            self.rescans.add(root)

    def _drop_pending(self, path: str, is_dir: bool) -> list[str]:
        dropped = [p for p in self.pending if p == path or (is_dir and is_under(p, path))]
        for p in dropped:
            del self.pending[p]
        return dropped

    def _move(self, change: Change) -> None:
        src, dest = change.path, change.dest or ""
        carried = self._drop_pending(src, change.is_dir)
        for old in carried:  # not yet indexed: wait for them at their new place
            self._pend(dest + old[len(src) :], recheck=True)
        moved = self.engine.move(src, dest, change.is_dir)
        # A move is the watcher's claim; check it against the disk. (Polling pairs moves by inode number,
        # and a number freed by one rename is soon another file's: it reports "A -> B" while A holds new bytes.)
        if change.is_dir:
            self.rescans.add(dest)  # anything the catalog did not know below src
            if os.path.isdir(src):
                self.rescans.add(src)
            return
        # The destination settles like a write: a moved row carries its source's size and mtime, so a real
        # rename costs one stat. Without a row moved (a hidden temp name, an excluded folder, a file not yet
        # indexed) it is a write of the destination, hashed whatever row it has now.
        self._pend(dest, recheck=not moved)
        if self.engine.changed([src], self.roots):
            self._pend(src, recheck=True)  # a new file where the source was

    def _settled(self) -> tuple[list[str], set[str]]:
        """Paths quiet for settle_seconds whose size and mtime still match the last event's, and those
        of them to hash whatever their row says."""
        now = self.monotonic()
        ready = []
        for path, entry in list(self.pending.items()):
            if now - entry.seen < self.settle_seconds:
                continue
            signature = _signature(path)
            if signature != entry.signature:  # written to without an event we saw: wait again
                entry.signature, entry.seen = signature, now
                log.log(DETAIL, "still changing, waiting again: %s", display_path(path))
                continue
            log.log(DETAIL, "settled: %s", display_path(path))
            ready.append(path)
            if len(ready) >= MAX_UPSERT_BATCH:
                break
        recheck = {path for path in ready if self.pending[path].recheck}
        for path in ready:
            del self.pending[path]
        return ready, recheck

    def _upsert(self, paths: list[str], recheck: set[str]) -> None:
        self.stats.busy = "indexing"
        self.stats.remaining = len(paths)
        started = self.monotonic()
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self.stats.remaining = max(0, len(paths) - done)
            elapsed = self.monotonic() - started
            self.stats.rate = done / elapsed if elapsed > 0 else 0.0

        summary = self.engine.upsert(paths, progress=progress, recheck=recheck)
        self.stats.totals.merge(summary)
        self.stats.remaining = 0

    def _reembed(self) -> None:
        """One batch of a model change between events, so a new file waits at most one batch; the switch
        once every image has been tried."""
        self.stats.busy = "changing model"
        if self.engine.reembed_step() > 0:
            self._reembed_at = self.monotonic() + self.reembed_pause
            return
        if self.finish_change():
            self.rescans.add("")  # files of the images that could not be read: embedded anew if they can be

    def _rescan(self) -> None:
        """Reconcile whole roots; a new or moved-in subfolder only has its files settle like new ones."""
        folders, self.rescans = self.rescans, set()
        roots = self.roots if "" in folders else [f for f in self.roots if f in folders]
        for folder in sorted(folders - {""} - set(self.roots)):
            self._pend_tree(folder)
        if not roots:
            return
        self.stats.busy = "reconciling"
        started = self.monotonic()
        total = done = 0

        def on_total(n: int) -> None:
            nonlocal total
            total = n
            self.stats.remaining = n

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self.stats.remaining = max(0, total - done)
            elapsed = self.monotonic() - started
            self.stats.rate = done / elapsed if elapsed > 0 else 0.0

        summary = self.engine.reconcile(roots, progress=progress, on_total=on_total)
        self.stats.totals.merge(summary)
        self.stats.remaining = 0
        log.debug("reconciled %d folders in %.2fs", len(roots), self.monotonic() - started)
        if summary.changed or summary.failed:
            log.info(
                "reconciled %s: %d added, %d updated, %d moved, %d removed, %d failed",
                ", ".join(display_path(r) for r in roots),
                summary.added,
                summary.updated,
                summary.moved,
                summary.removed,
                summary.failed,
            )

    def _pend_tree(self, folder: str) -> None:
        """Queue every file below a folder that the catalog does not know as it is now."""
        for stat in self.engine.changed([folder], self.roots):
            self.pending[stat.path] = _Pending(self.monotonic(), (stat.size, stat.mtime_ns))
