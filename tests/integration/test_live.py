"""The daemon's parts running in-process on real folders: real watchdog observers, the real worker
thread, the real catalog and index. Faster than an `imgd run` subprocess, and the place to count
what the daemon did (reads, embeddings) rather than only what it ended with.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import picture, write_image
from daemonkit import wait_until
from imgd.daemon.ingest import imaging, watcher
from imgd.daemon.service import run as service
from imgd.daemon.service.run import Daemon
from imgd.daemon.store.catalog import Catalog


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()


def jpeg(seed: int, size: tuple[int, int] = (400, 300)) -> bytes:
    import io

    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class Live:
    """A Daemon built as `imgd run` builds it, its watcher, worker and service loop running in threads."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.loop_code: int | None = None
        self._loop: threading.Thread | None = None

    def start(self) -> Live:
        self.daemon.watcher.start()
        self.daemon.worker.start(initial_reconcile=True)

        def loop() -> None:
            self.loop_code = self.daemon._loop()

        self._loop = threading.Thread(target=loop, name="test-service-loop", daemon=True)
        self._loop.start()
        return self

    def stop(self) -> None:
        self.daemon.stop_event.set()
        if self._loop is not None:
            self._loop.join(10)
        self.daemon.shutdown()

    def idle(self) -> bool:
        worker = self.daemon.worker
        return worker.idle.is_set() and not worker.pending and worker.changes.empty() and not worker.rescans

    def wait_idle(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.idle() and (time.sleep(0.3) or self.idle()), timeout=timeout, what="idle")

    def reader(self) -> Catalog:
        return Catalog(self.daemon.config.catalog_path, readonly=True)

    def content(self, path: Path) -> tuple[int | None, str | None] | None:
        """(content id, hash) the catalog holds for path, or None."""
        catalog = self.reader()
        try:
            record = catalog.get_file(str(path))
            if record is None:
                return None
            row = catalog.conn.execute("SELECT hash FROM contents WHERE id = ?", (record.content_id,)).fetchone()
            return record.content_id, row[0] if row else None
        finally:
            catalog.close()

    def last_reconcile(self) -> float:
        catalog = self.reader()
        try:
            return float(catalog.get_meta("last_reconcile") or 0)
        finally:
            catalog.close()


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    folder = tmp_path / "pics"
    folder.mkdir()
    return folder


@pytest.fixture
def live(make_config, embedder) -> Iterator[Callable[..., Live]]:
    started: list[Live] = []

    def factory(roots: list[Path], **config: Any) -> Live:
        values = {"settle_seconds": 0.5, "persist_interval": 3600.0, **config}
        running = Live(Daemon(make_config(**values), [str(r) for r in roots], embedder))
        started.append(running)
        return running.start()

    yield factory
    for running in started:
        running.stop()


