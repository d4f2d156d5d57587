"""`imgd run`: wires catalog, index, model, watcher, worker and query server; handles signals,
systemd notifications, periodic persistence and reconciliation. Runs in the foreground.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..embedders import Embedder
from ..errors import ImgdError, display_path
from ..ingest.watcher import Watcher
from ..ingest.worker import Worker
from ..protocol import StatusRequest
from ..search.query import Searcher
from ..store.catalog import Catalog
from ..store.indexfile import discard_partial_saves
from ..store.records import Change
from .alerts import AlertService
from .dupetracker import DupeTracker, library_vectors
from .events import DEFAULT_BUFFER, EventBus
from .library import RUN, WriterLock, catalog_status, ensure_state_dir, open_library
from .server import QueryServer

log = logging.getLogger(__name__)

ROOT_CHECK_INTERVAL = 10.0
STATUS_INTERVAL = 5.0
OPENER_WAIT = 15.0  # s: a start that fails (a damaged catalog) waits this long at most for the text model's open
PERSIST_SCALE = 100_000  # vectors; above this the persist interval grows in proportion
# Seconds from SIGTERM to exit. Stopping and the last save get this much; what is not done by then is
# left: the catalog is durable at every commit, and the index file is a cache of it that the next start
# brings up to date (an older save is patched, a half-written temp file discarded). systemd's
# TimeoutStopSec (systemd/imgd.service, cli/unit.py) is set a margin above it.
STOP_BUDGET = 1.0


def sd_notify(message: str) -> None:
    """Tell systemd about readiness, status and liveness; a no-op outside a notify service."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def inotify_usage() -> dict[str, int | None]:
    """Watches this process holds, against the per-user limit."""
    used = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fdinfo"):
            with contextlib.suppress(OSError), open(f"/proc/self/fdinfo/{fd}") as fh:
                used += sum(1 for line in fh if line.startswith("inotify wd:"))
    limit: int | None = None
    with contextlib.suppress(OSError, ValueError), open("/proc/sys/fs/inotify/max_user_watches") as fh:
        limit = int(fh.read())
    return {"used": used, "max": limit}


