"""The state folder as a whole: one writer lock, then catalog, model and index opened together."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..embedders import Embedder
from ..errors import CatalogBusy, CatalogError, ImgdError, ModelMismatch, display_path
from ..search.query import Searcher
from ..store.catalog import Catalog, ThreadReaders, same_model
from ..store.index import VectorIndex
from ..store.indexfile import discard_partial_saves

if TYPE_CHECKING:  # the ingest engine is imported by the writers that build one: a search never needs it
    from ..ingest.engine import Engine

log = logging.getLogger(__name__)


RUN = "imgd run"  # the commands that write the catalog, as the lock file names them
INDEX = "imgd index"


class WriterLock:
    """An flock on state_dir/writer.lock: `imgd index` and `imgd run` never write at once.

    The file holds the holder's pid and command, so a refused writer and `imgd status` can say who it is.
    """

    def __init__(self, path: Path, command: str = INDEX) -> None:
        self.path = path
        self.command = command  # RUN or INDEX: the command taking it
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid, holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise CatalogBusy(busy_message(self.path.parent, pid, holder, self.command)) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.command}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> tuple[str, str]:
    """(pid, command) as the holder wrote them; a lock file from before imgd named the command has only the pid."""
    pid, _, command = os.pread(fd, 256, 0).decode(errors="replace").strip().partition(" ")
    return pid or "?", command


def busy_message(state_dir: Path, pid: str, holder: str, command: str) -> str:
    """Why `command` cannot write the catalog that `holder` (pid) holds, worded for the command that was run."""
    if holder == RUN and command == RUN:
        return (
            f"an imgd daemon (pid {pid}) already serves the state folder {display_path(str(state_dir))}; "
            "stop it first, or give this one another --state-dir."
        )
    if holder == RUN:
        return (
            f"the catalog in {display_path(str(state_dir))} is being written by imgd (pid {pid}), the daemon, "
            "which indexes its folders itself; stop it first to run `imgd index` by hand."
        )
    if command == RUN:
        return (
            f"the catalog in {display_path(str(state_dir))} is being written by imgd (pid {pid}), "
            "an `imgd index`; start the daemon once it is done."
        )
    return (
        f"the catalog in {display_path(str(state_dir))} is being written by imgd (pid {pid}); "
        "wait for it to finish, then run `imgd index` again."
    )


def daemon_starting(config: Config) -> int | None:
    """The pid of an `imgd run` that holds the writer lock (while it prepares the model, before it answers)."""
    try:
        fd = os.open(config.lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pid, holder = _holder(fd)
            return int(pid) if holder == RUN and pid.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def set_aside(config: Config) -> Path | None:
    """Move a damaged catalog and its index out of the way, keeping them for the user to inspect."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved: Path | None = None
    for path in (config.catalog_path, Path(f"{config.catalog_path}-wal"), Path(f"{config.catalog_path}-shm")):
        if path.exists():
            target = path.with_name(f"{path.name}.broken-{stamp}")
            os.replace(path, target)
            moved = moved or target
    with contextlib.suppress(FileNotFoundError):
        config.index_path.unlink()
    return moved


@dataclass
class Library:
    """An opened state folder with the writer lock held."""

    config: Config
    lock: WriterLock
    catalog: Catalog
    index: VectorIndex
    engine: Engine

    @property
    def reembedding(self) -> bool:
        """A model change is under way."""
        return self.engine.change is not None

    def close(self) -> None:
        self.index.close()
        self.engine.close()
        self.catalog.close()
        self.lock.release()


def ensure_state_dir(config: Config) -> None:
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ImgdError(f"cannot create state folder {config.state_dir} ({exc.strerror}); set --state-dir.") from None


