"""The engine: keeps catalog and index in step with the disk. No threads of its own, no printing.

`Engine` is the single writer used by `imgd index` and by the daemon's worker; queries are answered
by `query.Searcher` from any thread with its own read-only catalog connections.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path

import numpy as np

from ..config import Config
from ..embedders import Embedder
from ..errors import display_path
from ..paths import is_under
from ..store import places
from ..store.catalog import Catalog, ThreadReaders
from ..store.index import VectorIndex
from ..store.records import FileRecord, FileStat, IndexSummary
from ..verbosity import DETAIL
from . import video
from .backfill import MediaBackfill
from .events import EventSource
from .loading import _Loaded, load_file
from .modelchange import ModelChange
from .orphans import OrphanHold, _Released
from .outcomes import Outcomes
from .pairing import Pairing
from .pool import Stopped, bounded_map
from .scanner import PathFilter, scan, stat_file, through_link
from .switch import ModelSwitch
from .wordspass import WordsPass

log = logging.getLogger(__name__)

FIRST_BATCH = 8  # images in the first forward pass of a run; later ones use config.batch_size

ProgressFn = Callable[[int], None]
Item = tuple[FileStat, "FileRecord | None"]
# (photos, videos, known) -> the loaded files with their vectors, in any order (cluster.Cluster).
RemoteLoads = Callable[[list[Item], list[Item], Callable[[str], bool]], Iterator["_Loaded"]]


class Engine(MediaBackfill, WordsPass, ModelSwitch, EventSource, Pairing, OrphanHold, Outcomes):
    """Reconcile, ingest, move and forget files; the catalog is written first, the index follows."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        index: VectorIndex,
        embedder: Embedder,
        clock: Callable[[], float] = time.time,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.index = index
        self.embedder = embedder
        self.clock = clock
        self.filter = PathFilter(config.excludes)
        self.should_stop = should_stop  # the daemon's worker stop flag: long runs end at the next file
        # Seconds a content stays after its last path went away. A move the watcher could not pair (a
        # delete here, a create there, in either order) then finds its bytes known and keeps its vector.
        # 0 drops it at once, as a one-shot `imgd index` wants; the daemon's worker sets it.
        self.orphan_grace = 0.0
        self.monotonic: Callable[[], float] = time.monotonic
        self._released: dict[int, _Released] = {}  # in the order they were first held, the oldest first
        self._expire_at = 0.0  # removals drop held contents no sooner than this (monotonic), in batches
        self.missing_roots: set[str] = set()  # roots the last reconcile found missing or empty
        self._readers = ThreadReaders(catalog.path)  # the decode threads' own connections
        self._media_after = 0  # backfill_media's place in the catalog: contents up to here were tried
        self._pool = ThreadPoolExecutor(max_workers=config.threads(), thread_name_prefix="imgd-decode")
        self.change: ModelChange | None = None  # a model change under way: new files are embedded by both
        # Set by cluster.py for `imgd index --cluster`: reads and embeds new files on a Ray cluster's
        # workers in place of the decode threads and the local model (not during a model change).
        self.remote: RemoteLoads | None = None

    def close(self) -> None:
        self.close_words_child()  # first: a picture in its hand fails at once rather than holding the pool
        self._pool.shutdown(wait=True)

    # -- helpers ----------------------------------------------------------------------------

    def root_of(self, path: str, roots: Sequence[str]) -> str | None:
        """The first of roots that path is in, if any."""
        return next((root for root in roots if is_under(path, root)), None)

    @property
    def changing(self) -> bool:
        """Is a model change under way: images re-embedded beside the live vectors?"""
        return self.change is not None

    def _known(self, digest: str) -> bool:
        """Does the catalog already hold this content? Called from decode threads."""
        return self._readers.get().content_id(digest) is not None

    def _load(self, item: tuple[FileStat, FileRecord | None]) -> _Loaded:
        nxt = self.change.embedder if self.change is not None else None
        return load_file(item[0], item[1], self.config, self.embedder, nxt, self._known)

    # -- ingest -----------------------------------------------------------------------------

    def ingest(
        self,
        items: Iterable[tuple[FileStat, FileRecord | None]],
        gone_contents: dict[int, list[str]] | None = None,
        progress: ProgressFn | None = None,
    ) -> IndexSummary:
        """Read, hash, decode (in threads) and embed (in batches) new or changed files."""
        if self.change is not None and self.change.embedder is self.embedder:
            # `imgd index` changes models before it reconciles: the live vectors are still the old model's.
            raise RuntimeError("files cannot be indexed during a model change without the old model")
        summary = IndexSummary()
        gone_contents = gone_contents if gone_contents is not None else {}
        batch: list[_Loaded] = []
        cheap: list[_Loaded] = []
        window = max(self.config.batch_size * 2, self.config.threads() * 4)
        # A small first batch starts the model while the pool decodes the rest, instead of idling
        # until a full batch is decoded (~1 s at batch 32 on 2 cores).
        limit = min(FIRST_BATCH, self.config.batch_size)
        photos, videos = video.split(items)
        if self.remote is not None and self.change is None:  # a cluster's workers read and embed them
            loads = self.remote(photos, videos, self._known)
        else:  # videos after photos, fewer in flight: each holds up to video.MAX_FRAMES prepared frames
            loads = chain(
                bounded_map(self._pool, self._load, photos, window),
                bounded_map(self._pool, self._load, videos, self.config.threads()),
            )
        for loaded in loads:
            if self.should_stop():
                raise Stopped
            (batch if loaded.count else cheap).append(loaded)
            if sum(item.count for item in batch) >= limit or len(cheap) >= 512:
                self._commit(batch, cheap, gone_contents, summary)
                if progress:
                    progress(len(batch) + len(cheap))
                limit = self.config.batch_size if batch else limit
                batch, cheap = [], []
        if batch or cheap:
            self._commit(batch, cheap, gone_contents, summary)
            if progress:
                progress(len(batch) + len(cheap))
        return summary

    def _commit(
        self,
        batch: list[_Loaded],
        cheap: list[_Loaded],
        gone_contents: dict[int, list[str]],
        summary: IndexSummary,
    ) -> None:
        vectors = self._embed(batch) if batch else None
        change = self.change
        if change and batch:
            nexts = [i for item in batch for i in (item.frames.next_images if item.frames else [item.next_image])]
            next_vectors = change.embedder.encode_images(nexts)
        else:
            next_vectors = None
        new_ids: list[int] = []
        new_vectors: list[np.ndarray] = []
        retry: list[_Loaded] = []
        position = 0
        if any(item.meta is not None and item.meta.latitude is not None for item in batch):
            places.gazetteer()  # the city table loads once, before the write transaction holds the catalog
        with self.catalog.transaction():
            for item in batch:
                here, position = slice(position, position + item.count), position + item.count
                content_id = self.catalog.content_id(item.digest)
                if content_id is None and item.frames is not None:
                    keep = video.distinct(vectors[here])
                    times = [item.frames.times[i] for i in keep]
                    kept = vectors[here][keep]
                    kept_next = next_vectors[here][keep] if next_vectors is not None else None
                    content_id, vector_ids = self.catalog.add_video(
                        item.digest, kept, times, item.meta, item.frames.duration, kept_next
                    )
                    new_ids.extend(vector_ids)
                    new_vectors.append(kept)
                elif content_id is None:
                    content_id, vector_id = self.catalog.add_photo(
                        item.digest,
                        vectors[here.start],
                        item.width,
                        item.height,
                        item.meta,
                        next_vector=next_vectors[here.start] if next_vectors is not None else None,
                    )
                    new_ids.append(vector_id)
                    new_vectors.append(vectors[here.start][None, :])
                self._record(item, content_id, gone_contents, summary)
            for item in cheap:
                if item.error is not None:
                    self._record_failure(item, summary)
                    continue
                content_id = self.catalog.content_id(item.digest)
                if content_id is None:  # the known content went away meanwhile: decode it after all
                    retry.append(item)
                    continue
                self._record(item, content_id, gone_contents, summary)
            generation = self.catalog.generation
        if new_ids:
            self.index.add(np.asarray(new_ids, dtype=np.int64), np.vstack(new_vectors), generation)
        else:
            self.index.generation = generation
        self._flush_events()
        if retry:
            summary.merge(self.ingest([(item.stat, item.previous) for item in retry], gone_contents))

    def _embed(self, batch: list[_Loaded]) -> np.ndarray:
        """One row per picture of the batch: embedded here, or already by a cluster's workers."""
        if all(item.vectors is not None for item in batch):
            return np.vstack([item.vectors for item in batch])
        started = time.monotonic()
        images = [image for item in batch for image in (item.frames.images if item.frames else [item.image])]
        vectors = self.embedder.encode_images(images)
        seconds = time.monotonic() - started
        log.debug(  # a video's frames count one image each
            "embedded a batch of %d images in %.2fs (%.1f/s)",
            len(images),
            seconds,
            len(images) / max(seconds, 1e-9),
        )
        return vectors

    # -- reconcile --------------------------------------------------------------------------

    def reconcile(
        self,
        roots: Sequence[str | Path],
        progress: ProgressFn | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> IndexSummary:
        """Make the catalog match the disk under roots: the catch-up of `imgd index` and daemon start."""
        summary = IndexSummary()
        now = self.clock()
        roots = [os.path.abspath(os.fspath(r)) for r in roots]
        candidates: list[tuple[FileStat, FileRecord | None]] = []
        gone: list[FileRecord] = []
        for root in roots:
            if self._root_missing(root):
                self.missing_roots.add(root)
                with self.catalog.transaction():
                    marked = self.catalog.mark_missing_under(root, now)
                if marked:
                    log.warning(
                        "folder %s is missing or empty (unmounted?); keeping its %d entries as missing",
                        display_path(root),
                        marked,
                    )
                summary.missing += marked
                continue
            self.missing_roots.discard(root)
            with self.catalog.transaction():
                restored = self.catalog.restore_missing_under(root)
            if restored:
                log.info("folder %s is back; checking its %d files", display_path(root), restored)
            # Rows, not records: at a million files nearly every one is only compared (size, mtime_ns).
            known = self.catalog.file_rows_under(root)
            unchanged = 0
            per_file = log.isEnabledFor(logging.DEBUG)  # -vv only: -v would log a million lines per reconcile
            for stat in self.walk_pairs(root, known):  # companions' rows, if they had any, go with the gone
                if self.should_stop():
                    raise Stopped
                row = known.pop(stat.path, None)
                if row is not None and row[1] == stat.size and row[2] == stat.mtime_ns:
                    unchanged += 1  # the row's verdict stands, a failure included (FileRecord.unchanged)
                    if per_file:
                        log.debug("unchanged: %s", display_path(stat.path))
                    continue
                candidates.append((stat, self.catalog._record(row) if row is not None else None))
            summary.unchanged += unchanged
            log.log(DETAIL, "unchanged files under %s: %d", display_path(root), unchanged)
            gone.extend(map(self.catalog._record, known.values()))
        if on_total:
            on_total(len(candidates))
        # Contents held since a recent delete count as gone too: a file moved meanwhile is a move.
        gone_contents = {cid: list(entry.paths) for cid, entry in self._released.items() if entry.paths}
        released: dict[int, list[str]] = {}
        for record in gone:
            if record.content_id is not None:
                gone_contents.setdefault(record.content_id, []).append(record.path)
                released.setdefault(record.content_id, []).append(record.path)
        summary.merge(self.ingest(candidates, gone_contents, progress))
        moved_away = {record.path for record in gone} - {p for paths in gone_contents.values() for p in paths}
        with self.catalog.transaction():
            for record in gone:
                self.catalog.remove_file(record.path)
                if record.path not in moved_away or record.content_id is None:
                    summary.removed += 1
                    log.info("removed %s", display_path(record.path))
                    self._event("removed", record.path)
            expired = self.catalog.drop_expired_missing(now - self.config.missing_grace)
            if expired:
                log.info("dropped %d entries missing for longer than the grace period", expired)
                summary.removed += expired
        self._drop_orphans(released)
        summary.merge(self.release_failed(summary.failures))  # a photo that failed hides no RAW or video
        with self.catalog.transaction():
            self.catalog.record_event("last_reconcile")
        return summary

    def _root_missing(self, root: str) -> bool:
        """A root that is gone, or an empty folder where entries used to be, is an unmounted drive."""
        if not os.path.isdir(root):
            return True
        try:
            with os.scandir(root) as entries:
                if next(entries, None) is not None:
                    return False
        except OSError:
            return True
        return next(self.catalog.files_under(root), None) is not None

    # -- single changes (the daemon's worker) ---------------------------------------------

    def missing_root(self, path: str, roots: Sequence[str]) -> str | None:
        """The root of path if the last reconcile found it missing or empty: a file arriving there means it is back."""
        root = self.root_of(path, roots)
        return root if root in self.missing_roots else None

    def changed(self, paths: Iterable[str], roots: Sequence[str]) -> list[FileStat]:
        """What changed on disk at or below paths: the wanted files the catalog does not know as they are now.

        A folder is walked (one that appeared or moved in: its files are new unless a move carried their
        rows); a file gives itself at most. Paths outside the roots, excluded ones, and (unless
        follow_symlinks) those reached through a link give nothing. A failed row stands while its file
        is unchanged, as in reconcile.
        """
        follow = self.config.follow_symlinks
        found: list[FileStat] = []
        for path in paths:
            root = self.root_of(path, roots)
            if root is None or self.filter.excluded_path(path, root):
                continue
            if not follow and through_link(path, root):
                continue  # a link to a folder (maybe outside the roots): scanning it would follow it
            if os.path.isdir(path):
                # scan() matches path patterns against the folder walked; they are relative to the root.
                stats = [s for s in scan(path, self.filter, follow) if not self.filter.excluded_path(s.path, root)]
            else:
                stat = stat_file(path, follow) if self.filter.is_image_name(path) else None
                stats = [stat] if stat is not None else []
            for stat in stats:
                record = self.catalog.get_file(stat.path)
                if record is None or not record.unchanged(stat):
                    found.append(stat)
        return found

    def forget(self, paths: Iterable[str], folder: bool = False) -> int:
        """Drop paths (or whole folders) that left the disk; their contents are held for orphan_grace."""
        removed, paths = 0, list(paths)
        released: dict[int, list[str]] = {}
        with self.catalog.transaction():
            for path in paths:
                record = self.catalog.get_file(path)
                leaving = [record] if record else []
                if folder:
                    leaving.extend(self.catalog.files_under(path))
                for gone in leaving:
                    self._event("removed", gone.path)
                    if gone.content_id is not None:
                        released.setdefault(gone.content_id, []).append(gone.path)
                if self.catalog.remove_file(path):
                    removed += 1
                    log.info("removed %s", display_path(path))
                if folder:
                    count = self.catalog.remove_under(path)
                    self.catalog.drop_siblings_under(path)
                    if count:
                        log.info("removed %d files under %s", count, display_path(path))
                    removed += count
        self._drop_orphans(released, candidates=(), recheck_held=False)
        self.free_pairs([] if folder else paths)  # a photo gone: its RAW stands alone
        return removed

    def move(self, src: str, dest: str, is_dir: bool) -> int:
        """Rewrite paths for a rename; the content keeps its vector."""
        with self.catalog.transaction():
            # What a rename can release: the contents of files it replaces at dest, and of those it moves,
            # should their rows not arrive (the move itself costs as much as these lookups).
            touched = [
                *(self.catalog.files_under(dest) if is_dir else [self.catalog.get_file(dest)]),
                *(self.catalog.files_under(src) if is_dir else [self.catalog.get_file(src)]),
            ]
            candidates = [record.content_id for record in touched if record and record.content_id is not None]
            if is_dir:
                moved = self.catalog.move_under(src, dest)
                self.catalog.move_siblings_under(src, dest)  # pairs live in one folder: they move whole
            else:
                moved = int(self.catalog.move_file(src, dest))
        if moved:
            log.info("moved %s -> %s", display_path(src), display_path(dest))
            self._event("moved", dest, source=src, **({"folder": True} if is_dir else {}))
        self._drop_orphans(candidates=candidates)  # a rename over an existing file orphaned the old content
        self.free_pairs([] if is_dir else [src, dest])  # a rename may make or break a pair at either end
        return moved

    def upsert(
        self, paths: Iterable[str], progress: ProgressFn | None = None, recheck: Collection[str] = ()
    ) -> IndexSummary:
        """Look at files that were created or changed: embed new content, reuse known content.

        A path in recheck is read and hashed even when its size and mtime match its row: a file renamed
        over it from a name the catalog did not know has other bytes, whatever its size and mtime.
        """
        items: list[tuple[FileStat, FileRecord | None]] = []
        gone: list[str] = []
        paired, freed = self.settle_pairs(paths := list(paths), trying=paths)
        for path in dict.fromkeys([*paths, *freed]):
            stat = stat_file(path, self.config.follow_symlinks)
            record = self.catalog.get_file(path)
            if stat is None:
                if record is not None:
                    gone.append(path)
                continue
            # A failed file is tried again on any event: chmod or chown may have made it readable.
            if record is not None and record.unchanged(stat, indexed=True) and path not in recheck:
                continue
            if path in paired or not self.filter.is_indexed_name(path):
                continue  # listed through its photo, never embedded; or a video no photo claims
            items.append((stat, record))
        # Held contents count as gone: their bytes turning up here is a move the watcher could not pair.
        gone_contents = {cid: entry.paths for cid, entry in self._released.items() if entry.paths}
        summary = self.ingest(items, gone_contents, progress=progress)
        summary.merge(self.release_failed(summary.failures))  # a photo that failed hides no RAW or video
        if gone:
            summary.removed += self.forget(gone)
        # An edited file's old content may be unreferenced now.
        self._drop_orphans(candidates=[record.content_id for _, record in items if record and record.content_id])
        return summary

    def save_index(self) -> bool:
        """Persist the index if it changed; the catalog is already durable."""
        if not self.index.dirty:
            return False
        return self.index.save(self.config.index_path)
