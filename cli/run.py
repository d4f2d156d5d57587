"""`imgd run`: the daemon in the foreground, on the folders given and [watch] paths."""

from __future__ import annotations

from pathlib import Path

import click
from imgd.daemon.config import Config

from . import runtime
from .group import UserError, get_config, verbosity


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def run(ctx: click.Context, folders: tuple[Path, ...]) -> None:
    """Run the daemon in the foreground: watch FOLDERS and [watch] paths, and keep the index fresh.

    [watch] paths defaults to your pictures folder (XDG_PICTURES_DIR, else ~/Pictures), used only when
    no FOLDERS are given.
    """
    runtime.setup_logging(verbosity(ctx), daemon=True)
    from imgd.daemon.service.library import with_catalog_model
    from imgd.daemon.service.run import run_daemon

    config = with_catalog_model(get_config(ctx))
    roots = watch_roots(config, folders)
    if not roots:
        raise UserError(
            "no folders to watch; pass them as arguments or set [watch] paths in the config "
            "(the default, your pictures folder, does not exist)."
        )
    code = run_daemon(config, roots, lambda config: runtime.load_embedder(config, announce=False))  # it logs the load
    ctx.exit(code)


def watch_roots(config: Config, folders: tuple[Path, ...]) -> tuple[Path, ...]:
    """The folders given, plus [watch] paths when set; the default (the pictures folder) only when none are."""
    if folders and "watch_paths" not in config.given:
        return tuple(dict.fromkeys(folders))
    return tuple(dict.fromkeys([*config.watch_paths, *folders]))
