"""The words pass: after pictures are embedded, the words in them are read, newest first, in small batches.

A part of Engine (it inherits WordsPass), split out for size: it uses the engine's catalog, pool and
config. The daemon's worker runs a batch whenever no file waits, and a batch stops early when one
arrives, so a new picture is always embedded (searchable by meaning) before older ones are read.
`imgd index` reads the whole backlog with its progress bar. Only the first frame of a picture is
read; a content none of whose files can be decoded now is recorded as read, with no words. A video's
words come from at most VIDEO_WORD_FRAMES of its samples, spread over its length and decoded again at
their times: a bounded cost per video whatever its length (benchmarks/bench_video_words.py).

The words are read in a child process (wordschild.py), the daemon's and `imgd index`'s alike: one path,
and a file that crashes or hangs the OCR costs the child, not the process that asked. The pictures a
batch had in hand when its child ended are read again one at a time, each by a fresh child as needed:
one that ends the child again, alone, is recorded as read with no words (one log line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..config import Config
from ..errors import ImageReadError, display_path
from ..store.catalog import Catalog, ThreadReaders
from ..store.records import FileStat
from ..store.words import WordLine
from . import video
from .pool import Stopped, bounded_map
from .wordschild import ChildDied, WordsChild

log = logging.getLogger("imgd.daemon.ingest.engine")

WORDS_BATCH = 8  # pictures per batch: a few seconds at most, then new files get their turn again
# Frames read per video: each costs a seek and decode (~0.1 CPU-s at 1080p), the gate and, with words, a
# read (~0.6 CPU-s together, measured): about 6 CPU-s a video at most, a minute long or an hour.
VIDEO_WORD_FRAMES = 8


def spread(times: list[float], count: int = VIDEO_WORD_FRAMES) -> list[float]:
    """At most `count` of the times, evenly spaced from the first to the last."""
    if len(times) <= count:
        return list(times)
    return [times[round(i * (len(times) - 1) / (count - 1))] for i in range(count)] if count > 1 else times[:1]


class WordsPass:
    """Engine's words pass."""

    config: Config
    catalog: Catalog
    _pool: ThreadPoolExecutor
    _readers: ThreadReaders  # the pool threads' own catalog connections
    should_stop: Callable[[], bool]
    clock: Callable[[], float]
    _words_top: int | None = None  # contents above this id arrived after the pass began: read first
    _words_below: int = 0  # contents from here down were not visited yet
    _words_child: WordsChild | None = None  # the child process reading the words, started by the first batch
    words_rate: float = 0.0  # pictures per second over the last batch

    @property
    def words_child(self) -> WordsChild:
        if self._words_child is None:
            # One core per picture, as many pictures at once as the pool has threads; the runtime's choice
            # kept in the state folder. The child itself starts with the first picture asked of it.
            self._words_child = WordsChild(
                self.config.threads(),
                self.config.state_dir,
                self.config.words_runtime,
                should_stop=lambda: self.should_stop(),
            )
        return self._words_child

    def end_words_child(self, idle_for: float = 0.0) -> bool:
        """End the words child once it was asked nothing for `idle_for` seconds (0: now, unless it is reading);
        True when one was ended. The next batch starts another."""
        return self._words_child is not None and self._words_child.close_if_idle(idle_for)

    def close_words_child(self) -> None:
        """End the words child whatever it is doing (shutdown, `imgd index` done)."""
        if self._words_child is not None:
            self._words_child.close()

    def read_words(self, limit: int = WORDS_BATCH, interrupt: Callable[[], bool] = lambda: False) -> int:
        """Read the words of up to `limit` unread contents, newest first; returns how many were recorded.

        `interrupt` is asked between pictures: true ends the batch early (what was read is kept).
        0 means nothing is left, or words are turned off.
        """
        if not self.config.words_enabled:
            return 0
        backlog = self._words_next(limit)
        if not backlog:
            return 0
        started = time.monotonic()
        found: list[tuple[int, list[WordLine]]] = []
        again: list[tuple[int, list[FileStat]]] = []  # in hand when the child ended: read again, alone
        reader = self.words_child
        # As many pictures at once as the pool has threads (one per core); a batch cut short leaves
        # the pictures already under way to finish in the pool, and records only what it collected.
        window = max(1, self.config.threads())
        items = dict(backlog)
        for content_id, lines in bounded_map(self._pool, lambda item: self._read(reader, item), backlog, window):
            if self.should_stop():
                raise Stopped
            if lines is None:
                again.append((content_id, items[content_id]))
            else:
                found.append((content_id, lines))
            if interrupt():
                break
        if again:
            log.warning(
                "the words reader stopped (%s) with %d picture(s) in hand; reading them again one at a time",
                reader.last_end,
                len(again),
            )
        for content_id, stats in again:
            if self.should_stop():
                raise Stopped
            lines = self._read(reader, (content_id, stats))[1]
            if lines is None:
                log.warning(
                    "cannot read the words of %s: the words reader stopped on it alone (%s); recorded with no words",
                    display_path(stats[0].path),
                    reader.last_end,
                )
            found.append((content_id, lines or []))
        now = self.clock()
        with self.catalog.transaction():
            for content_id, lines in found:
                self.catalog.set_words(content_id, lines, self.config.words_min_confidence, now)
        # The older contents are visited downwards; the place moves only past what was read, so a batch
        # cut short by a new file leaves the rest of its contents to the next one.
        self._words_below = min([self._words_below, *(content_id for content_id, _ in found)])
        self.words_rate = len(found) / max(time.monotonic() - started, 1e-6)
        return len(found)

    def read_all_words(self, progress: Callable[[int], None] | None = None) -> int:
        """read_words until nothing is left (`imgd index`); returns how many contents were read."""
        done = 0
        while count := self.read_words():
            done += count
            if progress:
                progress(count)
        return done

    def _words_next(self, limit: int) -> list[tuple[int, list[FileStat]]]:
        """The next unread contents: any that arrived since the pass began, else the next older ones."""
        if self._words_top is None:
            self._words_top = self.catalog.newest_content()
            self._words_below = self._words_top + 1
        top = self._words_top
        assert top is not None
        newer = self.catalog.words_backlog(top, 2**62, limit)
        if newer:
            if len(newer) < limit:  # all of them: the next call needs to look above the newest only
                self._words_top = newer[0][0]
            return newer
        return self.catalog.words_backlog(0, min(self._words_below, top + 1), limit)

    def _read(self, reader: WordsChild, item: tuple[int, list[FileStat]]) -> tuple[int, list[WordLine] | None]:
        """The words in a content's picture, from the first of its files that can be read (none: no words);
        None when the child ended with it in hand."""
        content_id, stats = item
        for stat in stats:
            try:
                if video.is_video(stat.path):
                    times = spread([at for _, at in self._readers.get().frames_of(content_id)])
                    return content_id, reader.read_video(stat.path, times)
                return content_id, reader.read_file(stat.path, self.config.max_image_pixels)
            except ChildDied:
                return content_id, None
            except Stopped:
                raise
            except ImageReadError as exc:
                log.debug("cannot read the words of %s: %s", display_path(stat.path), exc.reason)
            except Exception as exc:  # noqa: BLE001 - one odd file is one line, never a failed step (a rescan)
                first = str(exc).split("\n")[0] or type(exc).__name__
                log.warning("cannot read the words of %s: %s", display_path(stat.path), first)
        return content_id, []
