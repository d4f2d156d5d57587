"""`imgd`: the command line. It parses, calls the engine or the daemon, and prints; nothing more.

Heavy modules (torch, FAISS, numpy) are imported inside the commands that need them, so that
`imgd search` through a running daemon starts in a blink.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from imgd.daemon import client
from imgd.daemon import config as config_module
from imgd.daemon.config import Config
from imgd.daemon.errors import DaemonNotRunning, ImgdError, display_path

from . import render

EXIT_NO_MATCH = 1
EXIT_ERROR = 2


class UserError(click.ClickException):
    """An ImgdError shown as one line; exit 2 like grep's errors, 1 is kept for 'no match'."""

    exit_code = EXIT_ERROR


class ImgdGroup(click.Group):
    """Turns every ImgdError raised below into one line on stderr: the single place this happens."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImgdError as exc:
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("imgd: interrupted", err=True)
            ctx.exit(130)


def setup_logging(verbosity: int, daemon: bool = False) -> None:
    import logging  # not at the top: `imgd search` through the daemon never logs, and starts faster

    level = logging.WARNING - 10 * verbosity
    fmt = "%(levelname)s %(message)s" if daemon else "imgd: %(message)s"
    level = max(logging.DEBUG, min(logging.ERROR, level))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing at INFO
    # Not DEBUG (every inotify event), and never above WARNING: the daemon listens for its overflow warning.
    logging.getLogger("watchdog").setLevel(min(max(level, logging.INFO), logging.WARNING))


def get_config(ctx: click.Context, **flags: Any) -> Config:
    options = dict(ctx.obj or {})
    options.update({k: v for k, v in flags.items() if v is not None})
    config_file = options.pop("config_file", None)
    options.pop("verbosity", None)
    return config_module.load(config_file, options)


@click.group(cls=ImgdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file (env IMGD_CONFIG).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Where the catalog and index live (env IMGD_STATE_DIR).",
)
@click.option("--model", help="CLIP model name or local folder (env IMGD_MODEL; default clip-ViT-B-32).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the model runs (default auto).")
@click.option("-v", "--verbose", "verbose", count=True, help="More log lines (repeat for debug).")
@click.option("-q", "--quiet", "quiet", count=True, help="Fewer log lines.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: str | None,
    state_dir: str | None,
    model: str | None,
    device: str | None,
    verbose: int,
    quiet: int,
) -> None:
    """imgd: semantic image search over your photo folders."""
    ctx.obj = {"config_file": config_file, "state_dir": state_dir, "model": model, "device": device}
    ctx.meta["verbosity"] = verbose - quiet


def _verbosity(ctx: click.Context, quiet: bool = False) -> int:
    return ctx.find_root().meta.get("verbosity", 0) - (1 if quiet else 0)


def _load_embedder(config: Config, name: str | None = None) -> Any:
    from imgd.daemon.embedder import load_embedder

    return load_embedder(name or config.model, config.device, config.precision, config.batch_size)


# -- index ---------------------------------------------------------------------------------


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--reembed", is_flag=True, help="Re-embed everything with the current model (after changing --model).")
@click.option("--rebuild", is_flag=True, help="Set a damaged catalog aside and index the folders anew.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="No progress bar and no summary line.")
@click.pass_context
def index(ctx: click.Context, folders: tuple[Path, ...], reembed: bool, rebuild: bool, quiet_flag: bool) -> None:
    """Index FOLDERS once: add new images, re-embed changed ones, drop deleted ones."""
    setup_logging(_verbosity(ctx, quiet_flag))
    for folder in folders:
        if not folder.is_dir():
            problem = "not a folder" if folder.exists() else "no such folder"
            raise UserError(f"{display_path(str(folder))}: {problem}; give the folders that hold your images.")
    config = get_config(ctx)
    from imgd.daemon.library import open_library

    started = time.monotonic()
    embedder = _load_embedder(config)
    library = open_library(config, embedder, reembed=reembed, rebuild=rebuild)
    bar = None
    try:
        show_bar = not quiet_flag and sys.stderr.isatty()
        on_total: Callable[[int], None] | None = None
        progress: Callable[[int], None] | None = None
        if show_bar:
            from tqdm import tqdm

            def on_total(total: int) -> None:
                nonlocal bar
                bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)

            def progress(n: int) -> None:
                if bar is not None:
                    bar.update(n)

        summary = library.engine.reconcile([str(f.resolve()) for f in folders], progress=progress, on_total=on_total)
        library.engine.save_index()
    finally:
        if bar is not None:
            bar.close()
        library.close()
    if not quiet_flag:
        click.echo(render.summary_line(summary, time.monotonic() - started), err=True)


# -- search --------------------------------------------------------------------------------


@cli.command()
@click.argument("query", required=False)
@click.option("--image", "image", type=click.Path(dir_okay=False), help="Find images like this one.")
@click.option("-k", "--top-k", "top_k", type=click.IntRange(min=1), help="How many images to list (default 10).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {rank, score, path}.")
@click.option("--direct", is_flag=True, help="Load the index and model here instead of asking the daemon.")
@click.pass_context
def search(
    ctx: click.Context, query: str | None, image: str | None, top_k: int | None, as_json: bool, direct: bool
) -> None:
    """Find images by a text QUERY or by a reference --image."""
    if (query is None) == (image is None):
        raise click.UsageError("give either a text QUERY or --image PATH (not both).")
    if query is not None and not query.strip():
        raise click.UsageError("the text QUERY is empty.")
    config = get_config(ctx)
    k = top_k or config.top_k
    image_path = os.path.abspath(image) if image is not None else None
    hits: list[dict[str, Any]] | None = None
    if not direct:
        try:
            hits = client.search(config.socket, k, text=query, image=image_path)
        except DaemonNotRunning:
            hits = None
    if hits is None:
        from imgd.daemon.library import open_searcher

        setup_logging(_verbosity(ctx))

        searcher = open_searcher(config, lambda name: _load_embedder(config, name))
        hits = [hit.as_dict() for hit in searcher.query(k, text=query, image=image_path)]
    if as_json:
        click.echo(render.hits_json(hits))
    else:
        for line in render.hits_lines(hits):
            click.echo(line)
    if not hits:
        click.echo("imgd: no matching images on disk.", err=True)
        ctx.exit(EXIT_NO_MATCH)


# -- status and failed ---------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--failed", is_flag=True, help="List the files that could not be indexed, with why.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, failed: bool) -> None:
    """Show what the daemon is doing and what the catalog holds."""
    if failed:
        ctx.invoke(failed_command, as_json=as_json)
        return
    config = get_config(ctx)
    try:
        info = client.status(config.socket)
    except DaemonNotRunning:
        from imgd.daemon.library import catalog_status

        info = catalog_status(config)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for line in render.status_lines(info):
            click.echo(line)


@cli.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {path, error}.")
@click.pass_context
def failed_command(ctx: click.Context, as_json: bool) -> None:
    """List the files that could not be indexed, and why."""
    config = get_config(ctx)
    from imgd.daemon.library import failed_files

    rows = failed_files(config)
    if as_json:
        click.echo(render.json_text([{"path": p, "error": e} for p, e in rows]))
        return
    for path, error in rows:
        click.echo(f"{display_path(path)}: {error}")
    if not rows:
        click.echo("imgd: no failed files.", err=True)


# -- the daemon ----------------------------------------------------------------------------


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def run(ctx: click.Context, folders: tuple[Path, ...]) -> None:
    """Run the daemon in the foreground: watch FOLDERS (and [watch] paths) and keep the index fresh."""
    setup_logging(_verbosity(ctx) + 1, daemon=True)
    config = get_config(ctx)
    from imgd.daemon.service import run_daemon

    roots = tuple(dict.fromkeys([*config.watch_paths, *folders]))
    if not roots:
        raise UserError("no folders to watch; pass them as arguments or set [watch] paths in the config.")
    code = run_daemon(config, roots, _load_embedder)
    ctx.exit(code)


@cli.group()
def service() -> None:
    """Install the systemd user service."""


@service.command("install")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), help="Where to write imgd.service.")
@click.pass_context
def service_install(ctx: click.Context, print_only: bool, unit_dir: Path | None) -> None:
    """Write ~/.config/systemd/user/imgd.service for this installation."""
    from imgd.daemon.unit import install_unit, render_unit

    root = ctx.find_root()
    config_file = root.obj.get("config_file") if root.obj else None
    text = render_unit(sys.argv[0], config_file, root.obj.get("state_dir") if root.obj else None)
    if print_only:
        click.echo(text, nl=False)
        return
    path = install_unit(text, unit_dir)
    click.echo(f"wrote {path}")
    if not get_config(ctx).watch_paths:
        click.echo(
            "note: no folders to watch yet; set [watch] paths in "
            f"{config_module.default_config_path()} before starting the service.",
            err=True,
        )
    click.echo("enable and start it with:")
    click.echo("  systemctl --user daemon-reload")
    click.echo("  systemctl --user enable --now imgd.service")
    click.echo("follow its log with: journalctl --user -u imgd -f")


def main() -> None:
    cli(prog_name="imgd")


if __name__ == "__main__":
    main()
