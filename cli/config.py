"""`imgd config`: every setting as TOML."""

from __future__ import annotations

from pathlib import Path

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
    config = with_catalog_model(get_config(ctx))
    click.echo(config_module.to_toml(config), nl=False)
    if config.backend == "auto":
        from imgd.daemon.embedders.choice import recorded_reason

        reason = recorded_reason(Path(config.state_dir) / "models", config.model)
        if reason:
            click.echo(f"# backend in use (auto, measured here): {reason}")