@pytest.fixture
def embeddings(embedder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images per forward pass, from now on."""
    calls: list[int] = []
    real = embedder.encode_images
    monkeypatch.setattr(embedder, "encode_images", lambda images: calls.append(len(images)) or real(images))
    return calls


# -- renames and settling -------------------------------------------------------------------


def test_a_renamed_file_keeps_its_vector_and_is_never_re_embedded(live, pics, embedder, monkeypatch):
    write_image(pics / "a.jpg", seed=1)
    write_image(pics / "b.jpg", seed=2)
    running = live([pics])
    running.wait_idle()
    before = running.content(pics / "a.jpg")
    assert before is not None
    encoded: list[int] = []
    real = embedder.encode_images
    monkeypatch.setattr(embedder, "encode_images", lambda images: encoded.append(len(images)) or real(images))

    os.rename(pics / "a.jpg", pics / "renamed.jpg")
    wait_until(lambda: running.content(pics / "renamed.jpg") is not None, what="the rename")
    running.wait_idle()

    assert running.content(pics / "renamed.jpg") == before, "a renamed file keeps its content id"
    assert running.content(pics / "a.jpg") is None
    assert encoded == [], "a single-file rename must not embed anything"


def test_a_folder_moved_out_and_back_is_never_logged_as_moved_onto_itself(live, tmp_path, pics, embeddings, caplog):
    """A subfolder taken out of the library and put back soon after: its files are back, not `moved A -> A`."""
    write_image(pics / "sub" / "a.jpg", seed=11)
    running = live([pics])
    running.wait_idle()
    kept = running.content(pics / "sub" / "a.jpg")
    embeddings.clear()

    with caplog.at_level(logging.INFO, logger="imgd"):
        shutil.move(pics / "sub", tmp_path / "away")
        wait_until(lambda: running.content(pics / "sub" / "a.jpg") is None, timeout=30, what="the folder gone")
        shutil.move(tmp_path / "away", pics / "sub")  # within the orphan grace: the content is still held
        wait_until(lambda: running.content(pics / "sub" / "a.jpg") is not None, timeout=30, what="the folder back")
        running.wait_idle()

    assert running.content(pics / "sub" / "a.jpg") == kept and embeddings == [], "the held content is reused"
    lines = [r.getMessage() for r in caplog.records if str(pics / "sub" / "a.jpg") in r.getMessage()]
    assert not [line for line in lines if line.startswith("moved")], lines
    assert lines[-1] == f"added {pics / 'sub' / 'a.jpg'} (bytes already indexed, not embedded)", lines


def test_a_moved_folder_reads_none_of_its_files_again(live, pics, monkeypatch):
    """Issue 21: watchdog reports each file of a folder moved inside the watch as a move of its own after the
    folder's; taken at its word each became a write to settle and hash (a 10k-file `mv` re-read 10k files)."""
    for seed in range(12):
        write_image(pics / "trip" / "day" / f"{seed}.jpg", seed=seed, size=(40, 30))
    running = live([pics])
    running.wait_idle()
    before = {seed: running.content(pics / "trip" / "day" / f"{seed}.jpg") for seed in range(12)}
    reads: list[str] = []
    real_read = imaging.read_bytes
    monkeypatch.setattr(imaging, "read_bytes", lambda path: reads.append(path) or real_read(path))

    os.rename(pics / "trip", pics / "2024 trip")
    wait_until(lambda: running.content(pics / "2024 trip" / "day" / "11.jpg") is not None, what="the move")
    time.sleep(1.0)  # past the settle time: a file taken for a write would be read by now
    running.wait_idle()

    assert {seed: running.content(pics / "2024 trip" / "day" / f"{seed}.jpg") for seed in range(12)} == before
    assert running.content(pics / "trip" / "day" / "0.jpg") is None
    assert reads == [], "a folder move reads no file"


@pytest.mark.slow
def test_a_slowly_written_file_is_read_once_after_it_settles(live, pics, monkeypatch):
    # The words pass reads the file once more after it is embedded: what is counted here is embedding.
    running = live([pics], settle_seconds=0.8, words_enabled=False)
    running.wait_idle()
    reads: list[str] = []
    real_read = imaging.read_bytes
    monkeypatch.setattr(imaging, "read_bytes", lambda path: reads.append(path) or real_read(path))

    slow = pics / "slow.jpg"
    data = jpeg(3)
    step = len(data) // 8 + 1
    with open(slow, "wb") as fh:  # eight writes 0.3 s apart: never quiet for the 0.8 s settle time
        for start in range(0, len(data), step):
            fh.write(data[start : start + step])
            fh.flush()
            time.sleep(0.3)
    wait_until(lambda: (running.content(slow) or (None, None))[1] == digest(slow), what="the complete file")
    running.wait_idle()

    assert reads.count(str(slow)) == 1, f"read {reads.count(str(slow))} times while it was being written"
    catalog = running.reader()
    try:
        assert catalog.failed_files() == []
    finally:
        catalog.close()


# -- how folders are watched ----------------------------------------------------------------


def test_polling_always_watches_by_polling_and_still_sees_new_files(live, pics, monkeypatch):
    monkeypatch.setattr(watcher, "POLL_INTERVAL", 0.3)
    monkeypatch.setattr(watcher, "Observer", lambda: pytest.fail("polling = always must not start an inotify observer"))
    running = live([pics], polling="always")
    assert running.daemon.watcher.modes() == [{"path": str(pics), "mode": "polling"}]
    running.wait_idle()
    write_image(pics / "new.png", seed=4)
    wait_until(lambda: running.content(pics / "new.png") is not None, timeout=30, what="the polled file")


class RefusingObserver:
    """An inotify observer whose watch the kernel refuses, as when max_user_watches is used up."""

    def schedule(self, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def stop(self) -> None:
        pass

    def is_alive(self) -> bool:
        return False


@pytest.mark.parametrize("polling", ["auto", "never"])
def test_when_the_watch_limit_is_reached_auto_polls_and_never_refuses(pics, polling, caplog):
    import queue

    from imgd.daemon.ingest.scanner import PathFilter

    watch = watcher.Watcher([str(pics)], PathFilter(()), queue.Queue(), polling, observer_factory=RefusingObserver)
    try:
        if polling == "never":
            with pytest.raises(OSError) as raised:
                watch.start()
            assert raised.value.errno == errno.ENOSPC
            assert watch.modes() == [{"path": str(pics), "mode": "missing"}]
        else:
            with caplog.at_level(logging.WARNING):
                watch.start()
            assert watch.modes() == [{"path": str(pics), "mode": "polling"}]
            assert "max_user_watches" in caplog.text
    finally:
        watch.stop()


@pytest.mark.slow
def test_a_watched_folder_that_appears_vanishes_and_returns_is_followed(live, tmp_path, pics, monkeypatch):
    monkeypatch.setattr(service, "ROOT_CHECK_INTERVAL", 0.3)
    later = tmp_path / "later"  # named in the config, made only while the daemon runs
    write_image(pics / "a.png", seed=5)
    running = live([pics, later])
    running.wait_idle()
    modes = {w["path"]: w["mode"] for w in running.daemon.watcher.modes()}
    assert modes == {str(pics): "inotify", str(later): "missing"}

    write_image(later / "b.png", seed=6)
    wait_until(lambda: running.content(later / "b.png") is not None, timeout=30, what="the folder that appeared")
    write_image(later / "c.png", seed=7)  # now watched: a plain event, not the root check
    wait_until(lambda: running.content(later / "c.png") is not None, timeout=30, what="a file in it")

    kept = running.content(pics / "a.png")
    shutil.move(pics, tmp_path / "unplugged")
    wait_until(lambda: running.daemon.watcher.modes()[0]["mode"] == "missing", timeout=30, what="the vanished folder")
    running.wait_idle()
    assert running.content(pics / "a.png") == kept, "entries are kept while the folder is away"

    shutil.move(tmp_path / "unplugged", pics)
    wait_until(lambda: running.daemon.watcher.modes()[0]["mode"] == "inotify", timeout=30, what="the folder back")
    wait_until(lambda: running.content(pics / "a.png") == kept, timeout=30, what="its entries back")
    write_image(pics / "d.png", seed=8)
    wait_until(lambda: running.content(pics / "d.png") is not None, timeout=30, what="a new file in it")
    running.wait_idle()
    catalog = running.reader()
    try:
        assert catalog.counts()["missing"] == 0
    finally:
        catalog.close()


# -- the service loop -----------------------------------------------------------------------


def test_reconcile_interval_rescans_periodically(live, pics):
    write_image(pics / "a.png", seed=9)
    running = live([pics], reconcile_interval=0.5)
    running.wait_idle()
    first = running.last_reconcile()
    assert first > 0
    wait_until(lambda: running.last_reconcile() > first, timeout=10, what="a periodic rescan")


@pytest.mark.slow
def test_reconcile_interval_zero_never_rescans(live, pics):
    write_image(pics / "a.png", seed=9)
    running = live([pics], reconcile_interval=0)
    running.wait_idle()
    first = running.last_reconcile()
    assert first > 0  # the catch-up at start
    time.sleep(2.0)  # four turns of the service loop
    assert running.last_reconcile() == first


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_service_exits_non_zero_when_its_indexing_thread_dies(make_config, embedder, pics, monkeypatch, caplog):
    """No file makes the worker die (it survives any Exception); a BaseException escaping it stands in."""
    import signal

    from imgd.daemon.ingest.worker import Worker

    def die(self: Worker) -> None:
        raise SystemExit  # ends the thread quietly, as a BaseException escaping the loop would

    monkeypatch.setattr(Worker, "_drain", die)
    daemon = Daemon(make_config(settle_seconds=0.5), [str(pics)], embedder)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    timer = threading.Timer(30, daemon.stop_event.set)  # a safety net: never hang the suite
    timer.start()
    try:
        with caplog.at_level(logging.ERROR):
            code = daemon.run()
    finally:
        timer.cancel()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert code == 1
    assert "the indexing thread stopped unexpectedly" in caplog.text
    assert not daemon.config.socket.exists(), "the socket is removed on the way out"


# -- what a status costs ------------------------------------------------------------------------


def test_the_gallery_status_poll_costs_no_grouping_and_no_stat_and_imgd_status_regroups_once_a_change(
    live, pics, monkeypatch
):
    """The gallery polls the status every 2 s: the daemon answers it without grouping duplicates or
    statting a picture. `imgd status` shows the duplicates summary: grouped once, then again only once
    the library changed."""
    from imgd.daemon.protocol import StatusRequest
    from imgd.daemon.search import dupes
    from imgd.daemon.service.handlers import answer
    from imgd.daemon.service.server import QueryServer
    from imgd.web.backend import Backend

    (pics / "a.jpg").write_bytes(jpeg(1))
    shutil.copyfile(pics / "a.jpg", pics / "a copy.jpg")
    (pics / "b.jpg").write_bytes(jpeg(2))
    (pics / "c.jpg").write_bytes(jpeg(3))
    running = live([pics], dupes_threshold=0.9993)  # the tiny model's threshold (tests/test_dupes.py)
    running.wait_idle()
    daemon = running.daemon
    daemon.dupes.start()  # as Daemon.run does (Live starts the watcher, worker and loop only)
    assert daemon.dupes.wait_ready(60)

    groupings: list[int] = []
    group = dupes.build_groups
    monkeypatch.setattr(dupes, "build_groups", lambda *a, **k: groupings.append(1) or group(*a, **k))
    pictures: list[str] = []
    stat = os.stat

    def counted_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if isinstance(path, str | bytes | os.PathLike) and os.fsdecode(path).startswith(f"{pics}{os.sep}"):
            pictures.append(os.fsdecode(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted_stat)  # os.path.isfile and Path.stat go through it too

    server = QueryServer(daemon.config.socket, daemon)
    server.start()
    backend = Backend(daemon.config, lambda name: pytest.fail("the gallery loaded a model although the daemon runs"))
    try:
        polls = [backend.status() for _ in range(3)]
    finally:
        backend.close()
        server.stop()
    assert all(p["daemon"]["running"] and p["counts"]["files"] == 4 for p in polls)
    assert "dupes" not in polls[0]
    assert groupings == [] and pictures == [], "the gallery's status poll grouped duplicates or statted pictures"

    first = answer(daemon, StatusRequest(duplicates=True))["status"]["dupes"]
    again = answer(daemon, StatusRequest(duplicates=True))["status"]["dupes"]
    assert first == again == {"threshold": daemon.config.dupes_threshold, "groups": 1, "reclaimable": len(jpeg(1))}
    assert len(groupings) == 1, "an unchanged library was grouped again"

    shutil.copyfile(pics / "b.jpg", pics / "b copy.jpg")  # a new exact copy: no new content, one more file
    running.wait_idle()
    changed = answer(daemon, StatusRequest(duplicates=True))["status"]["dupes"]
    assert changed["groups"] == 2 and len(groupings) == 2
