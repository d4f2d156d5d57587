"""How every listing command prints what it found: one set of format options, one output function.

`imgd search`, `similar`, `dupes` and `failed` each turn their answer into rows (what --json and
--jsonl print), text lines and paths (what -f and -0 print), and hand them to `output_rows`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import click
from imgd.daemon.errors import display_path

from . import preview, render
from .group import EXIT_NO_MATCH, note


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How a list of images is printed: the same on every command that lists images."""
    options = [
        click.option(
            "--json", "fmt", flag_value="json", help="One JSON document: a list of images with their details."
        ),
        click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON object a line."),
        click.option("-f", "--paths-only", "fmt", flag_value="paths", help="Only the paths, one a line."),
        click.option(
            "-0", "--null", "fmt", flag_value="null", help="Only the paths, each ended by NUL (for xargs -0)."
        ),
        preview.option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def echo_lines(lines: Sequence[str]) -> None:
    """Print the text form a line at a time."""
    for line in lines:
        click.echo(line)


def output_rows(
    ctx: click.Context,
    fmt: str | None,
    rows: Sequence[Any],
    lines: Sequence[str],
    paths: Sequence[str] = (),
    *,
    show: Callable[[Sequence[str]], None] = echo_lines,
    summary: str | None = None,
    none: str | None = None,
    none_exit: int = EXIT_NO_MATCH,
    none_note: str | None = None,
) -> None:
    """Print a listing in the format asked for, then its summary; with no rows, exit `none_exit` (grep's 1).

    --json prints `rows` as one JSON document, --jsonl one a line; -f prints `paths` one a line, -0
    each ended by NUL; otherwise `show` prints the text `lines`. `summary` goes to stderr in every
    format; with no rows, `none` goes to stderr in every format and `none_note` only beside the text
    form (and not with -q).
    """
    if fmt == "json":
        click.echo(render.json_text(list(rows)))
    elif fmt == "jsonl":
        for row in rows:
            click.echo(render.json_text(row))
    elif fmt == "paths":
        for path in paths:
            click.echo(display_path(path))
    elif fmt == "null":
        out = click.get_binary_stream("stdout")
        out.write(b"".join(os.fsencode(path) + b"\0" for path in paths))
        out.flush()
    else:
        show(lines)
        if not rows and none_note is not None:
            note(ctx, none_note)
    if summary is not None:
        click.echo(summary, err=True)
    if not rows:
        if none is not None:
            click.echo(none, err=True)
        if none_exit:
            ctx.exit(none_exit)
