"""`imgd index`: index folders once, with a progress bar, ending in a summary line."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from imgd.daemon.errors import display_path

from . import render, runtime
from .group import UserError, get_config, note, quiet, verbosity


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--reembed", is_flag=True, help="Re-embed everything with the current model (after changing --model).")
@click.option("--rebuild", is_flag=True, help="Set a damaged catalog aside and index the folders anew.")
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Read and embed new files on a Ray cluster: 'local' starts one here for the run, 'auto' joins the one "
    "running here (else starts one), or ray://HOST:PORT / HOST:PORT. Needs imgd[cluster].",
)
@click.pass_context
def index(ctx: click.Context, folders: tuple[Path, ...], reembed: bool, rebuild: bool, cluster: str | None) -> None:
    """Index FOLDERS once: add new images, re-embed changed ones, drop deleted ones.

    On a terminal it shows a progress bar; it ends with a summary line; -q/--quiet shows neither.
    """
    runtime.setup_logging(verbosity(ctx))
    for folder in folders:
        if not folder.is_dir():
            problem = "not a folder" if folder.exists() else "no such folder"
            raise UserError(f"{display_path(str(folder))}: {problem}; give the folders that hold your images.")
    if cluster is not None:  # before the model loads: a missing extra or a wrong address is said at once
        from imgd.daemon.ingest.cluster import check

        check(cluster)
    from imgd.daemon.service.library import open_library, with_catalog_model

    config = with_catalog_model(get_config(ctx))

    started = time.monotonic()
    embedder = runtime.load_embedder(config)
    library = open_library(config, embedder, reembed=reembed, rebuild=rebuild)
    if reembed and not library.reembedding:
        note(ctx, f"the catalog already holds the vectors of model '{embedder.name}'; nothing to re-embed.")
    try:
        with (
            on_cluster(library.engine, cluster),
            render.progress_bar(not quiet(ctx) and sys.stderr.isatty()) as (on_total, progress),
        ):
            if library.engine.change is not None:
                change_model(ctx, library, on_total, progress)
            roots = [str(f.resolve()) for f in folders]
            summary = library.engine.reconcile(roots, progress=progress, on_total=on_total)
            backlog = library.catalog.media_backlog_count()
            if backlog:  # a catalog from before imgd kept metadata: read the headers (no pixels, no model)
                if on_total is not None:
                    on_total(backlog)  # a second bar in place of the first
                library.engine.backfill_all_media(progress)
            unplaced = library.catalog.places_backlog_count()
            if unplaced:  # positions stored before places were named: from the catalog, no file read
                if on_total is not None:
                    on_total(unplaced)
                library.engine.place_all(progress)
            if config.words_enabled:  # the words in pictures: a bar of its own, the gate keeps it quick
                unread = library.catalog.words_backlog_count()
                if unread and on_total is not None:
                    on_total(unread)
                library.engine.read_all_words(progress)
        library.engine.save_index()
    finally:
        library.close()
    if not quiet(ctx):
        click.echo(render.summary_line(summary, time.monotonic() - started), err=True)


def on_cluster(engine: Any, address: str | None) -> contextlib.AbstractContextManager[Any]:
    """The engine embeds on the Ray cluster at address for the run, or locally without one."""
    if address is None:
        return contextlib.nullcontext()
    from imgd.daemon.ingest.cluster import attached

    return attached(engine, address)


def change_model(
    ctx: click.Context, library: Any, on_total: Callable[[int], None] | None, progress: Callable[[int], None] | None
) -> None:
    """Re-embed every image with the new model beside the old vectors, then switch: an interrupted run
    leaves search on the old model and the next one goes on from there."""
    done, total = library.catalog.model_change_progress()
    if on_total is not None:
        on_total(total - done)
    while count := library.engine.reembed_step():
        if progress is not None:
            progress(count)
    dropped = library.engine.finish_change()
    note(
        ctx,
        f"switched to model {display_path(library.engine.embedder.name)}: {total - len(dropped)} images re-embedded"
        + (f", {len(dropped)} unreadable now (indexed again below if they can be)" if dropped else ""),
    )
