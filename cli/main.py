"""`imgd`: the command line. It parses, calls the engine or the daemon, and prints; nothing more.

This module is the root group; each command lives in a module of its own (index, search, dupes,
status, config, web, run, service), imported only when it runs; the options they share in group.py
(global), options.py (filters, query) and output.py (formats, and the one function every listing prints
through).
Heavy modules (torch, FAISS, numpy) are imported inside the commands that need them, so that
`imgd search` through a running daemon starts in a blink.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from .group import ImgdGroup, add_global_options, never_ignore_ctrl_c, options

# Each command's module, imported when that command runs (or help lists them all): `imgd search` need not
# import the alert, index, web and service modules (tens of ms of a warm start that is a few tenths of a second).
COMMANDS = {
    "index": ("index", "index"),
    "search": ("search", "search"),
    "similar": ("search", "similar"),
    "dupes": ("dupes", "dupes"),
    "status": ("status", "status"),
    "failed": ("status", "failed_command"),
    "config": ("config", "config_command"),
    "web": ("web", "web"),
    "run": ("run", "run"),
    "service": ("service", "service"),
    "alert": ("alert", "alert"),
    "events": ("alert", "events"),
}


class LazyGroup(ImgdGroup):
    """The root group: each command's module is imported on first use, not all of them at start-up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            command: Any = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            add_global_options(command)
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0])
        if not ctx.resilient_parsing and not name.startswith("-") and self.get_command(ctx, name) is None:
            # click suggests from the commands loaded so far: offer every command, as the eager group did
            raise click.exceptions.NoSuchCommand(name, possibilities=self.list_commands(ctx), ctx=ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imgd", prog_name="imgd", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """imgd: semantic image search over your photo folders.

    The options below work on every command, before or after its name.
    """
    ctx.obj = options(ctx)  # the same dict: options given after the subcommand land in it too


def main() -> None:
    """Run imgd as the `imgd` command (pyproject's entry point)."""
    never_ignore_ctrl_c()
    cli(prog_name="imgd")


if __name__ == "__main__":
    main()
