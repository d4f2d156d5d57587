"""`imgd status` and `imgd failed`: what the daemon is doing, and the files it could not index."""

from __future__ import annotations

import json

import click
from imgd.daemon.errors import display_path
from imgd.daemon.protocol import FailedRequest, StatusRequest

from . import render
from .group import get_config
from .output import output_rows
from .runtime import ask


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--failed", is_flag=True, help="List the files that could not be indexed, with why.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, failed: bool) -> None:
    """Show what the daemon is doing and what the catalog holds."""
    if failed:
        ctx.invoke(failed_command, as_json=as_json)
        return
    info = ask(ctx, get_config(ctx), StatusRequest(duplicates=True))["status"]
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for line in render.status_lines(info):
            click.echo(line)


@click.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {path, error}.")
@click.pass_context
def failed_command(ctx: click.Context, as_json: bool) -> None:
    """List the files that could not be indexed, and why."""
    rows = ask(ctx, get_config(ctx), FailedRequest())["failed"]
    output_rows(
        ctx,
        "json" if as_json else None,
        rows,
        [f"{display_path(row['path'])}: {row['error']}" for row in rows],
        none_exit=0,
        none_note="no failed files.",
    )
