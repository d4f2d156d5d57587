"""The CLI's side of the query socket: stdlib only, so `imgd search` never loads torch or FAISS."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..alertprotocol import EventsRequest
from ..errors import DaemonNotRunning, ImgdError, ProtocolError
from ..protocol import PROTOCOL_VERSION, Options, SearchRequest, StatusRequest, Term

MAX_MESSAGE = 1 << 20  # replies; requests are capped lower by the server


def request(socket_path: Path, message: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request line, read one reply line; raise DaemonNotRunning if nobody answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError, PermissionError, OSError) as exc:
            raise DaemonNotRunning(f"no imgd daemon answers on {socket_path} ({exc})") from None
        sock.settimeout(timeout)
        payload = json.dumps({"v": PROTOCOL_VERSION, **message}).encode() + b"\n"
        try:
            sock.sendall(payload)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_MESSAGE * 64:
                    raise ProtocolError("the daemon's reply is too large")
        except TimeoutError:
            raise ProtocolError(
                f"the daemon did not answer within {timeout:.0f}s; see `journalctl --user -u imgd`"
            ) from None
        except OSError as exc:
            raise DaemonNotRunning(f"the daemon closed the connection ({exc})") from None
    finally:
        sock.close()
    if not data:
        raise DaemonNotRunning("the daemon closed the connection without answering")
    try:
        reply = json.loads(data)
    except ValueError:
        raise ProtocolError("the daemon sent a reply that is not JSON") from None
    _check(reply)
    return reply


def _check(reply: Any) -> None:
    """Refuse a reply in another protocol version, or one that reports an error, in one sentence."""
    if not isinstance(reply, dict) or reply.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("the daemon speaks another protocol version; restart it after upgrading imgd")
    if not reply.get("ok"):
        raise ImgdError(str(reply.get("error") or "the daemon reported an unknown error"))


def search(socket_path: Path, k: int, text: str | None = None, image: str | None = None) -> list[dict[str, Any]]:
    """One text or image term, top k: the simple search scripts and tests ask for."""
    term = Term("image", image) if image is not None else Term("text", text or "")
    return list(request(socket_path, SearchRequest(terms=(term,), options=Options(k=k)).to_message())["hits"])


def status(socket_path: Path, timeout: float = 10.0, duplicates: bool = False) -> dict[str, Any]:
    """The daemon's status; `duplicates` adds the duplicates summary `imgd status` shows."""
    return dict(request(socket_path, StatusRequest(duplicates=duplicates).to_message(), timeout=timeout)["status"])


def events(socket_path: Path) -> Iterator[dict[str, Any]]:
    """The daemon's events as they happen, one dict each, until the daemon stops (or the caller does)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            raise DaemonNotRunning(f"no imgd daemon answers on {socket_path} ({exc})") from None
        sock.sendall(json.dumps({"v": PROTOCOL_VERSION, **EventsRequest().to_message()}).encode() + b"\n")
        sock.settimeout(None)
        reader = sock.makefile("rb")
        header = reader.readline(MAX_MESSAGE)
        try:
            reply = json.loads(header) if header else None
        except ValueError:
            raise ProtocolError("the daemon sent a reply that is not JSON") from None
        _check(reply)
        for line in reader:
            with contextlib.suppress(ValueError):
                yield json.loads(line)
    finally:
        sock.close()
