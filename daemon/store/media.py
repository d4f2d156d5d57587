"""The catalog's metadata rows (schema 2): what each content's bytes say, for filters and output.

One narrow `media` row per content (taken date, camera, lens, GPS, type, upright size), written at
embed time or read later by the backfill; a file's mtime stands in for a missing EXIF date.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime

from . import places
from .core import CatalogCore, path_key
from .migrations import UNPLACED
from .records import FileDetail, FileMeta, FileStat, ImageMeta

MEDIA_VERSION = 1  # what imaging.read_meta reads; a row below it is read again from its file's header


def _mtime_iso(mtime_ns: int) -> str | None:
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


class MediaRows(CatalogCore):
    """Reads and writes of the metadata rows, on the catalog's connection."""

    def state(self) -> tuple[int, int]:
        """(generation, media_generation) in one read: what a cached filter result depends on."""
        found = dict(self.conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'media_generation')"))
        return int(found.get("generation", 0)), int(found.get("media_generation", 0))

    def media_backlog_count(self) -> int | None:
        """Contents whose metadata is not read yet (None: the catalog predates metadata)."""
        if self.schema_version < 2:
            return None
        return self.conn.execute("SELECT count(*) FROM media WHERE version < ?", (MEDIA_VERSION,)).fetchone()[0]

    def places_backlog_count(self) -> int:
        """Photos with a stored position whose place is not named yet (the places pass's backlog)."""
        if self.schema_version < 2:
            return 0
        # "content_id >": the planner takes the backlog's own index (media_unplaced) then, not the position one.
        return self.conn.execute(
            f"SELECT count(*) FROM media WHERE content_id > ? AND {UNPLACED}", (-(2**62),)
        ).fetchone()[0]

    def places_backlog(self, after: int, limit: int) -> list[tuple[int, float, float]]:
        """The next (content id, latitude, longitude) after `after`, in id order, whose place is not named."""
        return self.conn.execute(
            f"SELECT content_id, latitude, longitude FROM media WHERE content_id > ? AND {UNPLACED} "
            "ORDER BY content_id LIMIT ?",
            (after, limit),
        ).fetchall()

    def set_places(self, named: list[tuple[int, places.Place | None]]) -> None:
        """Record the places the pass named ('' for a position that names none); filters may now select more."""
        self._bump_media_generation()
        self.conn.executemany(
            "UPDATE media SET city = ?, region = ?, country = ? WHERE content_id = ?",
            [
                (place.city, place.region, place.country_code, cid) if place else ("", None, None, cid)
                for cid, place in named
            ],
        )

    def _bump_media_generation(self) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('media_generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def media_backlog(self, after: int, limit: int) -> list[tuple[int, list[FileStat]]]:
        """The next contents (id > after, in id order) whose metadata is not read, with their live paths."""
        self._require_media()
        # "+version": walk the primary key from `after`; the version index would revisit every
        # unread row on each call, quadratic over a whole backfill.
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT content_id FROM media WHERE content_id > ? AND +version < ? ORDER BY content_id LIMIT ?",
                (after, MEDIA_VERSION, limit),
            )
        ]
        return self._live_files_of(ids)

    def media_for(self, paths: Iterable[str]) -> dict[str, FileMeta]:
        """Metadata of indexed paths, for output; paths that are not indexed (or failed) are left out."""
        self._require_media()
        keys = [path_key(p) for p in dict.fromkeys(paths)]
        found: dict[str, FileMeta] = {}
        for row in self._rows_for_ids(
            "SELECT f.path, f.size, f.mtime_ns, m.version, m.format, m.width, m.height, m.taken, m.taken_offset, "
            "m.make, m.model, m.lens, m.latitude, m.longitude, nullif(m.city, ''), m.region, m.country "
            "FROM files f JOIN media m ON m.content_id = f.content_id "
            "WHERE f.path IN ({}) AND f.status != 'failed'",
            keys,
        ):
            path, size, mtime_ns, _version, fmt, width, height, taken, offset, make, model, lens, lat, lon, *place = row
            if taken is not None:
                iso, source = taken.replace(" ", "T") + (offset or ""), "exif"
            else:
                iso, source = _mtime_iso(mtime_ns), "mtime"
            found[os.fsdecode(path)] = FileMeta(
                os.fsdecode(path), size, iso, source, width, height, fmt, make, model, lens, lat, lon, *place
            )
        return found

    def content_media(self, content_ids: Iterable[int]) -> dict[int, ImageMeta]:
        """What each content's bytes say (the file-independent part of the metadata)."""
        self._require_media()
        ids = list(dict.fromkeys(int(i) for i in content_ids))
        return {
            row[0]: ImageMeta(*row[1:])
            for row in self._rows_for_ids(
                "SELECT content_id, format, width, height, taken, taken_offset, make, model, lens, latitude, longitude "
                "FROM media WHERE content_id IN ({})",
                ids,
            )
        }

    def file_details(self, content_ids: Iterable[int]) -> dict[int, list[FileDetail]]:
        """Live files of each content with size, upright dimensions, capture time and camera (duplicate listings)."""
        ids = list(dict.fromkeys(int(i) for i in content_ids))
        found: dict[int, list[FileDetail]] = {i: [] for i in ids}
        if self.schema_version < 2:  # an old catalog opened read-only: no metadata yet
            sql = (
                "SELECT f.content_id, f.path, f.size, c.width, c.height, NULL, NULL, NULL FROM files f "
                "JOIN contents c ON c.id = f.content_id WHERE f.content_id IN ({}) AND +f.status = 'ok'"
            )
        else:
            sql = (
                "SELECT f.content_id, f.path, f.size, coalesce(m.width, c.width), coalesce(m.height, c.height), "
                "m.taken, m.make, m.model FROM files f JOIN contents c ON c.id = f.content_id "
                "LEFT JOIN media m ON m.content_id = f.content_id WHERE f.content_id IN ({}) AND +f.status = 'ok'"
            )
        for cid, path, size, width, height, taken, make, model in self._rows_for_ids(sql, ids):
            camera = " ".join(p for p in (make, model) if p) or None
            found[cid].append(FileDetail(os.fsdecode(path), cid, size, width, height, taken, camera))
        return found

    def recent(self, offset: int, limit: int) -> list[tuple[int, str, int, int, str]]:
        """The newest pictures first, (content id, path, width, height, time): by time taken, the file's mtime
        standing in, one path per content. The gallery opens on them; a page load, not per file or event."""
        if self.schema_version < 2:
            return []
        rows = self.conn.execute(
            "SELECT f.content_id, min(f.path), m.width, m.height, "
            "max(coalesce(m.taken, datetime(f.mtime_ns / 1000000000, 'unixepoch', 'localtime'))) AS at "
            "FROM files f JOIN media m ON m.content_id = f.content_id "
            "WHERE f.content_id IS NOT NULL AND f.status = 'ok' GROUP BY f.content_id "
            "ORDER BY at DESC, f.content_id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [(cid, os.fsdecode(path), width, height, at or "") for cid, path, width, height, at in rows]

    def capture_times(self) -> list[tuple[int, str, str]]:
        """(content id, EXIF capture time, camera) of every content that has a capture time: burst candidates."""
        if self.schema_version < 2:
            return []
        rows = self.conn.execute(
            "SELECT content_id, taken, coalesce(make, '') || ' ' || coalesce(model, '') FROM media "
            "WHERE taken IS NOT NULL"
        )
        return [(cid, taken, camera.strip()) for cid, taken, camera in rows]

    def set_media(self, content_id: int, meta: ImageMeta) -> None:
        """Record what a content's bytes say, and the place its GPS names; the index is unaffected, so the
        generation stays, but what a filter selects may change: media_generation counts that."""
        place = places.locate(meta.latitude, meta.longitude)
        # '' for a position that names no place: NULL would leave it waiting for the places pass.
        city = place.city if place else ("" if meta.latitude is not None and meta.longitude is not None else None)
        self._bump_media_generation()
        self.conn.execute(
            "UPDATE media SET version = ?, format = ?, width = ?, height = ?, taken = ?, taken_offset = ?, "
            "make = ?, model = ?, lens = ?, latitude = ?, longitude = ?, city = ?, region = ?, country = ? "
            "WHERE content_id = ?",
            (
                MEDIA_VERSION,
                meta.format,
                meta.width,
                meta.height,
                meta.taken,
                meta.taken_offset,
                meta.make,
                meta.model,
                meta.lens,
                meta.latitude,
                meta.longitude,
                city,
                place.region if place else None,
                place.country_code if place else None,
                content_id,
            ),
        )
