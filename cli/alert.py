"""`imgd alert`: saved searches that act on each new picture they match, and `imgd events`, the daemon's stream."""

from __future__ import annotations

import datetime as dt
import os
import shlex
from typing import Any

import click
from imgd.daemon.alertprotocol import (
    AlertAddRequest,
    AlertListRequest,
    AlertLogRequest,
    AlertNameRequest,
)
from imgd.daemon.errors import display_path
from imgd.daemon.protocol import SearchRequest

from . import render
from .group import EXIT_NO_MATCH, ImgdGroup, UserError, get_config, note
from .options import build_options, parse_term, query_options
from .runtime import ask
from .search import print_hits


@click.group(cls=ImgdGroup)
def alert() -> None:
    """Saved searches that act on each new picture they match.

    \b
    The daemon checks every newly indexed picture against every saved search and, on a match,
    moves, copies or links it into a folder and/or runs a command. Each action is logged
    (`imgd alert log`). Only the daemon acts; without one, saved searches are stored and tested.

    \b
    Examples:
      imgd alert add receipts "a receipt" --move-to ~/Receipts
      imgd alert add dog "my dog" --copy-to ~/Shared/Dog --min-score 0.28
      imgd alert add errors "an error dialog" --in ~/Downloads --exec "notify-send 'error screenshot'"
      imgd alert test receipts
    """


def _terms_text(query: dict[str, Any]) -> str:
    """The query as it would be typed again."""
    parts = []
    for term in query.get("terms", []):
        weight, kind, value = float(term["weight"]), term["kind"], term["value"]
        flag = {"text": ("", "--not "), "image": ("--like ", "--not-like ")}[kind][weight < 0]
        size = abs(weight)
        parts.append(f"{flag}{'' if size == 1 else f'{size:g}:'}{shlex.quote(value)}")
    return " ".join(parts)


def _action_text(saved: dict[str, Any]) -> str:
    parts = []
    if saved.get("file_action"):
        parts.append(f"{saved['file_action']} to {display_path(saved['folder'])}")
    if saved.get("command"):
        parts.append(f"run {shlex.join(saved['command'])} (at most {saved['timeout']:g}s)")
    return "; ".join(parts) or "log only"


def _threshold_text(saved: dict[str, Any]) -> str:
    return f"min score {saved['min_score']:g}" if saved.get("min_score") is not None else "auto threshold"


def _line(saved: dict[str, Any]) -> str:
    return f"{saved['name']}  {_terms_text(saved['query'])}  -> {_action_text(saved)}  ({_threshold_text(saved)})"


@alert.command("add")
@click.argument("name")
@click.argument("terms", nargs=-1)
@click.option("--like", multiple=True, metavar="[WEIGHT:]PATH", help="An image whose look to match (repeatable).")
@click.option("--not", "unlike_text", multiple=True, metavar="[WEIGHT:]TEXT", help="A text to move away from.")
@click.option("--not-like", "unlike_image", multiple=True, metavar="[WEIGHT:]PATH", help="An image to move away from.")
@click.option("--exec", "command", metavar="CMD", help="Run CMD (no shell) with the path as its last argument.")
@click.option("--move-to", type=click.Path(file_okay=False), help="Move a matching picture into this folder.")
@click.option("--copy-to", type=click.Path(file_okay=False), help="Copy a matching picture into this folder.")
@click.option("--link-to", type=click.Path(file_okay=False), help="Link a matching picture into this folder.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds --exec may run.")
@query_options
@click.pass_context
def alert_add(
    ctx: click.Context,
    name: str,
    terms: tuple[str, ...],
    like: tuple[str, ...],
    unlike_text: tuple[str, ...],
    unlike_image: tuple[str, ...],
    command: str | None,
    move_to: str | None,
    copy_to: str | None,
    link_to: str | None,
    timeout: float,
    direct: bool,
    fmt: str | None,
    preview_mode: str | None,
    **given: Any,
) -> None:
    """Save a search NAME that acts on each new picture matching TERMS.

    \b
    TERMS, --like, --not and the filters are those of `imgd search`. A picture matches when it
    scores at least --min-score, or by default where --auto would end this query's answers over
    the library (recomputed as the library grows). --exec runs a command without a shell (write
    `sh -c '...'` for one) with the path as its last argument and IMGD_PATH, IMGD_SCORE and
    IMGD_ALERT in its environment; it is killed after --timeout seconds. --move-to, --copy-to and
    --link-to never overwrite: a taken name gets a number. A move keeps the picture's vector.
    """
    config = get_config(ctx)
    parsed = [
        *(parse_term("text", t) for t in terms),
        *(parse_term("image", t) for t in like),
        *(parse_term("text", t, -1.0) for t in unlike_text),
        *(parse_term("image", t, -1.0) for t in unlike_image),
    ]
    if not parsed:
        raise click.UsageError("give a text to look for, --like IMAGE, or both.")
    places = [(kind, folder) for kind, folder in (("move", move_to), ("copy", copy_to), ("link", link_to)) if folder]
    if len(places) > 1:
        raise click.UsageError("give one of --move-to, --copy-to and --link-to, not several.")
    try:
        argv = tuple(shlex.split(command)) if command is not None else ()
    except ValueError as exc:
        raise click.UsageError(f"--exec: {exc}; quote it as a shell would.") from None
    if command is not None and not argv:
        raise click.UsageError("--exec needs a command.")
    kind, folder = places[0] if places else (None, None)
    request = AlertAddRequest(
        name=name,
        query=SearchRequest(terms=tuple(parsed), options=build_options(config, **given)),
        command=argv,
        file_action=kind,
        folder=os.path.abspath(os.path.expanduser(folder)) if folder else None,
        timeout=timeout,
    )
    added = ask(ctx, config, request, direct)["added"]
    if fmt in ("json", "jsonl"):
        click.echo(render.json_text(added))
    else:
        click.echo(f"saved {_line(added)}")
    if not argv and kind is None:
        note(ctx, "no --exec or --move-to/--copy-to/--link-to: matches are only logged and sent as events.")


