"""Run the gallery: bind the socket, pick the token, serve with uvicorn until stopped."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn
from imgd.daemon.api.thumbnails import open_cache
from imgd.daemon.config import Config
from imgd.daemon.errors import ImgdError

from .app import MAX_UPLOAD, build_app
from .backend import Backend

DEFAULT_PORT = 8470


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def kept_token(path: Path) -> str:
    """A token that survives restarts (for the service unit): read it, or make one, mode 0600."""
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if len(token) >= 16:
            return token
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        raise ImgdError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port.") from None
    sock.set_inheritable(False)
    return sock


class Gallery:
    """One gallery process's server: the app, its thumbnail pool and the uvicorn loop."""

    def __init__(
        self,
        config: Config,
        load_model: Callable[[str], object],
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        max_upload: int = MAX_UPLOAD,
    ) -> None:
        self.config = config
        self.host = host
        self.sock = bind(host, port)
        self.port = int(self.sock.getsockname()[1])
        self.token = token or secrets.token_urlsafe(24)
        self.backend = Backend(config, load_model)  # type: ignore[arg-type]
        self.thumbs = open_cache(config)
        self.upload_dir = config.state_dir / "uploads"
        self.app = build_app(self.backend, self.thumbs, self.token, self.port, self.upload_dir, max_upload)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        return f"{self.base_url}?token={self.token}"

    def run(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (uvicorn handles them), then clean up."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.close()

    def start(self) -> None:
        """Serve from a background thread (tests, benchmarks); stop() ends it."""
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="imgd-web")
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.close()

    def close(self) -> None:
        self.thumbs.close()
        self.backend.close()
        with contextlib.suppress(OSError):
            self.sock.close()
