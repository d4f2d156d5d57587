"""What a command needs to reach the engine: logging set up, the model loaded, a request sent through the facade.

Heavy modules (torch, FAISS, numpy) are imported inside these functions, so that `imgd search`
through a running daemon starts in a blink.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click
from imgd.daemon.config import Config
from imgd.daemon.errors import display_path
from imgd.daemon.protocol import Request

from . import group

LOADING_NOTE_AFTER = 0.5  # seconds of model loading before `imgd: loading model X...` is shown


def setup_logging(verbosity: int, daemon: bool = False) -> None:
    """Send log lines to stderr, as many as -v/-q ask for: the daemon's as records, a command's as `imgd: `."""
    import logging  # not at the top: `imgd search` through the daemon never logs, and starts faster

    from imgd.daemon.verbosity import level_for

    # The daemon's log starts at INFO (a line per file changed), a command's at WARNING (skips).
    level = level_for(verbosity, logging.INFO if daemon else logging.WARNING)
    fmt = "%(levelname)s %(message)s" if daemon else "imgd: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing at INFO
    # Not DEBUG (every inotify event), and never above WARNING: the daemon listens for its overflow warning.
    logging.getLogger("watchdog").setLevel(min(max(level, logging.INFO), logging.WARNING))


def load_embedder(config: Config, name: str | None = None, announce: bool = True) -> Any:
    """Load the model; on a terminal, say so in one line if that takes more than a moment (torch: 5-20 s)."""
    model = name or config.model
    ctx = click.get_current_context(silent=True)
    timer = None
    if announce and sys.stderr.isatty() and not (ctx is not None and group.quiet(ctx)):
        line = f"imgd: loading model {display_path(model)}..."
        timer = threading.Timer(LOADING_NOTE_AFTER, lambda: click.echo(line, err=True))
        timer.daemon = True
        timer.start()
    try:
        from imgd.daemon.embedders import load_configured

        return load_configured(config, model)
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()


def ask(ctx: click.Context, config: Config, request: Request, direct: bool = False) -> dict[str, Any]:
    """Send a request through the one facade; logging is set up only if this process answers it."""
    from imgd.daemon.api.facade import Api

    api = Api(
        config,
        lambda name: load_embedder(config, name),
        direct=direct,
        on_direct=lambda: setup_logging(group.verbosity(ctx)),
    )
    return api.call(request)