def _listing_format(fn: Any) -> Any:
    fn = click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON object a line.")(fn)
    return click.option("--json", "fmt", flag_value="json", help="One JSON document.")(fn)


def _print(fmt: str | None, rows: list[dict[str, Any]], lines: list[str]) -> None:
    if fmt == "json":
        click.echo(render.json_text(rows))
    elif fmt == "jsonl":
        for row in rows:
            click.echo(render.json_text(row))
    else:
        for line in lines:
            click.echo(line)


@alert.command("list")
@_listing_format
@click.pass_context
def alert_list(ctx: click.Context, fmt: str | None) -> None:
    """The saved searches: query, action and threshold."""
    config = get_config(ctx)
    saved = ask(ctx, config, AlertListRequest())["alerts"]
    _print(fmt, saved, [_line(item) for item in saved])
    if not saved and fmt is None:
        note(ctx, "no saved searches; add one with `imgd alert add NAME QUERY...`.")


@alert.command("show")
@click.argument("name")
@_listing_format
@click.pass_context
def alert_show(ctx: click.Context, name: str, fmt: str | None) -> None:
    """One saved search and what it did lately."""
    config = get_config(ctx)
    reply = ask(ctx, config, AlertNameRequest(name=_name(name), verb="show"))
    if fmt is not None:
        click.echo(render.json_text(reply))
        return
    click.echo(_line(reply["alert"]))
    for entry in reply["log"]:
        click.echo(f"  {_log_line(entry)}")


@alert.command("remove")
@click.argument("name")
@click.pass_context
def alert_remove(ctx: click.Context, name: str) -> None:
    """Forget a saved search (its log stays)."""
    config = get_config(ctx)
    ask(ctx, config, AlertNameRequest(name=_name(name), verb="remove"))
    note(ctx, f"removed saved search {name}.")


@alert.command("test")
@click.argument("name")
@_listing_format
@click.option("-f", "--paths-only", "fmt", flag_value="paths", help="Only the paths, one a line.")
@click.pass_context
def alert_test(ctx: click.Context, name: str, fmt: str | None) -> None:
    """What the saved search matches in the library now; acts on nothing."""
    config = get_config(ctx)
    reply = ask(ctx, config, AlertNameRequest(name=_name(name), verb="test"))
    if reply["threshold"] is None:
        note(ctx, "the library holds no images yet: nothing to test against.")
        ctx.exit(EXIT_NO_MATCH)
    note(ctx, f"threshold {reply['threshold']:.4f}; nothing was moved, copied or run.")
    print_hits(ctx, reply["hits"], fmt, None, config)


def _log_line(entry: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(entry["at"]).strftime("%Y-%m-%d %H:%M:%S")
    detail = f"  {entry['detail']}" if entry.get("detail") else ""
    return (
        f"{when}  {entry['name']}  {entry['action']} {entry['outcome']}  "
        f"{entry['score']:.4f}  {display_path(entry['path'])}{detail}"
    )


@alert.command("log")
@click.argument("name", required=False)
@click.option("-n", "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="How many actions.")
@_listing_format
@click.pass_context
def alert_log(ctx: click.Context, name: str | None, limit: int, fmt: str | None) -> None:
    """What the saved searches did lately (NAME: one of them), oldest first."""
    config = get_config(ctx)
    entries = ask(ctx, config, AlertLogRequest(name=_name(name) if name else None, limit=limit))["log"]
    _print(fmt, entries, [_log_line(entry) for entry in entries])


def _name(name: str) -> str:
    """A name as a request checks it, worded for the command line."""
    from imgd.daemon.alertprotocol import alert_name
    from imgd.daemon.protocol import RequestError

    try:
        return alert_name(name)
    except RequestError as exc:
        raise UserError(str(exc)) from None


@click.command("events")
@click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON object a line.")
@click.pass_context
def events(ctx: click.Context, fmt: str | None) -> None:
    """Follow the daemon's events as they happen: indexed, updated, moved, removed, failed, matched.

    \b
    A reader that falls behind is told how many it missed (a `dropped N` event); the daemon never
    waits for it. Runs until interrupted or the daemon stops.
    """
    from imgd.daemon.api import client
    from imgd.daemon.errors import DaemonNotRunning

    config = get_config(ctx)
    try:
        for event in client.events(config.socket):
            click.echo(render.json_text(event) if fmt == "jsonl" else _event_line(event))
    except DaemonNotRunning:
        raise UserError(
            "no imgd daemon runs, so there are no events to follow; start one with `imgd run DIR`."
        ) from None


def _event_line(event: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(event.get("at", 0)).strftime("%H:%M:%S")
    kind = event.get("event", "?")
    if kind == "dropped":
        return f"{when}  dropped {event.get('count')}"
    if kind == "matched":
        return f"{when}  matched {event.get('name')}  {display_path(event['path'])}  ({event.get('score', 0):.4f})"
    if kind == "moved":
        return f"{when}  moved {display_path(event.get('source', '?'))} -> {display_path(event['path'])}"
    if kind == "failed":
        return f"{when}  failed {display_path(event['path'])}: {event.get('error')}"
    return f"{when}  {kind} {display_path(event.get('path', ''))}"
