"""The words pass: after pictures are embedded, the words in them are read, newest first, in small batches.

A part of Engine (it inherits WordsPass), split out for size: it uses the engine's catalog, pool and
config. The daemon's worker runs a batch whenever no file waits, and a batch stops early when one
arrives, so a new picture is always embedded (searchable by meaning) before older ones are read.
`imgd index` reads the whole backlog with its progress bar. Only the first frame of a picture is
read; a content none of whose files can be decoded now is recorded as read, with no words. A video's
words come from at most VIDEO_WORD_FRAMES of its samples, spread over its length and decoded again at
their times: a bounded cost per video whatever its length (benchmarks/bench_video_words.py).
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
from . import imaging, video
from .pool import Stopped, bounded_map
from .words import WordReader, read_file

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
    _word_reader: WordReader | None = None  # the OCR models, loaded by the first batch
    words_rate: float = 0.0  # pictures per second over the last batch

    @property
    def word_reader(self) -> WordReader:
        if self._word_reader is None:
            # One core per picture, a picture per pool thread; the runtime's choice kept in the state folder.
            self._word_reader = WordReader(
                threads=1, state_dir=self.config.state_dir, runtime=self.config.words_runtime
            )
        return self._word_reader

    def release_word_reader(self) -> None:
        """Free the OCR models (idle); the next batch loads them again."""
        self._word_reader = None

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
        reader = self.word_reader
        # As many pictures at once as the pool has threads (one per core); a batch cut short leaves
        # the pictures already under way to finish in the pool, and records only what it collected.
        window = max(1, self.config.threads())
        for content_id, lines in bounded_map(self._pool, lambda item: self._read(reader, item), backlog, window):
            if self.should_stop():
                raise Stopped
            found.append((content_id, lines))
            if interrupt():
                break
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

    def _read(self, reader: WordReader, item: tuple[int, list[FileStat]]) -> tuple[int, list[WordLine]]:
        """The words in a content's picture, from the first of its files that can be read (none: no words)."""
        content_id, stats = item
        for stat in stats:
            try:
                if video.is_video(stat.path):
                    return content_id, self._video_words(reader, content_id, stat.path)
                return content_id, read_file(
                    reader, stat.path, imaging.read_bytes(stat.path), self.config.max_image_pixels
                )
            except ImageReadError as exc:
                log.debug("cannot read the words of %s: %s", display_path(stat.path), exc.reason)
            except Exception as exc:  # noqa: BLE001 - one odd file is one line, never a failed step (a rescan)
                first = str(exc).split("\n")[0] or type(exc).__name__
                log.warning("cannot read the words of %s: %s", display_path(stat.path), first)
        return content_id, []

    def _video_words(self, reader: WordReader, content_id: int, path: str) -> list[WordLine]:
        """The words in a few of a video's samples, each line once (at its best confidence)."""
        times = [at for _, at in self._readers.get().frames_of(content_id)]
        lines: dict[str, WordLine] = {}
        for at in spread(times):
            image = video.frame_at(path, at)
            if not reader.has_words(image):
                continue
            for line in reader.read(image):
                if line.text not in lines or line.confidence > lines[line.text].confidence:
                    lines[line.text] = line
        return list(lines.values())
