"""The words read in a child process, so the daemon's memory goes back down once they are read.

The OCR models' runtimes (ONNX Runtime, OpenVINO, OpenCV) leave ~80 MB of libraries mapped and ~40 MB
of heap in a process after the models are freed, and a process cannot unmap its libraries. So the words
pass reads in a child (`python -m imgd.daemon.ingest.wordschild`, a fresh interpreter, no fork of the
threaded daemon) that starts when the pass has work and ends when the daemon idles for `idle_unload`
seconds, on shutdown, and by itself as soon as its stdin closes (the daemon gone, however it went).
The child runs the same WordReader, its runtime chosen (wordsruntime.choose) and kept in the state
folder as before, with as many threads as the parent sends pictures at once (one core per picture).

The parent sends a path (the child reads the file itself: no copy through the pipe, and a file that
stalls its reader stalls the child, not the daemon); the child answers with the lines. One JSON object a
line each way; JSON rather than pickle because the child decodes hostile files, and what it sends
back must be parsed as data only:

    parent -> child  {"id": N, "kind": "file", "path": P, "max_pixels": M}
                     {"id": N, "kind": "video", "path": P, "times": [seconds, ...]}
    child -> parent  {"ready": {model: runtime}}   once the models are loaded (or {"broken": why})
                     {"id": N, "lines": [[text, confidence, [x0, y0, x1, y1]], ...]}
                     {"id": N, "error": "unreadable" | "failed", "reason": why}
                     {"log": [logger, level, message]}   the child's log records, logged by the parent

A request not answered within `timeout` (a hang) gets the child killed; a child that exits (a crash, the
OOM killer, a kill) fails every request in flight with ChildDied. The next request starts a new child.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import ImageReadError
from ..store.words import WordLine
from .pool import Stopped

log = logging.getLogger(__name__)

READ_TIMEOUT = 120.0  # per picture or video: ~1 s a picture with words here, 63 s for a video's 8 frames at load 22
START_TIMEOUT = 300.0  # an interpreter, the runtimes' imports, the models' load (and the first measurement)
END_WAIT = 2.0  # after its stdin closes, before it is killed
POLL = 0.1  # how often a wait looks at the stop flag


class ChildDied(Exception):
    """The words child ended (a crash, a kill, no answer in time) before answering."""


class WordsFailed(Exception):
    """The child read the file but reading its words failed (its reason)."""


class _Running:
    """One child process, the requests it has in hand, and why it ended once it did."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pending: dict[int, list[Any]] = {}  # id -> [event, answer]
        self.ready = threading.Event()
        self.runtimes: dict[str, str] = {}
        self.ended: str | None = None
        self.lock = threading.Lock()  # the pipe's writes and `pending`


