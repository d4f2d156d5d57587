"""server: the query socket is private, answers line-delimited JSON, and never steals a live daemon's place."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from imgd.daemon.api import client
from imgd.daemon.errors import ImgdError
from imgd.daemon.service.server import QueryServer


class Answering:
    """A context for the handler table whose status names its server."""

    config = None
    dupes = None

    def __init__(self, name: str) -> None:
        self.name = name

    def status(self, duplicates: bool = False) -> dict[str, Any]:
        return {"server": self.name}


def answering(name: str) -> Answering:
    return Answering(name)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "imgd" / "imgd.sock"


def test_a_second_server_on_a_live_socket_is_refused_and_the_first_keeps_answering(sock_path):
    first = QueryServer(sock_path, answering("first"))
    first.start()
    try:
        with pytest.raises(ImgdError, match="another imgd daemon already answers"):
            QueryServer(sock_path, answering("second"))
        assert client.status(sock_path) == {"server": "first"}
    finally:
        first.stop()
    assert not sock_path.exists()


def test_a_leftover_socket_of_a_dead_daemon_is_replaced(sock_path):
    sock_path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))  # bound, never listening, then gone: what a SIGKILL leaves
    dead.close()
    assert sock_path.is_socket()

    server = QueryServer(sock_path, answering("new"))
    server.start()
    try:
        assert client.status(sock_path) == {"server": "new"}
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
    finally:
        server.stop()
