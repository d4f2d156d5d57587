"""`imgd dupes`: groups of images that are the same picture, printed by the one output function."""

from __future__ import annotations

from typing import Any

import click
from imgd.daemon.paths import is_under
from imgd.daemon.protocol import DupesRequest

from . import render
from .group import get_config
from .options import build_filters, existing_folders, filter_options
from .output import output_options, output_rows
from .runtime import ask


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False))
@click.option(
    "--threshold",
    type=float,
    help="Cosine from which two images are the same picture (default [dupes] threshold, 0.975).",
)
@click.option(
    "--in",
    "within",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Only groups with an image under this folder (repeatable); -f/-0 --not-keeper then list only those.",
)
@click.option("--bursts", is_flag=True, help="Also list bursts: shots of one camera seconds apart that look alike.")
@click.option(
    "--burst-gap",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds between two shots of a burst, at most (camera clock, EXIF).",
)
@click.option("--not-keeper", is_flag=True, help="With -f/-0: leave each group's suggested keeper out.")
@click.option("--direct", is_flag=True, help="Compute here instead of asking the daemon.")
@filter_options
@output_options
@click.pass_context
def dupes(
    ctx: click.Context,
    folders: tuple[str, ...],
    threshold: float | None,
    within: tuple[str, ...],
    bursts: bool,
    burst_gap: float,
    not_keeper: bool,
    direct: bool,
    fmt: str | None,
    types: str | None,
    **given: Any,
) -> None:
    """Groups of images that are the same picture, the suggested keeper first.

    \b
    Exact copies (the same bytes) and near-duplicates (re-encoded, resized, cropped a little,
    rotated, converted, lightly edited: cosine >= --threshold to the keeper). The keeper is the
    image with the most pixels, then the oldest, then the shortest path. FOLDERS limit which
    images are compared (default: the whole library). --bursts adds bursts: shots of one camera
    at most --burst-gap seconds apart (EXIF capture time) that look alike. imgd never deletes or
    moves a file.

    \b
    Examples:
      imgd dupes                                   # every group in the library
      imgd dupes --in ~/Downloads -f --not-keeper  # downloads that are copies of a better image
      imgd dupes ~/Pictures -0 --not-keeper | xargs -0 trash-put
    """
    config = get_config(ctx)
    request = DupesRequest(
        threshold=threshold,
        filters=build_filters(folders, types, given),
        within=existing_folders(within),
        bursts=bursts,
        burst_gap=burst_gap,
    )
    reply = ask(ctx, config, request, direct)
    groups = render.dupe_groups(reply["groups"])
    paths = [
        m["path"]
        for g in groups
        for position, m in enumerate(g["members"])
        if not (not_keeper and (position == 0 or (request.within and not _under(m["path"], request.within))))
    ]
    output_rows(
        ctx,
        fmt,
        [render.dupes_record(group) for group in groups],
        render.dupes_lines(groups),
        paths,
        summary=render.dupes_summary(groups, reply["threshold"]),
    )


def _under(path: str, folders: tuple[str, ...]) -> bool:
    """Whether `path` lies inside one of `folders`."""
    return any(is_under(path, folder) for folder in folders)
