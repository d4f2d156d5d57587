"""watchdog glue: filesystem events become Change items on a queue, nothing more.

Handlers run on watchdog's dispatcher thread under its lock, so they only filter names and
enqueue; the worker does everything slow. Lost events are expected and repaired: a queue overflow
or observer error asks for a rescan, a folder that exhausts the inotify watch limit is watched
by polling instead, and a root that is replaced (moved away and re-made, deleted and restored) is
noticed by its device and inode or its stopped watch, watched anew and reconciled.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ..errors import display_path
from ..paths import is_under
from ..store.records import Change, ChangeKind
from .scanner import PathFilter

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0
IN_ATTRIB = 0x4
# Only what ImageHandler uses. watchdog's default adds IN_OPEN and IN_CLOSE_NOWRITE, so our own reads
# and folder walks flooded the kernel queue: walking 10,000 folders overflowed it, the overflow asked
# for a rescan, whose walk overflowed it again.
HANDLED_EVENTS = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileAttribEvent,
]
INOTIFY_LIMIT_HINT = (
    "the inotify watch limit is reached; watching {root} by polling instead (slower to notice changes). "
    "Raise it with: sudo sysctl fs.inotify.max_user_watches=524288"
)


def _text(path: str | bytes) -> str:
    return os.fsdecode(path)


def folder_identity(path: str) -> tuple[int, int] | None:
    """Device and inode of a folder: a root moved away and re-made at its path has other ones."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def watch_limit_reached(path: str) -> bool:
    """True if the kernel refuses one more inotify watch (fs.inotify.max_user_watches is used up)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return False
    try:
        return libc.inotify_add_watch(fd, os.fsencode(path), IN_ATTRIB) < 0 and ctypes.get_errno() == errno.ENOSPC
    finally:
        os.close(fd)


class ImageHandler(FileSystemEventHandler):
    """Turns watchdog events under one root into Change items."""

    def __init__(self, root: str, path_filter: PathFilter, changes: queue.Queue[Change]) -> None:
        self.root = root
        self.filter = path_filter
        self.changes = changes

    def _wanted(self, path: str) -> bool:
        return self.filter.wants(path, self.root)

    def _inside(self, path: str) -> bool:
        return is_under(path, self.root)

    def _visible_dir(self, path: str) -> bool:
        return self._inside(path) and not self.filter.excluded_path(path, self.root)

    def on_created(self, event: FileSystemEvent) -> None:
        path = _text(event.src_path)
        if isinstance(event, DirCreatedEvent):
            # Files copied in before the watch on the new folder existed raise no events of their own.
            if self._visible_dir(path):
                self.changes.put(Change(ChangeKind.RESCAN, path, is_dir=True))
        elif isinstance(event, FileCreatedEvent) and self._wanted(path):
            # A new file (maybe moved in from outside over an indexed one): its bytes are new to us.
            self.changes.put(Change(ChangeKind.UPSERT, path, recheck=True))

    def on_modified(self, event: FileSystemEvent) -> None:
        path = _text(event.src_path)
        if isinstance(event, FileModifiedEvent) and self._wanted(path):
            self.changes.put(Change(ChangeKind.UPSERT, path))

    def on_attrib(self, event: FileSystemEvent) -> None:
        """chmod, chown, touch: a file that failed with 'permission denied' may be readable now."""
        path = _text(event.src_path)
        if not event.is_directory and self._wanted(path):
            self.changes.put(Change(ChangeKind.UPSERT, path))

    def on_closed(self, event: FileSystemEvent) -> None:
        path = _text(event.src_path)
        if isinstance(event, FileClosedEvent) and self._wanted(path):
            self.changes.put(Change(ChangeKind.UPSERT, path))

    def on_deleted(self, event: FileSystemEvent) -> None:
        path = _text(event.src_path)
        if isinstance(event, DirDeletedEvent):
            if self._inside(path) and path != self.root:
                self.changes.put(Change(ChangeKind.DELETE, path, is_dir=True))
        elif isinstance(event, FileDeletedEvent) and self.filter.is_image_name(path) and self._inside(path):
            self.changes.put(Change(ChangeKind.DELETE, path))

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_synthetic:
            # watchdog walks a folder moved inside the watch and reports each file in it too: the folder's
            # own move already carries their rows, and the worker walks the folder for anything else.
            return
        src, dest = _text(event.src_path), _text(event.dest_path)
        is_dir = isinstance(event, DirMovedEvent)
        if not is_dir and not isinstance(event, FileMovedEvent):
            return
        dest_ok = self._visible_dir(dest) if is_dir else self._wanted(dest)
        src_ok = self._inside(src) and (is_dir or self.filter.is_image_name(src))
        if dest_ok and self._inside(src):
            # Whatever the source's name (x.jpg.crdownload, .photo.jpg, .staging/x.jpg): the catalog knows
            # whether it was indexed, and the worker treats a move from an unknown source as a write.
            self.changes.put(Change(ChangeKind.MOVE, src, dest=dest, is_dir=is_dir))
        elif dest_ok:  # moved in from outside
            kind = ChangeKind.RESCAN if is_dir else ChangeKind.UPSERT
            self.changes.put(Change(kind, dest, is_dir=is_dir))
        elif src_ok:  # moved out, or renamed to an excluded name
            self.changes.put(Change(ChangeKind.DELETE, src, is_dir=is_dir))


@dataclass
class WatchedRoot:
    path: str
    mode: str  # "inotify", "polling" or "missing"
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None  # the folder's device and inode when its watch started


class OverflowListener(logging.Handler):
    """watchdog reports a kernel queue overflow only in its log; hear it and ask for a rescan.

    watchdog 7.1 is the first release that reads IN_Q_OVERFLOW at all (before, the kernel's overflow
    event, which has no watch descriptor, was dropped unseen): hence the floor in pyproject.toml.
    It logs "Inotify queue overflowed; ..." from watchdog.observers.inotify_c.
    """

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("watchdog.observers.inotify") and "overflow" in record.getMessage().lower():
            self.on_overflow()


class Watcher:
    """One observer per root: inotify where possible, polling where the watch limit says no."""

    def __init__(
        self,
        roots: Sequence[str],
        path_filter: PathFilter,
        changes: queue.Queue[Change],
        polling: str = "auto",
        follow_symlinks: bool = False,
        observer_factory: Callable[[], BaseObserver] = Observer,
    ) -> None:
        self.roots = {root: WatchedRoot(root, "missing") for root in roots}
        self.filter = path_filter
        self.changes = changes
        self.polling = polling
        self.follow_symlinks = follow_symlinks
        self.observer_factory = observer_factory
        self._overflow = OverflowListener(self._on_overflow)
        logging.getLogger("watchdog").addHandler(self._overflow)

    def _on_overflow(self) -> None:
        log.warning("filesystem events were lost (inotify queue overflow); rescanning the watched folders")
        self.changes.put(Change(ChangeKind.RESCAN, ""))

    def start(self) -> None:
        for root in self.roots:
            self.ensure_watching(root)

    def ensure_watching(self, root: str) -> bool:
        """Start watching root if it exists and is not yet watched; True if it just started."""
        watched = self.roots[root]
        if watched.observer is not None and watched.observer.is_alive():
            return False
        if not os.path.isdir(root):
            watched.mode = "missing"
            return False
        handler = ImageHandler(root, self.filter, self.changes)
        watched.identity = folder_identity(root)  # before the watch: a change in between is caught next check
        if self.polling != "always":
            observer = self.observer_factory()
            try:
                observer.schedule(
                    handler, root, recursive=True, follow_symlink=self.follow_symlinks, event_filter=HANDLED_EVENTS
                )
                observer.start()
            except OSError as exc:
                self._stop_observer(observer)
                if exc.errno not in (errno.ENOSPC, errno.EMFILE) or self.polling == "never":
                    raise
                log.warning(INOTIFY_LIMIT_HINT.format(root=display_path(root)))
            else:
                # watchdog silently skips the subfolders the kernel refuses to watch: check there was room.
                if self.polling == "never" or not watch_limit_reached(root):
                    watched.observer, watched.mode = observer, "inotify"
                    return True
                self._stop_observer(observer)
                log.warning(INOTIFY_LIMIT_HINT.format(root=display_path(root)))
        observer = PollingObserver(timeout=POLL_INTERVAL)
        observer.schedule(
            handler, root, recursive=True, follow_symlink=self.follow_symlinks, event_filter=HANDLED_EVENTS
        )
        observer.start()
        watched.observer, watched.mode = observer, "polling"
        return True

    @staticmethod
    def _intact(watched: WatchedRoot) -> bool:
        """Is the folder at the root's path still the one its observer watches, and is the watch running?

        An inotify watch follows its folder: after `mv Pictures Pictures-2023 && mkdir Pictures` it
        watches Pictures-2023. A deleted root stops its own watch (watchdog ends the emitter).
        """
        observer = watched.observer
        if observer is None or not observer.is_alive():
            return False
        if not all(emitter.is_alive() for emitter in list(observer.emitters)):
            return False
        return folder_identity(watched.path) == watched.identity

    def roots_changed(self) -> bool:
        """A cheap look (one stat per root): was a root replaced, deleted, or did a missing one appear?"""
        for watched in self.roots.values():
            if watched.mode == "missing":
                if os.path.isdir(watched.path):
                    return True
            elif not self._intact(watched):
                return True
        return False

    def check_roots(self) -> list[str]:
        """Notice roots that vanished (unmounted), were replaced, came back or outgrew the watch limit.

        Returns the roots to reconcile: those watched anew.
        """
        back = []
        for root, watched in self.roots.items():
            alive = watched.observer is not None and watched.observer.is_alive()
            if watched.mode != "missing" and alive and os.path.isdir(root) and not self._intact(watched):
                log.warning("watched folder %s was replaced; watching the new one", display_path(root))
                self._stop_observer(watched.observer)
                watched.observer, watched.mode = None, "missing"
                if self.ensure_watching(root):
                    back.append(root)
                continue
            if watched.mode == "inotify" and alive and self.polling != "never" and watch_limit_reached(root):
                # Folders made since the limit was hit are not watched: poll instead, and rescan for what was missed.
                self._stop_observer(watched.observer)
                watched.observer, watched.mode = None, "missing"
                if self.ensure_watching(root):
                    back.append(root)
                continue
            if watched.mode != "missing" and not self._intact(watched):
                log.warning("watched folder %s is gone or its watch stopped; waiting for it", display_path(root))
                self._stop_observer(watched.observer)
                watched.observer, watched.mode = None, "missing"
            if watched.mode == "missing" and os.path.isdir(root) and self.ensure_watching(root):
                log.info("watched folder %s is back", display_path(root))
                back.append(root)
        return back

    def modes(self) -> list[dict[str, str]]:
        """How each root is watched, checked now: "replaced" until a new folder at its path is watched."""
        modes = []
        for watched in self.roots.values():
            mode = watched.mode
            if mode != "missing" and not self._intact(watched):
                mode = "replaced" if os.path.isdir(watched.path) else "missing"
            modes.append({"path": watched.path, "mode": mode})
        return modes

    def orphan_grace(self, settle_seconds: float) -> float:
        """How long both halves of a move may take to arrive: polling sees each root only every POLL_INTERVAL."""
        polled = any(w.mode == "polling" for w in self.roots.values())
        return settle_seconds + 2.0 + (POLL_INTERVAL if polled else 0.0)

    @staticmethod
    def _stop_observer(observer: BaseObserver | None) -> None:
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)
        except (RuntimeError, OSError):
            pass

    def stop(self) -> None:
        logging.getLogger("watchdog").removeHandler(self._overflow)
        for watched in self.roots.values():
            self._stop_observer(watched.observer)
            watched.observer = None