def open_library(
    config: Config,
    embedder: Embedder,
    reembed: bool = False,
    rebuild: bool = False,
    clock: Callable[[], float] = time.time,
    should_stop: Callable[[], bool] = lambda: False,
    background: bool = False,
    previous: Callable[[str], Embedder] | None = None,
    lock: WriterLock | None = None,
) -> Library:
    """Take the writer lock (`lock`: taken already), open the catalog bound to this model, load or rebuild the index.

    should_stop ends a long reconcile between files (the daemon's shutdown); background builds an IVF
    index in a thread so searches go on (the daemon), instead of before the next save (`imgd index`).

    When `embedder` is not the model of the catalog's vectors, the library starts (or goes on with) a
    model change (engine.change) if asked to: by `reembed`, by a change to this model already under
    way, or by `previous`, which loads the catalog's own model so searches and new files go on with it
    meanwhile (the daemon). Without `previous`, the change must finish before files are indexed.
    Asking for the catalog's model again gives a change under way up.
    """
    if lock is None:
        ensure_state_dir(config)
        lock = WriterLock(config.lock_path)
        lock.acquire()
    try:
        if rebuild:
            aside = set_aside(config)
            if aside:
                log.warning("set the old catalog aside as %s; indexing anew", aside)
        if discard_partial_saves(config.index_path):  # a SIGKILL or power cut interrupted a save
            log.info("removed the temporary file of an interrupted index save")
        catalog = Catalog(config.catalog_path)
        fingerprint = getattr(embedder, "fingerprint", None)
        serves = catalog.model_info() is None or catalog.model_matches(embedder.name, embedder.dim, fingerprint)
        if serves or not catalog.count_contents():
            pending = catalog.model_change()
            if pending is not None:
                dropped = catalog.cancel_model_change()
                log.warning(
                    "gave up the change to model %s (%d images re-embedded): model %s was asked for again",
                    display_path(pending[0]),
                    dropped,
                    display_path(embedder.name),
                )
            catalog.ensure_model(embedder.name, embedder.dim, fingerprint=fingerprint)
            current = embedder
            changing = False
        else:
            pending = catalog.model_change()
            going_on = pending is not None and same_model(pending, (embedder.name, embedder.dim, fingerprint))
            if not (reembed or going_on or previous is not None):
                raise ModelMismatch(catalog.mismatch_message(embedder.name, embedder.dim, fingerprint))
            current = _load_previous(catalog, embedder, previous) if previous is not None else embedder
            changing = True
        # The daemon answers at once without a usable index file: it is built on a thread while searches scan.
        readers = ThreadReaders(config.catalog_path) if background else None
        dim = catalog.model_info()[1]  # type: ignore[index]
        index = VectorIndex.load_verified(config.index_path, catalog, dim, readers, config.exact_limit)
        index.exact_limit = config.exact_limit
        index.background = background
        from ..ingest.engine import Engine

        engine = Engine(config, catalog, index, current, clock=clock, should_stop=should_stop)
        if changing:
            change = engine.begin_change(embedder)
            done, total = catalog.model_change_progress()
            log.warning(
                "changing model from %s to %s: %s %d images beside the old vectors (%d done); "
                "searches use %s until then",
                display_path(catalog.model_info()[0]),  # type: ignore[index]
                display_path(embedder.name),
                "going on re-embedding" if change.resumed_from else "re-embedding",
                total,
                done,
                "the old model" if previous is not None else "the old vectors",
            )
    except BaseException:
        lock.release()
        raise
    return Library(config, lock, catalog, index, engine)


def _load_previous(catalog: Catalog, embedder: Embedder, previous: Callable[[str], Embedder]) -> Embedder:
    """The catalog's own model, which answers searches and embeds new files until the change is done."""
    name, dim = catalog.model_info()  # type: ignore[misc]
    try:
        old = previous(name)
    except ImgdError as exc:
        raise ModelMismatch(
            f"the catalog's vectors were made with model {display_path(name)}, which cannot be loaded ({exc}); "
            f"to change to {display_path(embedder.name)} without it, run `imgd index --reembed DIR...` "
            "(searches wait until it is done), or make the old model available again."
        ) from None
    if not catalog.model_matches(old.name, old.dim, getattr(old, "fingerprint", None)):
        raise ModelMismatch(
            f"model {display_path(name)} now holds other weights than the catalog's vectors were made with; run "
            f"`imgd index --reembed DIR...` to change to {display_path(embedder.name)}, or put the old files back."
        )
    return old


def recorded_model(config: Config, target: bool = False) -> str | None:
    """The model the catalog was built with (with `target`: the one a change under way goes to), or
    None for a new or unreadable catalog."""
    if not config.catalog_path.exists():
        return None
    try:
        catalog = Catalog(config.catalog_path, readonly=True)
    except ImgdError:
        return None  # damaged: opening it for writing says so properly
    try:
        info = (target and catalog.model_change()) or catalog.model_info()
    except ImgdError:
        return None
    finally:
        catalog.close()
    return info[0] if info else None


