"""Thumbnails on demand: decoded upright in a bounded thread pool, cached on disk under a size cap.

One cache serves the terminal previews and the web gallery. A thumbnail is keyed by the file's path,
size, mtime, inode and device, so an edited or replaced file gets a new thumbnail without reading
the old one; stale entries simply age out. Hits touch their file's mtime, and when the folder grows
past its cap the least recently used files go first. Several processes may share the folder: every
write is a rename into place and eviction tolerates files that vanished under it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..config import Config
from ..errors import ImageReadError
from ..ingest import imaging, video

GRID_SIDE = 256  # the gallery's grid and the terminal previews
VIEW_SIDE = 1600  # the gallery's full view: sharp on a laptop screen, a fraction of a 12 MP file
SIDES = (GRID_SIDE, VIEW_SIDE)
FORMAT_VERSION = 1  # bump when the output changes, so old cache entries are never served
JPEG_QUALITY = 82
TOUCH_AFTER = 60.0  # seconds: a hit refreshes the LRU stamp at most this often, not on every view
EVICT_TO = 0.8  # after an eviction the cache holds at most this share of its cap
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Thumbnail:
    """JPEG bytes of one rendition and the cache file they came from (None when caching failed)."""

    data: bytes
    path: Path | None
    width: int
    height: int


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


class ThumbnailCache:
    """Make and keep thumbnails of catalog files; thread-safe, shared by any number of threads."""

    def __init__(
        self,
        folder: Path,
        max_bytes: int,
        max_pixels: int = 200_000_000,
        threads: int = 2,
        follow_symlinks: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.follow_symlinks = follow_symlinks
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="imgd-thumb")
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[Thumbnail]] = {}
        self._total: int | None = None  # bytes in the folder as we last counted them, None = not yet

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ThumbnailCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the public calls -------------------------------------------------------------------

    def get(self, path: str, side: int = GRID_SIDE, at: float = 0.0) -> Thumbnail:
        """The thumbnail of path (a video's frame at `at` seconds), from the cache or made now in the pool;
        raises ImageReadError."""
        return self.submit(path, side, at).result()

    def submit(self, path: str, side: int = GRID_SIDE, at: float = 0.0) -> Future[Thumbnail]:
        """A future thumbnail; concurrent requests for one file, size and time share one decode."""
        if side not in SIDES:
            raise ValueError(f"thumbnail side must be one of {SIDES}")
        at = at if video.is_video(path) else 0.0
        info = self._stat(path)
        key = self._key(path, info, side, at)
        hit = self._read_cached(key)
        if hit is not None:
            done: Future[Thumbnail] = Future()
            done.set_result(hit)
            return done
        with self._lock:
            future = self._inflight.get(key)
            started = future is None
            if started:
                future = self._pool.submit(self._make, path, side, at)
                self._inflight[key] = future
        if started:
            # Outside the lock: a job already done runs this callback at once, in this thread.
            future.add_done_callback(lambda done, key=key: self._forget(key, done))
        return future

    def cache_path(self, path: str, side: int = GRID_SIDE) -> Path:
        """Where the thumbnail of path as it is now would be kept."""
        return self._file(self._key(path, self._stat(path), side))

    def size_on_disk(self) -> int:
        return sum(size for _, size, _ in self._entries())

    # -- making one -------------------------------------------------------------------------

    def _forget(self, key: str, future: Future[Thumbnail]) -> None:
        with self._lock:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def _stat(self, path: str) -> os.stat_result:
        """The file's identity; a symbolic link is refused unless the config follows them."""
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                if not self.follow_symlinks:
                    raise ImageReadError(path, "is a symbolic link (follow_symlinks is off)")
                info = os.stat(path)
        except FileNotFoundError:
            raise ImageReadError(path, "file vanished") from None
        except OSError as exc:
            raise ImageReadError(path, f"cannot read ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(path, "not a regular file")
        return info

    @staticmethod
    def _key(path: str, info: os.stat_result, side: int, at: float = 0.0) -> str:
        identity = struct.pack(
            "<qqqqii", info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev, side, FORMAT_VERSION
        )
        if at:  # a video's later frame; a photo's key (and its cached thumbnail) stays as it was
            identity += struct.pack("<d", at)
        return hashlib.blake2b(os.fsencode(path) + b"\0" + identity, digest_size=16).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.jpg"

    def _read_cached(self, key: str) -> Thumbnail | None:
        file = self._file(key)
        try:
            with open(file, "rb") as fh:
                data = fh.read()
                mtime = os.fstat(fh.fileno()).st_mtime
        except OSError:
            return None
        if time.time() - mtime > TOUCH_AFTER:
            with contextlib.suppress(OSError):
                os.utime(file)  # the LRU stamp; atime is unreliable (noatime, relatime)
        try:
            width, height = jpeg_size(data)
        except (OSError, SyntaxError, ValueError):  # a damaged entry: make it again
            with contextlib.suppress(OSError):
                file.unlink()
            return None
        return Thumbnail(data, file, width, height)

    def _make(self, path: str, side: int, at: float = 0.0) -> Thumbnail:
        """Read, decode at reduced scale, orient, shrink, encode, keep. Runs in the pool."""
        if video.is_video(path):
            return self._make_frame(path, side, at)
        for _ in range(3):
            before = self._stat(path)
            data = imaging.read_bytes(path)
            after = self._stat(path)
            if self._key(path, before, side) == self._key(path, after, side):
                break  # the bytes we read belong to the identity we key them by
        else:
            raise ImageReadError(path, "file keeps changing; try again when it is written")
        if not data:
            raise ImageReadError(path, "empty file")
        key = self._key(path, after, side)
        image, _ = imaging.decode(path, data, self.max_pixels, min_side=side)
        image.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        out = buffer.getvalue()
        return Thumbnail(out, self._store(key, out), image.width, image.height)

    def _make_frame(self, path: str, side: int, at: float) -> Thumbnail:
        """A video's frame at `at` (FFmpeg reads the file itself: no whole-file read), shrunk and kept."""
        before = self._stat(path)
        image = video.frame_at(path, at)
        if self._key(path, before, side, at) != self._key(path, self._stat(path), side, at):
            raise ImageReadError(path, "file keeps changing; try again when it is written")
        image.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        out = buffer.getvalue()
        return Thumbnail(out, self._store(self._key(path, before, side, at), out), image.width, image.height)

    def _store(self, key: str, data: bytes) -> Path | None:
        """Write atomically; a read-only or full disk only costs the cache, never the thumbnail."""
        file = self._file(key)
        try:
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=TEMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return None
        self._account(len(data))
        return file

    # -- the size cap -----------------------------------------------------------------------

    def _entries(self) -> Iterator[tuple[Path, int, float]]:
        """Every cached file with its size and LRU stamp; stale temp files are removed on the way."""
        try:
            shards = list(os.scandir(self.folder))
        except OSError:
            return
        now = time.time()
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError), os.scandir(shard.path) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.name.startswith(TEMP_PREFIX):
                        if now - info.st_mtime > 3600:  # left by a killed process
                            with contextlib.suppress(OSError):
                                os.unlink(entry.path)
                        continue
                    yield Path(entry.path), info.st_size, info.st_mtime

    def _account(self, added: int) -> None:
        with self._lock:
            if self._total is None:
                self._total = self.size_on_disk()
            else:
                self._total += added
            over = self._total > self.max_bytes
        if over:
            self.evict()

    def evict(self) -> int:
        """Remove least recently used thumbnails until the cache is under EVICT_TO of its cap."""
        entries = sorted(self._entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * EVICT_TO)
        removed = 0
        for file, size, _ in entries:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
                removed += 1
            total -= size
        with self._lock:
            self._total = total
        return removed


def open_cache(config: Config, threads: int | None = None) -> ThumbnailCache:
    """The state folder's thumbnail cache, with the config's cap, pixel limit and link policy."""
    return ThumbnailCache(
        config.thumbnails_path,
        max_bytes=config.thumbnail_cache_mb << 20,
        max_pixels=config.max_image_pixels,
        threads=threads or min(4, config.threads()),
        follow_symlinks=config.follow_symlinks,
    )
