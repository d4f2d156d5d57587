"""The one way to ask imgd something: the daemon if it runs, else this process, with the same answer.

The CLI and the web UI build a typed request (protocol.py) and call `Api.call`; the daemon's socket
server and the in-process path both dispatch through `service.handlers.answer`, one handler per
operation. Light at import: the heavy modules load only when a request is answered in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import DaemonNotRunning
from ..protocol import Request
from ..service.handlers import LocalContext, answer
from . import client

if TYPE_CHECKING:
    from ..embedders import Embedder


class Api:
    """The facade: ask the running daemon, and answer here when none runs (or when told to)."""

    def __init__(self, config: Config, load_model: Callable[[str], Embedder], direct: bool = False) -> None:
        self.config = config
        self.direct = direct
        self._local = LocalContext(config, load_model)
        self.answered_by: str | None = None  # "daemon" or "direct", for `-v` and tests

    @property
    def socket(self) -> Path:
        return self.config.socket

    def call(self, request: Request, timeout: float = 120.0) -> dict[str, Any]:
        if not self.direct:
            try:
                reply = client.request(self.socket, request.to_message(), timeout=timeout)
            except DaemonNotRunning:
                pass
            else:
                self.answered_by = "daemon"
                return {k: v for k, v in reply.items() if k not in ("v", "ok")}
        self.answered_by = "direct"
        # Through JSON, as the daemon's answer is: both paths hand the caller the very same values.
        return json.loads(json.dumps(answer(self._local, request)))
