"""`imgd search` and `imgd similar`: images by texts and example images, printed by the one output function."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click
from imgd.daemon.config import Config
from imgd.daemon.errors import display_path
from imgd.daemon.protocol import SearchRequest, SimilarRequest

from . import preview, render
from .group import get_config, note, options
from .options import build_options, parse_term, query_options
from .output import output_rows
from .runtime import ask


@click.command()
@click.argument("terms", nargs=-1)
@click.option(
    "--like",
    "like",
    multiple=True,
    metavar="[WEIGHT:]PATH",
    help="An image whose look to search for (WEIGHT:PATH; repeatable).",
)
@click.option("--image", "image", multiple=True, hidden=True, help="Same as --like.")
@click.option(
    "--not",
    "unlike_text",
    multiple=True,
    metavar="[WEIGHT:]TEXT",
    help="A text to move away from (WEIGHT:TEXT; repeatable).",
)
@click.option(
    "--not-like",
    "unlike_image",
    multiple=True,
    metavar="[WEIGHT:]PATH",
    help="An image to move away from (repeatable).",
)
@click.option(
    "--no-words",
    "fuse_words",
    flag_value=False,
    default=True,
    help="Rank by the look of the pictures only, not also by the words read in them.",
)
@query_options
@click.pass_context
def search(
    ctx: click.Context,
    terms: tuple[str, ...],
    like: tuple[str, ...],
    image: tuple[str, ...],
    unlike_text: tuple[str, ...],
    unlike_image: tuple[str, ...],
    direct: bool,
    fmt: str | None,
    preview_mode: str | None,
    **given: Any,
) -> None:
    """Find images by texts and example images.

    \b
    Each TERM is a text; --like adds an image. Prefix a term with a weight, WEIGHT:TERM
    (2:dog counts twice; :10:30 is the text "10:30"). --not and --not-like subtract.
    The query is the normalised weighted sum of the terms' normalised vectors.

    \b
    Examples:
      imgd search "beach" "sunset" --not people --like ref.jpg 2:dog
      imgd search "receipt" --in ~/Documents --after 2023-06 --jsonl
      imgd search "cat" --auto -f | xargs feh
    """
    config = get_config(ctx)
    _note_ignored_model(ctx, config)
    parsed = [
        *(parse_term("text", t) for t in terms),
        *(parse_term("image", t) for t in (*like, *image)),
        *(parse_term("text", t, -1.0) for t in unlike_text),
        *(parse_term("image", t, -1.0) for t in unlike_image),
    ]
    if not parsed:
        raise click.UsageError("give a text to search for, --like IMAGE, or both.")
    places = _show_places(given)
    request = SearchRequest(terms=tuple(parsed), options=build_options(config, **given))
    reply = ask(ctx, config, request, direct)
    _note_scan(ctx, reply)
    print_hits(ctx, reply["hits"], fmt, preview_mode, config, places)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@query_options
@click.pass_context
def similar(
    ctx: click.Context, path: str | None, direct: bool, fmt: str | None, preview_mode: str | None, **given: Any
) -> None:
    """More like PATH: images that look like it, itself and its identical copies left out.

    A catalogued file is searched by its stored vector (no decoding, no image model); any other
    image is embedded first.
    """
    config = get_config(ctx)
    _note_ignored_model(ctx, config)
    if path is None:
        raise click.UsageError("give the PATH of an image to find more like it.")
    places = _show_places(given)
    request = SimilarRequest(path=os.path.abspath(os.path.expanduser(path)), options=build_options(config, **given))
    reply = ask(ctx, config, request, direct)
    _note_scan(ctx, reply)
    print_hits(ctx, reply["hits"], fmt, preview_mode, config, places)


def _show_places(given: dict[str, Any]) -> bool:
    """The place column: asked for with --places, or implied by a place filter."""
    return bool(given.pop("show_places") or given.get("near") or given.get("country"))


def print_hits(
    ctx: click.Context,
    hits: list[dict[str, Any]],
    fmt: str | None,
    preview_mode: str | None,
    config: Config,
    places: bool = False,
) -> None:
    """Print images in the chosen format, thumbnails beside them on a terminal; exit 1 like grep on none."""

    def show(lines: Sequence[str]) -> None:
        preview.echo_hits(hits, lines, preview_mode, config)

    output_rows(
        ctx,
        fmt,
        [render.hit_record(hit) for hit in hits],
        render.hits_lines(hits, places),
        [hit["path"] for hit in hits],
        show=show,
        none="imgd: no matching images on disk.",
    )


def _note_scan(ctx: click.Context, reply: dict[str, Any]) -> None:
    """Say that the answer came from a scan of the catalog: the daemon is building its index (it started without
    a usable index file); the answer is exact, only slower."""
    if reply.get("exact_scan"):
        note(ctx, "the daemon is still building its search index; this answer comes from an exact scan of the catalog.")


def _note_ignored_model(ctx: click.Context, config: Config) -> None:
    """A search must use the model its vectors came from; say so when --model names another."""
    named = options(ctx).get("model")
    if named:
        from imgd.daemon.service.library import ignored_model

        recorded = ignored_model(config, named)
        if recorded:
            note(ctx, f"searching with the catalog's model {display_path(recorded)}, not --model {named}.")
