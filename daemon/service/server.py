"""The daemon's query socket: line-delimited JSON over a Unix socket only its owner can open.

Each connection gets a thread with a read deadline and a size cap, so a slow, vanished or hostile
client costs one thread for a few seconds and never blocks indexing or other queries. A request is
parsed and handed to the handler table (handlers.answer) with the daemon as its context.
An `events` request is the one streaming reply: a header line, then one line per event from the
daemon's event bus until the client leaves; a client that stops reading only fills its own buffer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from ..errors import ImgdError
from ..paths import state_folder
from ..protocol import PROTOCOL_VERSION, parse
from .handlers import Context, answer

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
READ_TIMEOUT = 5.0
MAX_CLIENTS = 32
STREAM_SEND_BUFFER = 4096  # bytes of events in flight to a stream's reader; the rest wait on the bus


def _error(message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False, "error": message}


class _Connection(socketserver.StreamRequestHandler):
    timeout = READ_TIMEOUT

    def handle(self) -> None:
        server: QueryServer = self.server  # type: ignore[assignment]
        if not server.slots.acquire(blocking=False):
            self._reply(_error("the daemon is busy with too many connections; try again"))
            return
        try:
            try:
                line = self.rfile.readline(MAX_REQUEST + 1)
            except (TimeoutError, OSError):
                return
            if len(line) > MAX_REQUEST or (line and not line.endswith(b"\n")):
                self._reply(_error(f"request too large or unterminated (limit {MAX_REQUEST} bytes)"))
                self._discard_rest()
                return
            if not line.strip():
                return
            if server.streams(line):
                self._stream(server)
                return
            self._reply(server.answer(line))
        finally:
            server.slots.release()

    def _discard_rest(self) -> None:
        """Read what the client still sends, briefly, so closing does not reset away our reply."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(1.0)
            for _ in range(64):
                if not self.request.recv(65536):
                    break

    def _stream(self, server: QueryServer) -> None:
        """Send the bus's events a line each until the client goes; its reads set the pace, never the bus's."""
        subscription = server.context.bus.subscribe()  # type: ignore[attr-defined]
        try:
            self.request.settimeout(None)  # a reader that stalls blocks only this thread; its buffer drops
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)
            self.wfile.write(
                json.dumps({"v": PROTOCOL_VERSION, "ok": True, "stream": "events", **server.serves}).encode() + b"\n"
            )
            while not server.closing.is_set():
                event = subscription.get(timeout=1.0)
                if event is not None:
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                elif self._client_gone():
                    return
        except OSError:
            return
        finally:
            subscription.close()

    def _client_gone(self) -> bool:
        """Has the client closed its end? (It sends nothing after its request, so readable means gone.)"""
        readable, _, _ = select.select([self.request], [], [], 0)
        return bool(readable) and not self.request.recv(1, socket.MSG_PEEK)

    def _reply(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(message).encode() + b"\n")


class QueryServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: Path, context: Context) -> None:
        self.path = Path(path)
        self.context = context
        # Every reply names the state folder it comes from, so a client of another library refuses it.
        config = getattr(context, "config", None)
        self.serves = {"state_dir": state_folder(config.state_dir)} if config is not None else {}
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.closing = threading.Event()  # ends the event streams
        prepare_socket_path(self.path)
        old_umask = os.umask(0o177)
        try:
            super().__init__(str(self.path), _Connection)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._thread: threading.Thread | None = None

    def streams(self, line: bytes) -> bool:
        """Is this an `events` request a daemon with an event bus streams? (Anything else gets one reply.)"""
        if b"events" not in line or getattr(self.context, "bus", None) is None:
            return False
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return False
        return isinstance(message, dict) and message.get("op") == "events" and message.get("v") == PROTOCOL_VERSION

    def answer(self, line: bytes) -> dict[str, Any]:
        """Parse and dispatch one request; every failure becomes an error reply."""
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes ("[" * 60000)
            return _error("request is not valid JSON")
        if not isinstance(message, dict):
            return _error("request must be a JSON object")
        if message.get("v") != PROTOCOL_VERSION:
            return _error(f"unsupported protocol version {message.get('v')!r}; this daemon speaks {PROTOCOL_VERSION}")
        try:
            return {"v": PROTOCOL_VERSION, "ok": True, **answer(self.context, parse(message)), **self.serves}
        except ImgdError as exc:
            return _error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a query must never take the daemon down
            log.exception("query failed")
            return _error(f"internal error ({type(exc).__name__}); see the daemon's log")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="imgd-query", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._thread:
            self._thread.join(timeout=5)


def prepare_socket_path(path: Path) -> None:
    """A 0700 folder; a leftover socket from a crashed daemon is removed, a live one is refused."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, 0o700)
    if path.exists() or path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise ImgdError(f"another imgd daemon already answers on {path}; stop it first.")
        finally:
            probe.close()
