"""Metadata for catalogs indexed before imgd kept it: headers read in the engine's pool, nothing embedded;
and places for catalogs kept from before places, named from the stored GPS, no file read.

A part of Engine (it inherits MediaBackfill), split out for size: it uses the engine's catalog and pool.
Both passes go in small batches that the daemon's worker runs only while no file waits, and both
keep their progress in the catalog (a row read or placed is not visited again), so a restart goes
on where the last run stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import ImageReadError, display_path
from ..store import places
from ..store.catalog import Catalog
from ..store.records import FileStat, ImageMeta
from . import imaging
from .pool import Stopped, bounded_map

log = logging.getLogger("imgd.daemon.ingest.engine")

MEDIA_BATCH = 32  # contents whose headers backfill_media reads per call (a few ms each)
PLACES_BATCH = 1000  # positions place_batch names per call: ~25 ms, so a new file waits no longer


class MediaBackfill:
    """Engine's metadata backfill."""

    catalog: Catalog
    _pool: ThreadPoolExecutor
    _media_after: int
    should_stop: Callable[[], bool]
    _places_after: int = -1  # place_batch's place in the catalog: rows up to here were named

    def backfill_media(self, limit: int = MEDIA_BATCH) -> int:
        """Read the headers of up to `limit` contents whose metadata is missing; returns how many were tried.

        No pixel is decoded and nothing is embedded. A content none of whose files can be read now
        keeps its row (and its vector) and is tried again by the next run; 0 means none is left.
        """
        backlog = self.catalog.media_backlog(self._media_after, limit)
        if not backlog:
            return 0
        found = list(bounded_map(self._pool, self._probe, backlog, window=max(limit, 1)))
        if any(meta is not None and meta.latitude is not None for _, meta in found):
            places.gazetteer()  # the city table loads before the write transaction, not inside it
        with self.catalog.transaction():
            for content_id, meta in found:
                if meta is not None:
                    self.catalog.set_media(content_id, meta)
        self._media_after = backlog[-1][0]
        return len(backlog)

    def backfill_all_media(self, progress: Callable[[int], None] | None = None) -> int:
        """backfill_media until nothing is left (`imgd index`); returns how many contents were tried."""
        tried = 0
        while count := self.backfill_media():
            if self.should_stop():
                raise Stopped
            tried += count
            if progress:
                progress(count)
        if tried:
            log.info("read the metadata of %d images indexed before imgd kept it", tried)
        return tried

    def place_batch(self, limit: int = PLACES_BATCH) -> int:
        """Name the places of up to `limit` photos whose stored position has none yet; returns how many.

        0 means none is left. The city table is loaded before the write transaction (half a second
        that would otherwise hold the catalog's lock).
        """
        backlog = self.catalog.places_backlog(self._places_after, limit)
        if not backlog:
            return 0
        ids, latitudes, longitudes = zip(*backlog, strict=True)
        named = places.name_all(latitudes, longitudes)
        with self.catalog.transaction():
            self.catalog.set_places(list(zip(ids, named, strict=True)))
        self._places_after = ids[-1]
        return len(backlog)

    def place_all(self, progress: Callable[[int], None] | None = None) -> int:
        """place_batch until nothing is left (`imgd index`); returns how many photos were placed."""
        placed = 0
        while count := self.place_batch():
            if self.should_stop():
                raise Stopped
            placed += count
            if progress:
                progress(count)
        if placed:
            log.info("named the places of %d photos from their stored GPS", placed)
        return placed

    def _probe(self, item: tuple[int, list[FileStat]]) -> tuple[int, ImageMeta | None]:
        content_id, stats = item
        for stat in stats:
            try:
                return content_id, imaging.probe(stat.path, (stat.size, stat.mtime_ns))
            except ImageReadError as exc:
                log.debug("cannot read metadata of %s: %s", display_path(stat.path), exc.reason)
        return content_id, None