class Daemon:
    """The running service: every part it owns, and the loop that keeps them healthy."""

    def __init__(
        self,
        config: Config,
        roots: Sequence[str],
        embedder: Embedder,
        previous: Callable[[str], Embedder] | None = None,
        lock: WriterLock | None = None,
    ) -> None:
        """previous: loads the catalog's model when `embedder` is another one (a model change); lock: held already."""
        self.config = config
        self.roots = [os.path.abspath(os.fspath(r)) for r in roots]
        for root in self.roots:
            if os.path.exists(root) and not os.path.isdir(root):
                raise ImgdError(f"{display_path(root)}: not a folder; give the folders that hold your images.")
            if not os.path.exists(root):
                log.warning("folder %s does not exist (yet); it is watched once it appears", display_path(root))
        self.started = time.time()
        self.stop_event = threading.Event()
        self.stop_deadline: float | None = None  # monotonic; set by the first SIGTERM/SIGINT
        self.stopping_step = ""  # what shutdown was doing when its time ran out, for the log
        self._saver: threading.Thread | None = None  # a periodic save in progress
        self._starter: threading.Thread | None = None  # the watches and the worker, started while serving
        self.started_up = threading.Event()
        self.starting_step = ""  # what the start-up is doing, for the log
        self.start_failed = False
        worker_stop = threading.Event()
        # background: a large library switches to IVF without pausing searches.
        self.library = open_library(
            config, embedder, should_stop=worker_stop.is_set, background=True, previous=previous, lock=lock
        )
        self.changes: queue.Queue[Change] = queue.Queue()
        engine = self.library.engine
        self.watcher = Watcher(self.roots, engine.filter, self.changes, config.polling, config.follow_symlinks)
        self.worker = Worker(
            engine,
            self.roots,
            self.changes,
            config.settle_seconds,
            stop_event=worker_stop,
            orphan_grace=lambda: self.watcher.orphan_grace(config.settle_seconds),
            finish_change=self._finish_model_change,
            reembed_pause=config.reembed_pause,
        )
        self.library.index.rebuild_if_due()
        self.searcher = Searcher(config, self.library.index, lambda: self.embedder)
        self.dupes = self._track_dupes()
        # What the engine did, for `imgd events` and the saved searches; IMGD_EVENT_BUFFER: a test's small one.
        self.bus = EventBus(int(os.environ.get("IMGD_EVENT_BUFFER") or DEFAULT_BUFFER))
        engine.on_event = self.bus.publish
        self.alerts: AlertService | None = AlertService(config, self.searcher, self.library.index, self.bus)
        self.server: QueryServer | None = None
        self.last_persist: float | None = config.index_path.stat().st_mtime if config.index_path.exists() else None

    @property
    def embedder(self) -> Embedder:
        """The model of the live vectors: it answers queries (during a model change, the old one)."""
        return self.library.engine.embedder

    def _track_dupes(self) -> DupeTracker:
        """Near-duplicate pairs, computed once in the background and then kept current on every index change."""
        tracker = DupeTracker(
            self.library.index,
            lambda: _library_vectors(self.config),
            self.config.dupes_threshold,
            owners=lambda vector_ids: self.searcher.catalog.contents_of(vector_ids),
            busy=self.worker.files_waiting,
            catalog_path=self.config.catalog_path,  # the pass is kept there: a restart resumes it
        )
        self.library.index.listeners.append(tracker)
        return tracker

    def _finish_model_change(self) -> list[int]:
        """The switch (on the worker thread): searches wait for it, then duplicates and the index file follow."""
        dropped = self.library.engine.finish_change(self.searcher.switching)
        old, self.dupes = self.dupes, self._track_dupes()
        self.library.index.listeners.remove(old)
        old.stop()
        self.dupes.start()  # pairs under the new model: another space, other neighbours
        if self.alerts is not None:
            self.alerts.reload(new_model=True)  # saved searches' query vectors: encoded again
        self.persist()  # the saved file holds the old vectors; the catalog has a new identity now
        sd_notify(f"STATUS=switched to model {self.embedder.name}")
        return dropped

    # -- queries (the handler table asks these; see handlers.Context) ---------------------------

    def status(self, duplicates: bool = False) -> dict[str, Any]:
        """The catalog's counts and the daemon's state; `duplicates` adds the summary `imgd status` shows."""
        info = catalog_status(self.config)
        stats = self.worker.stats
        if "words" in info:  # the pass's pace over its last batch, while it runs
            reading = stats.busy == "reading words"
            info["words"]["rate"] = round(self.library.engine.words_rate, 2) if reading else 0.0
        change = (info.get("model") or {}).get("change")
        if change and (under_way := self.library.engine.change) is not None:
            change.update(under_way.pace(change["done"], change["total"]))
        stats = self.worker.stats
        pending = len(self.worker.pending) + self.changes.qsize() + stats.remaining
        info.update(
            daemon={"running": True, "pid": os.getpid(), "uptime_s": time.time() - self.started, "state": stats.busy},
            folders=self._folders(),
            queue={
                "pending": pending,
                "rate": round(stats.rate, 2) if stats.busy != "idle" else 0.0,
                "eta_s": round(pending / stats.rate, 1) if stats.rate and stats.busy != "idle" else None,
            },
            model={
                "name": self.embedder.name,
                "dim": self.embedder.dim,
                "device": self.embedder.device,
                "precision": self.embedder.precision,
                "backend": getattr(self.embedder, "backend", None),
                "text": getattr(self.embedder, "text_name", None),
                "image_loaded": getattr(self.embedder, "image_loaded", True),
                "text_loaded": getattr(self.embedder, "text_loaded", True),
                **({"reason": reason} if (reason := getattr(self.embedder, "reason", None)) else {}),
                **({"change": change} if change else {}),
            },
            search=self.library.index.describe(),
            **({"dupes": self._dupes_summary()} if duplicates else {}),
            last_persist=self.last_persist,
            inotify=inotify_usage(),
            last_error=stats.last_error,
        )
        return info

    @property
    def starting(self) -> bool:
        """Is the start-up thread still setting up the watches and the worker?"""
        return self._starter is not None and not self.started_up.is_set()

    def _folders(self) -> list[dict[str, str]]:
        """How each root is watched; "starting" for a folder whose watch is still being set up."""
        modes = self.watcher.modes()
        if self.starting:
            for mode in modes:
                if mode["mode"] == "missing" and os.path.isdir(mode["path"]):
                    mode["mode"] = "starting"
        return modes

    def _dupes_summary(self) -> dict[str, Any]:
        """Groups at the configured threshold from the tracker's pairs, regrouped only after a change."""
        return self.dupes.summary(self.config.catalog_path, self.config.dupes_threshold)

    # -- lifecycle --------------------------------------------------------------------------

    def persist_every(self) -> float:
        """The configured interval, stretched by size: saving 1M vectors writes ~1 GB, and the catalog has them."""
        return self.config.persist_interval * max(1.0, len(self.library.index) / PERSIST_SCALE)

    def persist(self) -> None:
        """Save the index if it changed; an I/O error keeps the previous file."""
        started = time.monotonic()
        try:
            if self.library.engine.save_index():
                self.last_persist = time.time()
                log.debug("index saved in %.2fs", time.monotonic() - started)
        except OSError as exc:
            # Full disk or I/O error: the old file is intact and the catalog holds every vector.
            log.error("could not save the index (%s); keeping the previous file and retrying later", exc.strerror)

    def persist_in_background(self) -> None:
        """A periodic save on its own thread: at 1M it writes ~1 GB, and the loop must stay free to see a SIGTERM."""
        if self._saver is not None and self._saver.is_alive():
            return
        self._saver = threading.Thread(target=self.persist, name="imgd-save", daemon=True)
        self._saver.start()

    def request_stop(self, *_: object) -> None:
        """The signal handler: the time to exit runs from here."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + STOP_BUDGET
        self.stop_event.set()

    def unload_if_idle(self, now: float) -> bool:
        """Free the image model once no file has needed it for `idle_unload` seconds, the text model once no
        query has for as long, and end the words child once no picture was read for as long (whatever the
        backend); each comes back lazily."""
        if self.config.idle_unload > 0 and self.library.engine.end_words_child(self.config.idle_unload):
            log.info("ended the words reader after %.0f s without pictures to read", self.config.idle_unload)
        self._unload_text_if_idle(now)
        last_use = getattr(self.embedder, "last_image_use", None)
        # During a model change the old model only embeds new files: between them its image session idles too.
        quiet = self.worker.stats.busy in ("idle", "changing model")
        if self.config.idle_unload <= 0 or last_use is None or not quiet:
            return False
        idle_for = now - last_use
        if idle_for < self.config.idle_unload or not self.embedder.release_images():  # type: ignore[attr-defined]
            return False
        log.info("freed the image model after %.0f s without new images; it loads again with the next one", idle_for)
        return True

    def _unload_text_if_idle(self, now: float) -> None:
        """Free the text model after `idle_unload` seconds without a query: the next one reopens it (~0.2 s for
        ViT-B/32), where holding it kept an idle daemon at 440 MB on OpenVINO, 290 on ONNX Runtime."""
        last_use = getattr(self.embedder, "last_text_use", None)
        if self.config.idle_unload <= 0 or last_use is None or now - last_use < self.config.idle_unload:
            return
        if self.embedder.release_texts():  # type: ignore[attr-defined]
            log.info("freed the text model after %.0f s without queries; it loads again with the next", now - last_use)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        # Until the handlers below are in place a SIGTERM ends the process at once (the default action):
        # as safe as a crash, which the catalog and the index file are made to survive. They are in place
        # before the server answers, so from then on a stop is the bounded one of shutdown().
        self.server = QueryServer(self.config.socket, self)
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self.request_stop)
            signal.signal(signal.SIGHUP, lambda *_: self.worker.request_rescan())
            # Searches are answered from the index as loaded from here on, while the watches (minutes at
            # 100k folders on a loaded machine) and the reconcile start on their own thread.
            self.server.start()
            log.info("imgd answering queries on %s; setting up the watches and catching up", self.config.socket)
            sd_notify("READY=1\nSTATUS=answering; setting up the watches and catching up with the disk")
            self._starter = threading.Thread(target=self._start_parts, name="imgd-start", daemon=True)
            self._starter.start()
            code = self._loop()
        finally:
            self.shutdown()
        return code

    def _start_parts(self) -> None:
        """The start-up steps that take long, in order (watches before the reconcile: no change falls between)."""
        steps: list[tuple[str, Callable[[], None]]] = [("the watches", self.watcher.start)]
        steps.append(("the duplicates pass", self.dupes.start))
        if self.alerts is not None:  # before the catch-up: pictures that came while stopped are checked too
            steps.append(("the saved searches", self.alerts.start))
        steps.append(("the indexing thread", lambda: self.worker.start(initial_reconcile=True)))
        try:
            for name, start in steps:
                if self.stop_event.is_set():
                    return
                self.starting_step = name
                start()
            self.starting_step = ""
            self.started_up.set()
            log.info(
                "imgd running: watching %s",
                ", ".join(f"{display_path(w['path'])} ({w['mode']})" for w in self.watcher.modes()),
            )
            # The text model was opened beside the index load (open_text_tower). The image model opens with
            # the first picture to embed, not here: over an unchanged library nothing needs it before
            # idle_unload frees it, and held through the start-up it was 0.85 GB of a 2.3 GB peak at 1M.
        except Exception:
            log.exception("could not start %s; exiting", self.starting_step or "the daemon")
            self.start_failed = True
            self.stop_event.set()

    def _loop(self) -> int:
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        ping_every = watchdog_usec / 2e6 if watchdog_usec else None
        now = time.monotonic()
        next_ping = next_persist = next_roots = next_status = now
        # An index built from the catalog at start (no file, or a damaged or stale one) is saved as soon as the
        # start-up is done, not after the stretched interval: until then each restart rebuilds it (minutes at 1M).
        if not self.library.index.dirty:
            next_persist = now + self.persist_every()
        building = self.library.index.scanning  # built from the catalog on a thread: saved once it is in
        next_reconcile = now + self.config.reconcile_interval
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            if ping_every and now >= next_ping:  # also while starting: READY=1 went out with the server
                sd_notify("WATCHDOG=1")
                next_ping = now + ping_every
            if self.starting:  # the watches and the worker are being started (_start_parts)
                continue
            if not self.worker.alive:
                log.error("the indexing thread stopped unexpectedly; exiting so systemd restarts imgd")
                return 1
            if building and not self.library.index.scanning:
                building, next_persist = False, now  # not after the stretched interval, as above
            if now >= next_persist:
                self.persist_in_background()
                next_persist = now + self.persist_every()
            if now >= next_reconcile and self.config.reconcile_interval > 0:
                self.worker.request_rescan()
                next_reconcile = now + self.config.reconcile_interval
            if now >= next_roots or self.watcher.roots_changed():  # a replaced root: at once, not in 10 s
                for root in self.watcher.check_roots():
                    self.worker.request_rescan(root)
                next_roots = now + ROOT_CHECK_INTERVAL
            self.unload_if_idle(now)
            if now >= next_status:
                stats = self.worker.stats
                sd_notify(f"STATUS={stats.busy}; {stats.remaining} waiting; {stats.rate:.1f} images/s")
                next_status = now + STATUS_INTERVAL
        return 1 if self.start_failed else 0

    def shutdown(self) -> bool:
        """Stop every part and save the index, within STOP_BUDGET of the signal; False when time ran out.

        The steps run on a thread the main one waits for until the deadline: any of them can outlast it
        (an embedding batch, a k-means round, writing a 1 GB index), and none is needed for what is saved.
        """
        sd_notify("STOPPING=1")
        log.info("stopping: saving the index")
        if self.stop_deadline is None:  # not a signal: the loop ended by itself (the worker died)
            self.stop_deadline = time.monotonic() + STOP_BUDGET
        steps = threading.Thread(target=self._stop_parts, name="imgd-stop", daemon=True)
        steps.start()
        steps.join(max(0.0, self.stop_deadline - time.monotonic()))
        if steps.is_alive():
            # A save cut short: its temp file, not the index file, which is replaced only whole.
            discard_partial_saves(self.config.index_path)
            log.warning(
                "stopped without waiting for %s (over %.1fs); the catalog has every change, and the next start "
                "brings the index file up to date from it",
                self.stopping_step,
                STOP_BUDGET,
            )
            return False
        log.info("stopped")
        return True

    def _stop_parts(self) -> None:
        """The shutdown's steps in order, each named for the log should the deadline pass during it."""

        def step(name: str) -> None:
            self.stopping_step = name
            log.debug("stopping: %s", name)

        if self._starter is not None:
            step(f"the start-up ({self.starting_step or 'the model sessions'})")
            self._starter.join()  # it starts nothing more once the stop is asked
        step("the duplicates pass")
        self.dupes.stop()  # its pass would hold the exit until every block is done
        if self.server is not None:
            step("the query server")
            with contextlib.suppress(Exception):
                self.server.stop()
        step("the watcher")
        self.watcher.stop()
        step("the indexing thread")
        self.worker.stop(timeout=None)
        if self.alerts is not None:
            step("the saved searches")
            self.alerts.stop()
        step("the index build")
        self.library.index.close(wait=None)  # cancelled between k-means rounds, it swaps nothing in
        if self._saver is not None:
            step("a periodic index save")
            self._saver.join()
        step("the index save")
        self.persist()
        step("closing the catalog")
        self.library.close()
        self.stopping_step = ""


