"""The one way to ask imgd something: the daemon if it runs, else this process, with the same answer.

The CLI and the web UI build a typed request (protocol.py) and call `Api.call`; the daemon's socket
server and the in-process path both dispatch through `service.handlers.answer`, one handler per
operation. Light at import: the heavy modules load only when a request is answered in this process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import DaemonNotRunning, display_path
from ..paths import state_folder
from ..protocol import Request
from ..service.handlers import LocalContext, answer
from . import client

if TYPE_CHECKING:
    from ..embedders import Embedder

log = logging.getLogger(__name__)


class Api:
    """The facade: ask the running daemon, and answer here when none runs (or when told to)."""

    def __init__(
        self,
        config: Config,
        load_model: Callable[[str], Embedder],
        direct: bool = False,
        on_direct: Callable[[], None] | None = None,
    ) -> None:
        """on_direct: called once before this process answers itself (the CLI sets up its logging there)."""
        self.config = config
        self.direct = direct
        self.on_direct = on_direct
        self._local = LocalContext(config, load_model)
        self.answered_by: str | None = None  # "daemon" or "direct", for `-v` and tests

    @property
    def socket(self) -> Path:
        return self.config.socket

    def call(self, request: Request, timeout: float = 120.0) -> dict[str, Any]:
        served = None
        if not self.direct:
            try:
                reply = client.request(self.socket, request.to_message(), timeout=timeout)
            except DaemonNotRunning:
                pass
            else:
                served = reply.get("state_dir")
                if served is None or served == state_folder(self.config.state_dir):
                    self.answered_by = "daemon"
                    return {k: v for k, v in reply.items() if k not in ("v", "ok", "state_dir")}
        self.answered_by = "direct"
        if self.on_direct is not None:
            self.on_direct()
        if served is not None:  # a daemon of another library answers on this socket (a shared `socket` key)
            log.info(
                "the daemon on %s serves %s, not %s; answering here",
                self.socket,
                display_path(served),
                display_path(state_folder(self.config.state_dir)),
            )
        # Through JSON, as the daemon's answer is: both paths hand the caller the very same values.
        return json.loads(json.dumps(answer(self._local, request)))
