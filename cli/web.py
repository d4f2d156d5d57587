"""`imgd web`: the gallery, started in this process (a separate one from the daemon)."""

from __future__ import annotations

import sys

import click

from . import runtime
from .group import get_config, verbosity


@click.command()
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8470, show_default=True, help="TCP port; 0 picks a free one."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback shows your photos to the network (behind the token).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the gallery in the web browser.")
@click.option(
    "--keep-token",
    is_flag=True,
    help="Reuse the token saved in the state folder (web-token), so the URL survives restarts.",
)
@click.pass_context
def web(ctx: click.Context, port: int, host: str, open_browser: bool, keep_token: bool) -> None:
    """Browse and search your photos in a local web gallery (a separate process from the daemon)."""
    runtime.setup_logging(verbosity(ctx))
    config = get_config(ctx)
    from imgd.web.server import Gallery, is_loopback, kept_token

    if not is_loopback(host):
        click.echo(
            f"imgd: warning: listening on {host}, not only on this computer: whoever reaches it with the "
            "token sees your photos, over an unencrypted connection.",
            err=True,
        )
    token = kept_token(config.state_dir / "web-token") if keep_token else None
    gallery = Gallery(config, lambda name: runtime.load_embedder(config, name), host, port, token)
    click.echo(f"imgd gallery: {gallery.url}")
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(gallery.url)
    gallery.run()
