"""`imgd config`: every setting as TOML."""

from __future__ import annotations

import click
from imgd.daemon import config as config_module

from .group import get_config


@click.command("config")
@click.option("--defaults", is_flag=True, help="Show the defaults instead of the settings in effect.")
@click.pass_context
def config_command(ctx: click.Context, defaults: bool) -> None:
    """Print every setting as TOML, with its meaning and environment variable."""
    click.echo(config_module.to_toml(None if defaults else get_config(ctx)), nl=False)
