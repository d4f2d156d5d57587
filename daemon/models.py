"""Plain records passed between modules; no I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileStat:
    """What the scanner saw of one regular file."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileRecord:
    """One catalog row for a path: the content it points at, or why it failed."""

    path: str
    size: int
    mtime_ns: int
    content_id: int | None
    status: str  # "ok", "failed" or "missing"
    error: str | None = None


class ChangeKind(enum.Enum):
    """What the watcher saw happen to a path."""

    UPSERT = "upsert"  # created, modified or moved in: look at it once it settles
    DELETE = "delete"  # gone (a file or a whole folder)
    MOVE = "move"  # renamed within the watched folders: rewrite paths, never re-embed
    RESCAN = "rescan"  # events may have been lost: reconcile this folder with the disk


@dataclass(frozen=True)
class Change:
    """One item on the watcher -> worker queue."""

    kind: ChangeKind
    path: str
    dest: str | None = None
    is_dir: bool = False


@dataclass
class IndexSummary:
    """Counts of what one reconcile/ingest did, for the summary line and status."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0
    unchanged: int = 0
    missing: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: IndexSummary) -> None:
        for name in ("added", "updated", "moved", "removed", "failed", "unchanged", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.moved or self.removed)
