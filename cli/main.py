"""`imgd`: the command line. It parses, calls the engine or the daemon, and prints; nothing more.

This module is the root group; each command lives in a module of its own (index, search, dupes,
status, config, web, run, service), the options they share in group.py (global), options.py
(filters, query) and output.py (formats, and the one function every listing prints through).
Heavy modules (torch, FAISS, numpy) are imported inside the commands that need them, so that
`imgd search` through a running daemon starts in a blink.
"""

from __future__ import annotations

import click

from .alert import alert, events
from .config import config_command
from .dupes import dupes
from .group import ImgdGroup, never_ignore_ctrl_c, options
from .index import index
from .run import run
from .search import search, similar
from .service import service
from .status import failed_command, status
from .web import web


@click.group(cls=ImgdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgd", prog_name="imgd", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """imgd: semantic image search over your photo folders.

    The options below work on every command, before or after its name.
    """
    ctx.obj = options(ctx)  # the same dict: options given after the subcommand land in it too


for command in (
    index,
    search,
    similar,
    dupes,
    status,
    failed_command,
    config_command,
    web,
    run,
    service,
    alert,
    events,
):
    cli.add_command(command)


def main() -> None:
    """Run imgd as the `imgd` command (pyproject's entry point)."""
    never_ignore_ctrl_c()
    cli(prog_name="imgd")


if __name__ == "__main__":
    main()