def _why(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class WordsChild:
    """The words child as the words pass uses it: read_file and read_video, from any number of threads."""

    timeout = READ_TIMEOUT
    start_timeout = START_TIMEOUT

    def __init__(
        self,
        threads: int,
        state_dir: Path | None,
        runtime: str = "auto",
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.threads = max(1, threads)
        self.state_dir = state_dir
        self.runtime = runtime
        self._should_stop = should_stop
        self._lock = threading.Lock()  # starting and ending the child
        self._running: _Running | None = None
        self._ids = itertools.count()
        self.last_use = time.monotonic()
        self.runtimes: dict[str, str] = {}  # each model's runtime in the last child, once loaded
        self.last_end = ""  # why the last child ended before answering

    @property
    def pid(self) -> int | None:
        running = self._running
        return running.proc.pid if running is not None and running.ended is None else None

    def read_file(self, path: str, max_pixels: int) -> list[WordLine]:
        """The words in a picture file (ImageReadError: it cannot be read; WordsFailed; ChildDied)."""
        return self._ask({"kind": "file", "path": path, "max_pixels": max_pixels}, path)

    def read_video(self, path: str, times: list[float]) -> list[WordLine]:
        """The words in a video's frames at `times`, each line once."""
        return self._ask({"kind": "video", "path": path, "times": times}, path)

    def close_if_idle(self, idle_for: float) -> bool:
        """End the child once nothing was asked of it for `idle_for` seconds; True when one was ended."""
        if not self._lock.acquire(blocking=False):  # being started: not idle
            return False
        try:
            running = self._running
            if running is None or running.pending or time.monotonic() - self.last_use < idle_for:
                return False
            self._running = None
        finally:
            self._lock.release()
        alive = running.ended is None  # one that crashed is reaped here, but held nothing
        self._end(running)
        return alive

    def close(self) -> None:
        """End the child (shutdown, `imgd index` done); requests in flight fail with ChildDied."""
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            self._end(running)

    # -- the parent's side --------------------------------------------------------------------

    def _ask(self, request: dict[str, Any], path: str) -> list[WordLine]:
        slot: list[Any] = [threading.Event(), None]
        with self._lock:
            running = self._started()
            with running.lock:
                if running.ended is not None:
                    raise self._died(running.ended)
                request_id = next(self._ids)
                running.pending[request_id] = slot
                try:
                    assert running.proc.stdin is not None
                    running.proc.stdin.write(json.dumps({"id": request_id, **request}).encode() + b"\n")
                    running.proc.stdin.flush()
                except (OSError, ValueError):  # its stdin closed under us: it is ending
                    running.pending.pop(request_id, None)
                    self._kill(running, "its stdin closed")
                    raise self._died(running.ended or "its stdin closed") from None
        deadline = time.monotonic() + self.timeout
        try:
            while not slot[0].wait(POLL):
                if self._should_stop():
                    raise Stopped
                if time.monotonic() > deadline:
                    self._kill(running, f"no answer in {self.timeout:.0f} s")
                    deadline = float("inf")  # its end fails this request, as every other in flight
        finally:
            with running.lock:
                running.pending.pop(request_id, None)
        answer = slot[1]
        if answer is None:
            raise self._died(running.ended or "ended")
        self.last_use = time.monotonic()
        if "error" in answer:
            if answer["error"] == "unreadable":
                raise ImageReadError(path, str(answer.get("reason")))
            raise WordsFailed(str(answer.get("reason")))
        return [WordLine(str(text), float(confidence), tuple(box)) for text, confidence, box in answer["lines"]]

    def _started(self) -> _Running:
        """The running child, started (and its models loaded) if there is none; called holding self._lock."""
        running = self._running
        if running is not None and running.ended is None:
            return running
        if self._should_stop():
            raise Stopped
        settings = {
            "threads": self.threads,
            "state_dir": str(self.state_dir) if self.state_dir is not None else None,
            "runtime": self.runtime,
            "log_level": logging.getLogger("imgd").getEffectiveLevel(),
        }
        proc = subprocess.Popen(  # noqa: S603 - our own module, on the interpreter running us
            [sys.executable, "-P", "-m", "imgd.daemon.ingest.wordschild", json.dumps(settings)],  # -P: not the cwd
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the daemon's stderr (its journal): what the native libraries say themselves
            close_fds=True,
        )
        running = self._running = _Running(proc)
        self.last_use = time.monotonic()
        threading.Thread(target=self._listen, args=(running,), name="imgd-words-child", daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not running.ready.wait(POLL):
            if self._should_stop():
                self._kill(running, "stopping")
                raise Stopped
            if time.monotonic() > deadline:
                self._kill(running, f"its models did not load in {self.start_timeout:.0f} s")
        if running.ended is not None:
            raise self._died(running.ended)
        self.runtimes = running.runtimes
        log.debug("words child %d started: %s", proc.pid, running.runtimes)
        return running

    def _listen(self, running: _Running) -> None:
        """The child's answers, until its stdout closes; then every request in flight fails."""
        stdout = running.proc.stdout
        assert stdout is not None
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # nothing else writes there (the child's fd 1 is its stderr)
            if "id" in message:
                with running.lock:
                    slot = running.pending.get(message["id"])
                if slot is not None:
                    slot[1] = message
                    slot[0].set()
            elif "log" in message:
                name, level, text = message["log"]
                logging.getLogger(str(name)).log(int(level), "%s", text)
            elif "ready" in message:
                running.runtimes = dict(message["ready"])
                running.ready.set()
            elif "broken" in message:
                running.ended = f"its models did not load: {message['broken']}"
        code = running.proc.wait()
        with running.lock:
            running.ended = running.ended or _why(code)
            for event, _answer in running.pending.values():
                event.set()
        running.ready.set()

    def _died(self, why: str) -> ChildDied:
        self.last_end = why
        return ChildDied(why)

    def _kill(self, running: _Running, why: str) -> None:
        with running.lock:
            running.ended = running.ended or why
        with contextlib.suppress(OSError):
            running.proc.kill()

    def _end(self, running: _Running) -> None:
        """Close its stdin (it exits at once), then kill it if it has not gone after END_WAIT."""
        with contextlib.suppress(OSError, ValueError):
            assert running.proc.stdin is not None
            running.proc.stdin.close()
        try:
            running.proc.wait(END_WAIT)
        except subprocess.TimeoutExpired:
            self._kill(running, "did not exit")
            running.proc.wait()


# -- the child's side ---------------------------------------------------------------------------


class _Forward(logging.Handler):
    """The child's log records, sent to the parent to be logged there (the engine never prints)."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._send({"log": [record.name, record.levelno, record.getMessage()]})


def serve(settings: dict[str, Any], requests: IO[bytes], answers: IO[str]) -> None:
    """Load the models, then answer each request on a pool of `threads`; exit at once when stdin closes."""
    from concurrent.futures import ThreadPoolExecutor

    from . import imaging
    from .words import WordReader, read_file, video_words

    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        try:
            with lock:
                answers.write(json.dumps(message) + "\n")
                answers.flush()
        except (OSError, ValueError):  # the parent is gone
            os._exit(1)

    handler = _Forward(send)
    handler.setLevel(int(settings.get("log_level", logging.INFO)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(handler.level)
    state_dir = settings.get("state_dir")
    reader = WordReader(threads=1, state_dir=Path(state_dir) if state_dir else None, runtime=settings["runtime"])
    try:
        reader._models()
    except Exception as exc:  # noqa: BLE001 - whatever the runtimes raise, the parent says it in one line
        send({"broken": str(exc).split("\n")[0] or type(exc).__name__})
        os._exit(1)
    send({"ready": reader.runtimes})

    def answer(request: dict[str, Any]) -> None:
        try:
            if request["kind"] == "video":
                lines = video_words(reader, request["path"], [float(at) for at in request["times"]])
            else:
                data = imaging.read_bytes(request["path"])
                lines = read_file(reader, request["path"], data, int(request["max_pixels"]))
            send({"id": request["id"], "lines": [[line.text, line.confidence, list(line.box)] for line in lines]})
        except ImageReadError as exc:
            send({"id": request["id"], "error": "unreadable", "reason": exc.reason})
        except Exception as exc:  # noqa: BLE001 - one odd file is one answer, never the child's end
            send({"id": request["id"], "error": "failed", "reason": str(exc).split("\n")[0] or type(exc).__name__})

    pool = ThreadPoolExecutor(max_workers=int(settings["threads"]), thread_name_prefix="imgd-words")
    for line in requests:
        pool.submit(answer, json.loads(line))
    os._exit(0)  # stdin closed: the parent ended us or is gone; pictures in hand are not waited for


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle; it ends us
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    serve(json.loads(sys.argv[1]), sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
