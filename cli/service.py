"""`imgd service install`: the systemd user units for the daemon and, with --web, the gallery."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from imgd.daemon import config as config_module
from imgd.daemon.errors import display_path

from .group import ImgdGroup, UserError, get_config, options


@click.group(cls=ImgdGroup)
def service() -> None:
    """Install the systemd user service."""


@service.command("install")
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), help="Where to write imgd.service.")
@click.option("--web", is_flag=True, help="Also write imgd-web.service, the gallery on 127.0.0.1 (off by default).")
@click.option("--web-port", type=click.IntRange(1, 65535), default=8470, show_default=True, help="The gallery's port.")
@click.pass_context
def service_install(
    ctx: click.Context, folders: tuple[Path, ...], print_only: bool, unit_dir: Path | None, web: bool, web_port: int
) -> None:
    """Write ~/.config/systemd/user/imgd.service: `imgd run` on FOLDERS, with this shell's settings.

    The service manager knows nothing of this shell, so the unit pins what imgd uses here: the
    config file, the state folder, --model/--device/--backend/--text-model and other IMGD_* variables,
    and FOLDERS (without them, the service watches [watch] paths, by default your pictures folder).
    --web adds imgd-web.service, the gallery, with the same settings.
    """
    from imgd.daemon.service.library import with_catalog_model

    from .installer import install_unit, service_problems
    from .unit import WEB_UNIT_NAME, render_unit, render_web_unit, service_environment

    given = options(ctx)
    config = get_config(ctx)
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{display_path(str(folder))}: not a folder; give the folders that hold your images.")
    pinned = dict(
        model=given.get("model") or os.environ.get("IMGD_MODEL") or None,
        device=given.get("device") or os.environ.get("IMGD_DEVICE") or None,
        backend=given.get("backend") or os.environ.get("IMGD_BACKEND") or None,
        text_model=given.get("text_model") or os.environ.get("IMGD_TEXT_MODEL") or None,
        environment=service_environment(os.environ),
    )
    text = render_unit(
        sys.argv[0],
        given.get("config_file"),
        given.get("state_dir"),
        folders=tuple(str(folder) for folder in folders),
        **pinned,
    )
    web_text = (
        render_web_unit(sys.argv[0], given.get("config_file"), given.get("state_dir"), web_port, **pinned)
        if web
        else None
    )
    for problem in service_problems(str(config.state_dir), with_catalog_model(config).model):
        click.echo(f"imgd: warning: {problem}", err=True)
    if print_only:
        click.echo(text, nl=False)
        if web_text is not None:
            click.echo(f"\n# ---- {WEB_UNIT_NAME} ----")
            click.echo(web_text, nl=False)
        return
    path = install_unit(text, unit_dir)
    click.echo(f"wrote {path}")
    if web_text is not None:
        from imgd.web.server import kept_token

        click.echo(f"wrote {install_unit(web_text, unit_dir, WEB_UNIT_NAME)}")
        token = kept_token(config.state_dir / "web-token")
        click.echo(f"the gallery will answer on http://127.0.0.1:{web_port}/?token={token}")
    watched = [str(folder) for folder in folders] or [str(folder) for folder in config.watch_paths]
    if watched:
        click.echo(f"it watches {', '.join(display_path(os.path.abspath(f)) for f in watched)}")
    else:
        click.echo(
            "note: no folders to watch yet; give them to `imgd service install DIR...` or set [watch] paths in "
            f"{config_module.default_config_path()} before starting the service.",
            err=True,
        )
    click.echo("enable and start it with:")
    click.echo("  systemctl --user daemon-reload")
    click.echo("  systemctl --user enable --now imgd.service" + (f" {WEB_UNIT_NAME}" if web else ""))
    click.echo("follow its log with: journalctl --user -u imgd -f")