def with_catalog_model(config: Config) -> Config:
    """The model named by --model, IMGD_MODEL or the config file; else the catalog's own (the one a model
    change under way goes to); else the default.

    So `imgd run` and `imgd index` after `imgd --model FOLDER index` need no --model, as search never did,
    and an interrupted change goes on.
    """
    if "model" in config.given:
        return config
    recorded = recorded_model(config, target=True)
    return dataclasses.replace(config, model=recorded) if recorded else config


def ignored_model(config: Config, named: str) -> str | None:
    """The catalog's model when `named` (a --model given to search) is another one, else None."""
    recorded = recorded_model(config)
    expanded = os.path.expanduser(named)
    key = str(Path(expanded).resolve()) if os.path.isdir(expanded) else named
    return recorded if recorded is not None and key != recorded else None


def open_searcher(config: Config, load_model: Callable[[str], Embedder]) -> Searcher:
    """The direct (daemon-less) path: read-only catalog, verified index, the catalog's own model."""
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        with catalog.snapshot():
            catalog.verify()
            info = catalog.model_info()
            if info is None:
                raise CatalogError("the catalog holds no images yet; run `imgd index DIR` or `imgd run DIR` first.")
            name, dim = info
            index = VectorIndex.load_verified(config.index_path, catalog, dim)
            recorded = catalog.get_meta("fingerprint")
    finally:
        catalog.close()

    def load() -> Embedder:
        embedder = load_model(name)
        fingerprint = getattr(embedder, "fingerprint", None)
        if recorded and fingerprint and fingerprint != recorded:
            raise ModelMismatch(
                f"model '{name}' now holds other weights than the catalog's vectors were made with; "
                "run `imgd index --reembed DIR...` to re-embed, or put the old model files back."
            )
        return embedder

    searcher = Searcher(config, index, load)
    index.exact_vectors = lambda ids: searcher.catalog.vectors_by_id(ids)  # the one it was loaded with is closed
    return searcher


def catalog_status(config: Config) -> dict[str, object]:
    """What the catalog holds, readable with or without a daemon."""
    starting = daemon_starting(config)
    daemon = {"running": False, **({"starting": True, "pid": starting} if starting else {})}
    status: dict[str, object] = {"daemon": daemon, "state_dir": str(config.state_dir)}
    index_size = config.index_path.stat().st_size if config.index_path.exists() else None
    if not config.catalog_path.exists():
        status.update(counts={"files": 0, "contents": 0, "failed": 0, "missing": 0}, disk={"index": index_size})
        return status
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        with catalog.snapshot():
            info = catalog.model_info()
            last_persist = config.index_path.stat().st_mtime if config.index_path.exists() else None
            status.update(
                counts=catalog.counts(),
                metadata=_metadata_status(catalog),
                **({"words": _words_status(catalog)} if config.words_enabled else {}),
                model={"name": info[0], "dim": info[1], **_change_status(catalog)} if info else None,
                last_reconcile=float(catalog.get_meta("last_reconcile") or 0) or None,
                last_persist=last_persist,
                disk={"catalog": catalog.size_on_disk(), "index": index_size},
            )
    finally:
        catalog.close()
    return status


def _metadata_status(catalog: Catalog) -> dict[str, object]:
    """Headers waiting to be read, the schema, and photos waiting for their place (only while some do)."""
    unplaced = catalog.places_backlog_count()
    found = {"pending": catalog.media_backlog_count(), "schema": catalog.schema_version}
    return {**found, "places_pending": unplaced} if unplaced else found


def _words_status(catalog: Catalog) -> dict[str, object]:
    """The words pass's progress: pictures read, those with words, those waiting (none while words are off)."""
    read, found = catalog.words_read_count()
    return {"read": read, "found": found, "pending": catalog.count_contents() - read}


def _change_status(catalog: Catalog) -> dict[str, object]:
    change = catalog.model_change()
    if change is None:
        return {}
    done, total = catalog.model_change_progress()
    return {"change": {"to": change[0], "dim": change[1], "done": done, "total": total}}


def failed_files(config: Config) -> list[tuple[str, str]]:
    if not config.catalog_path.exists():
        return []
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        return [(r.path, r.error or "") for r in catalog.failed_files()]
    finally:
        catalog.close()
