"""The daemon's query socket: line-delimited JSON over a Unix socket only its owner can open.

Each connection gets a thread with a read deadline and a size cap, so a slow, vanished or hostile
client costs one thread for a few seconds and never blocks indexing or other queries. A request is
parsed and handed to the handler table (handlers.answer) with the daemon as its context.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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
        prepare_socket_path(self.path)
        old_umask = os.umask(0o177)
        try:
            super().__init__(str(self.path), _Connection)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._thread: threading.Thread | None = None

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