def _library_vectors(config: Config) -> tuple[Any, Any]:
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        return library_vectors(catalog)
    finally:
        catalog.close()


def check_socket_free(config: Config) -> None:
    """Refuse to start where another daemon already answers: before the model, which takes seconds to load."""
    from ..api import client

    try:
        reply = client.request(config.socket, StatusRequest().to_message(), timeout=5.0)
    except ImgdError:  # nobody answers (or it is no daemon of ours): the server's own check has the last word
        return
    serves = reply.get("state_dir") or "another state folder"
    raise ImgdError(
        f"another imgd daemon, serving {display_path(str(serves))}, already answers on {config.socket}; "
        "stop it, or leave the `socket` key and IMGD_SOCKET unset so each state folder gets its own socket."
    )


def open_text_tower(embedder: Embedder) -> None:
    """Encode one query, so the first search finds the text model open; a failure is the first search's to report."""
    started = time.monotonic()
    try:
        embedder.encode_texts(["a photo"])
    except Exception as exc:  # noqa: BLE001 - the same load fails again, with its message, on the first search
        log.debug("could not open the text model ahead of the first search (%s)", exc)
        return
    log.debug("text model ready in %.2fs", time.monotonic() - started)


def run_daemon(config: Config, roots: Sequence[str | Path], load_embedder: Callable[[Config], Embedder]) -> int:
    """Entry point for `imgd run`: the writer lock and the socket are checked before the model loads."""

    def previous(name: str) -> Embedder:
        """The catalog's model during a change: with its own text tower, not one meant for the new model."""
        log.info("loading model %s, which serves searches until the new one's vectors are complete", name)
        return load_embedder(dataclasses.replace(config, model=name, text_model=None))

    ensure_state_dir(config)
    lock = WriterLock(config.lock_path, RUN)  # held from here: `imgd status` says the daemon is starting
    lock.acquire()
    opener: threading.Thread | None = None
    try:
        check_socket_free(config)
        log.info("loading model %s", display_path(config.model))  # torch and the model take 5-20 s
        started = time.monotonic()
        embedder = load_embedder(config)
        log.debug("model loaded in %.1fs (%s, %s)", time.monotonic() - started, embedder.device, embedder.precision)
        # The text tower opens (ONNX Runtime's session set-up: 2-3 s) while the catalog and the index file
        # load beside it; in a row, the first search paid both.
        opener = threading.Thread(target=open_text_tower, args=(embedder,), name="imgd-text", daemon=True)
        opener.start()
        daemon = Daemon(config, [os.fspath(r) for r in roots], embedder, previous, lock=lock)
    except BaseException:
        lock.release()
        if opener is not None:  # an interpreter that exits while it is inside the runtime aborts (SIGABRT)
            opener.join(OPENER_WAIT)
        raise
    code = daemon.run()
    # Saved and closed by now, or STOP_BUDGET ran out first. What is left would only hold the exit: a
    # cancelled index build inside one FAISS call, the duplicates pass's pool, which the interpreter joins
    # at exit (43 s after SIGTERM at 100k here, 19 of them after "stopped"), or an unfinished save.
    logging.shutdown()
    os._exit(code)
