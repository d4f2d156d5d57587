"""The options shared by the commands that look for images, and the requests' parts built from them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import click
from imgd.daemon.config import Config
from imgd.daemon.errors import display_path
from imgd.daemon.protocol import (
    FILE_TYPES,
    MAX_K,
    NEAR_KM,
    SORTS,
    VIDEO_TYPES,
    Filters,
    Options,
    Term,
    min_size,
    radius,
    split_weight,
)

from .group import UserError
from .output import output_options

AUTO_CUT_K = 200  # answers --auto may give when -k is not given


def parse_term(kind: str, raw: str, sign: float = 1.0) -> Term:
    """A term as typed: `TEXT`, `WEIGHT:TEXT`, or `:TEXT` (protocol.split_weight); images made absolute."""
    weight, value = split_weight(raw)
    if kind == "image" and value:
        value = os.path.abspath(os.path.expanduser(value))
    return Term(kind, value, sign * weight)


# What an image must be to take part: shared by search, similar and dupes.
FILTER_OPTIONS = [
    click.option("--after", help="Taken on or after this date: YYYY, YYYY-MM or YYYY-MM-DD."),
    click.option("--before", help="Taken before this date: YYYY, YYYY-MM or YYYY-MM-DD."),
    click.option("--camera", help="Camera make or model contains this text (case-insensitive)."),
    click.option("--type", "types", help=f"File types, comma-separated: {', '.join(FILE_TYPES + VIDEO_TYPES)}."),
    click.option("--landscape", "orientation", flag_value="landscape", help="Only wider than tall."),
    click.option("--portrait", "orientation", flag_value="portrait", help="Only taller than wide."),
    click.option("--square", "orientation", flag_value="square", help="Only square."),
    click.option("--min-size", help="At least WIDTHxHEIGHT, a shorter side in pixels, or megapixels (12MP)."),
    click.option(
        "--near",
        metavar="PLACE",
        help="Taken near a city (the most populous of that name) or a position LAT,LON.",
    ),
    click.option("--country", help="Taken in this country: its English name or ISO code."),
    click.option("--videos/--no-videos", "videos", default=None, help="Only videos, or no videos (default: both)."),
    click.option("--min-duration", type=float, metavar="SECONDS", help="Only videos at least this long."),
    click.option("--max-duration", type=float, metavar="SECONDS", help="Only videos at most this long."),
]


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the FILTER_OPTIONS."""
    for option in reversed(FILTER_OPTIONS):
        fn = option(fn)
    return fn


def existing_folders(folders: tuple[str, ...]) -> tuple[str, ...]:
    """The folders as absolute paths; one that is not there is an error (exit 2), not a search that finds nothing."""
    paths = tuple(os.path.abspath(os.path.expanduser(f)) for f in folders)
    for path in paths:
        if not os.path.isdir(path):
            problem = "not a folder" if os.path.exists(path) else "no such folder"
            raise UserError(f"{display_path(path)}: {problem}; give a folder that holds your images.")
    return paths


def build_filters(folders: tuple[str, ...], types: str | None, given: dict[str, Any]) -> Filters:
    """Filters from the FILTER_OPTIONS values (popped from `given`) and folders."""
    size = given.pop("min_size")
    within = given.pop("within_km", None)  # search and similar (dupes' --within names folders)
    return Filters(
        folders=existing_folders(folders),
        after=given.pop("after"),
        before=given.pop("before"),
        camera=given.pop("camera"),
        types=tuple(t for t in (types or "").split(",") if t.strip()),
        orientation=given.pop("orientation"),
        videos=given.pop("videos"),
        min_duration=given.pop("min_duration"),
        max_duration=given.pop("max_duration"),
        **(min_size(size) if size else {}),
        near=given.pop("near"),
        within_km=radius(within) if within is not None else None,
        country=given.pop("country"),
    )


def query_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Filters, cut-offs, order and count: the same on every command that looks for images."""
    options = [
        click.option(
            "-k",
            "--top-k",
            "top_k",
            type=click.IntRange(1, MAX_K),
            help=f"How many images (1-{MAX_K}; default 10, 200 with --auto).",
        ),
        click.option(
            "--in",
            "folders",
            multiple=True,
            type=click.Path(file_okay=False),
            help="Only images under this folder (repeatable).",
        ),
        *FILTER_OPTIONS,
        click.option("--within", "within_km", metavar="KM", help=f"How far from --near, in km (default {NEAR_KM:g})."),
        click.option(
            "--words",
            metavar="PHRASE",
            help="Only pictures whose words (read by OCR) hold this text; case and accents do not matter.",
        ),
        click.option(
            "--words-match",
            metavar="EXPR",
            help="Only pictures whose words match this SQLite FTS5 expression (hammer OR nails).",
        ),
        click.option("--min-score", type=float, help="Leave out answers scoring below this cosine similarity."),
        click.option(
            "--auto", "auto_cut", is_flag=True, help="Stop where the scores fall away from the rest of the library."
        ),
        click.option(
            "--sort", type=click.Choice(SORTS), default="score", show_default=True, help="Order of the answers."
        ),
        click.option("--direct", is_flag=True, help="Answer here instead of asking the daemon."),
        click.option(
            "--places", "show_places", is_flag=True, help="Show each image's place (also on with --near or --country)."
        ),
        click.option("--frames", is_flag=True, help="With --json/--jsonl: each video's sampled times too."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return output_options(fn)


def build_options(
    config: Config, top_k: int | None, folders: tuple[str, ...], types: str | None, **given: Any
) -> Options:
    """The request's Options from the query_options values."""
    filters = dataclasses.replace(
        build_filters(folders, types, given), words=given.pop("words"), words_match=given.pop("words_match")
    )
    auto_cut = given.pop("auto_cut")
    k = top_k or (AUTO_CUT_K if auto_cut else config.top_k)
    return Options(
        k=k,
        filters=filters,
        min_score=given.pop("min_score"),
        auto_cut=auto_cut,
        sort=given.pop("sort"),
        frames=given.pop("frames"),
        fuse_words=given.pop("fuse_words", True),
    )
