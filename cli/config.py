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
    if defaults:
        click.echo(config_module.to_toml(None), nl=False)
        return
    from imgd.daemon.service.library import with_catalog_model

    # The model in effect is the catalog's when none is named, as for every other command.
    click.echo(config_module.to_toml(with_catalog_model(get_config(ctx))), nl=False)
