"""Walk the watched folders: which names are looked at (and indexed), which are excluded, and what is on disk now."""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

from ..errors import display_path
from ..filetypes import IMAGE_EXTENSIONS, WATCHED_EXTENSIONS, extension
from ..store.records import FileStat
from ..verbosity import DETAIL
from .pool import Stopped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathFilter:
    """Decides which names imgd looks at; shared by the scanner and the watcher."""

    excludes: tuple[str, ...]
    extensions: tuple[str, ...] = WATCHED_EXTENSIONS  # what is indexed, and videos as live photos' halves
    indexed: tuple[str, ...] = IMAGE_EXTENSIONS  # what is embedded when it stands alone

    @cached_property
    def _name_pattern(self) -> re.Pattern[str] | None:
        """The name patterns as one regular expression: a walk asks it of every name, once."""
        names = [fnmatch.translate(pattern.lower()) for pattern in self.excludes if "/" not in pattern]
        return re.compile("|".join(f"(?:{name})" for name in names)) if names else None

    @cached_property
    def _watched(self) -> frozenset[str]:
        return frozenset(self.extensions)

    @cached_property
    def _indexed(self) -> frozenset[str]:
        return frozenset(self.indexed)

    def excluded_name(self, name: str) -> bool:
        pattern = self._name_pattern
        return pattern is not None and pattern.match(name.lower()) is not None

    def excluded_path(self, path: str, root: str) -> bool:
        """True if any component below the root, or the whole relative path, is excluded."""
        rel = os.path.relpath(path, root)
        if rel.startswith(os.pardir):
            return True
        if any(self.excluded_name(part) for part in rel.split(os.sep) if part not in ("", ".")):
            return True
        return any(fnmatch.fnmatchcase(rel, p) for p in self.excludes if "/" in p)

    def is_image_name(self, name: str) -> bool:
        """Is this a name imgd looks at: one it indexes, or the other half of a photo?"""
        return extension(name) in self._watched

    def is_indexed_name(self, name: str) -> bool:
        """Is this a name imgd embeds when no photo beside it claims it (a lone video is not, here)?"""
        return extension(name) in self._indexed

    def wants(self, path: str, root: str) -> bool:
        return self.is_image_name(path) and not self.excluded_path(path, root)


def scan(
    root: str,
    path_filter: PathFilter,
    follow_symlinks: bool = False,
    on_error: Callable[[str, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[FileStat]:
    """Yield every wanted regular file below root; unreadable folders are reported, never fatal.

    should_stop is asked before each folder: the walk of a million files takes longer than a SIGTERM may,
    and it raises Stopped rather than end early (a walk cut short would read as files deleted)."""
    path_patterns = any("/" in pattern for pattern in path_filter.excludes)
    excluded, watched = path_filter.excluded_name, path_filter._watched
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        if should_stop is not None and should_stop():
            raise Stopped
        try:
            info = os.stat(folder)
            key = (info.st_dev, info.st_ino)
            if key in seen_dirs:  # a symlink loop, when following links
                continue
            seen_dirs.add(key)
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        except OSError as exc:
            if on_error:
                on_error(folder, f"cannot list folder ({exc.strerror})")
            log.warning("skipping %s: cannot list folder (%s)", display_path(folder), exc.strerror)
            continue
        for entry in entries:
            name = entry.name
            if excluded(name):
                log.log(DETAIL, "excluded: %s", display_path(entry.path))
                continue
            try:
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    stack.append(entry.path)
                    continue
                if extension(name) not in watched:
                    continue
                if entry.is_symlink() and not follow_symlinks:
                    continue
                st = entry.stat(follow_symlinks=follow_symlinks)
            except OSError:
                continue  # vanished, or a dangling/looping link
            if stat.S_ISREG(st.st_mode) and not (path_patterns and path_filter.excluded_path(entry.path, root)):
                yield FileStat(entry.path, st.st_size, st.st_mtime_ns)


def through_link(path: str, root: str) -> bool:
    """Is path, or a folder between root and it, a symbolic link?"""
    while len(path) > len(root):
        if os.path.islink(path):
            return True
        path = os.path.dirname(path)
    return False


def stat_file(path: str, follow_symlinks: bool = False) -> FileStat | None:
    """The FileStat of a regular file, or None if it is gone or is not one."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileStat(path, st.st_size, st.st_mtime_ns)
