"""`imgd`: the command line. It parses, calls the engine or the daemon, and prints; nothing more.

Heavy modules (torch, FAISS, numpy) are imported inside the commands that need them, so that
`imgd search` through a running daemon starts in a blink.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from imgd.daemon import config as config_module
from imgd.daemon.config import Config
from imgd.daemon.errors import ImgdError, display_path
from imgd.daemon.paths import is_under
from imgd.daemon.protocol import (
    FILE_TYPES,
    MAX_K,
    SORTS,
    DupesRequest,
    FailedRequest,
    Filters,
    Options,
    Request,
    SearchRequest,
    SimilarRequest,
    StatusRequest,
    Term,
    min_size,
    split_weight,
)

from . import preview, render

EXIT_NO_MATCH = 1
EXIT_ERROR = 2
AUTO_CUT_K = 200  # answers --auto may give when -k is not given
LOADING_NOTE_AFTER = 0.5  # seconds of model loading before `imgd: loading model X...` is shown
EXIT_READER_GONE = 128 + signal.SIGPIPE  # 141: what the shell reports for grep when its reader left


class UserError(click.ClickException):
    """An ImgdError shown as one line; exit 2 like grep's errors, 1 is kept for 'no match'."""

    exit_code = EXIT_ERROR


OPTIONS_KEY = "imgd.options"  # ctx.meta: the global options given so far, at any level
VERBOSITY_KEY = "imgd.verbosity"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Record a global option wherever it was written; one given after the subcommand wins."""
    if value is not None and param.name:
        ctx.meta.setdefault(OPTIONS_KEY, {})[param.name] = value


def _count(ctx: click.Context, param: click.Parameter, value: int) -> None:
    sign = -1 if param.name == "quiet" else 1
    ctx.meta[VERBOSITY_KEY] = ctx.meta.get(VERBOSITY_KEY, 0) + sign * (value or 0)


def global_options() -> list[click.Option]:
    """The options every command takes, before or after its name; new Option objects per command."""
    common: dict[str, Any] = {"expose_value": False}
    return [
        click.Option(
            ["--config", "config_file"],
            type=click.Path(dir_okay=False),
            help="Config file (env IMGD_CONFIG).",
            callback=_remember,
            **common,
        ),
        click.Option(
            ["--state-dir", "state_dir"],
            type=click.Path(file_okay=False),
            help="Where the catalog and index live (env IMGD_STATE_DIR).",
            callback=_remember,
            **common,
        ),
        click.Option(
            ["--model", "model"],
            help="CLIP model name or local folder (env IMGD_MODEL; default: the catalog's, else clip-ViT-B-32).",
            callback=_remember,
            **common,
        ),
        click.Option(
            ["--device", "device"],
            type=click.Choice(["auto", "cpu", "cuda"]),
            help="Where the model runs (default auto).",
            callback=_remember,
            **common,
        ),
        click.Option(
            ["--backend", "backend"],
            type=click.Choice(["auto", "torch", "onnx"]),
            help="What runs the model: ONNX Runtime or torch (env IMGD_BACKEND; default auto: ONNX where it can).",
            callback=_remember,
            **common,
        ),
        click.Option(
            ["--text-model", "text_model"],
            help="A separate text model for queries, e.g. a multilingual one (env IMGD_TEXT_MODEL).",
            callback=_remember,
            **common,
        ),
        click.Option(
            ["-v", "--verbose", "verbose"],
            count=True,
            help="More log lines (repeat for more).",
            callback=_count,
            **common,
        ),
        click.Option(
            ["-q", "--quiet", "quiet"],
            count=True,
            help="Only results and errors: no progress bar, summary or notes.",
            callback=_count,
            **common,
        ),
    ]


def add_global_options(command: click.Command) -> None:
    """Give `command` the global options it lacks; an option whose name it already uses is left out."""
    taken = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    names = {param.name for param in command.params}
    for option in global_options():
        if option.name not in names and not taken & {*option.opts, *option.secondary_opts}:
            command.params.append(option)


class ImgdGroup(click.Group):
    """The group every imgd command hangs from: global options everywhere, ImgdError as one line.

    Each command added (subgroups' commands too: they are ImgdGroups) gets the global options, so
    `imgd index DIR --model M` works like `imgd --model M index DIR` without each command asking.
    """

    group_class = type  # `@group.group()` makes another ImgdGroup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_global_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImgdError as exc:
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("imgd: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            reader_gone()


def reader_gone() -> None:
    """The reader of our output left (`imgd search ... | head -1`): stop quietly, as grep does.

    Python ignores SIGPIPE, so a write raises BrokenPipeError instead of ending the process; Click would
    turn it into exit 1, which reads as "no match". Later writes (the interpreter's own flush at exit)
    go to /dev/null, as the Python docs advise, so nothing is printed about it.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EXIT_READER_GONE)


def options(ctx: click.Context) -> dict[str, Any]:
    """The global options given anywhere on the command line so far (config_file, state_dir, model, ...)."""
    return ctx.meta.setdefault(OPTIONS_KEY, {})


def setup_logging(verbosity: int, daemon: bool = False) -> None:
    import logging  # not at the top: `imgd search` through the daemon never logs, and starts faster

    from imgd.daemon.verbosity import level_for

    # The daemon's log starts at INFO (a line per file changed), a command's at WARNING (skips).
    level = level_for(verbosity, logging.INFO if daemon else logging.WARNING)
    fmt = "%(levelname)s %(message)s" if daemon else "imgd: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing at INFO
    # Not DEBUG (every inotify event), and never above WARNING: the daemon listens for its overflow warning.
    logging.getLogger("watchdog").setLevel(min(max(level, logging.INFO), logging.WARNING))


def get_config(ctx: click.Context, **flags: Any) -> Config:
    values = dict(options(ctx))
    values.update({k: v for k, v in flags.items() if v is not None})
    config_file = values.pop("config_file", None)
    return config_module.load(config_file, values)


@click.group(cls=ImgdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """imgd: semantic image search over your photo folders.

    The options below work on every command, before or after its name.
    """
    ctx.obj = options(ctx)  # the same dict: options given after the subcommand land in it too


def _verbosity(ctx: click.Context) -> int:
    return ctx.meta.get(VERBOSITY_KEY, 0)


def _quiet(ctx: click.Context) -> bool:
    """-q (anywhere, or `index --quiet`): only results and errors."""
    return _verbosity(ctx) < 0


def note(ctx: click.Context, text: str) -> None:
    """One informational line on stderr, unless quiet."""
    if not _quiet(ctx):
        click.echo(f"imgd: {text}", err=True)


def _load_embedder(config: Config, name: str | None = None, announce: bool = True) -> Any:
    """Load the model; on a terminal, say so in one line if that takes more than a moment (torch: 5-20 s)."""
    model = name or config.model
    ctx = click.get_current_context(silent=True)
    timer = None
    if announce and sys.stderr.isatty() and not (ctx is not None and _quiet(ctx)):
        line = f"imgd: loading model {display_path(model)}..."
        timer = threading.Timer(LOADING_NOTE_AFTER, lambda: click.echo(line, err=True))
        timer.daemon = True
        timer.start()
    try:
        from imgd.daemon.embedders import load_embedder

        return load_embedder(
            model,
            config.device,
            config.precision,
            config.batch_size,
            backend=config.backend,
            state_dir=config.state_dir,
            text_model=config.text_model or None,
        )
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()


# -- index ---------------------------------------------------------------------------------


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--reembed", is_flag=True, help="Re-embed everything with the current model (after changing --model).")
@click.option("--rebuild", is_flag=True, help="Set a damaged catalog aside and index the folders anew.")
@click.pass_context
def index(ctx: click.Context, folders: tuple[Path, ...], reembed: bool, rebuild: bool) -> None:
    """Index FOLDERS once: add new images, re-embed changed ones, drop deleted ones.

    On a terminal it shows a progress bar; it ends with a summary line; -q/--quiet shows neither.
    """
    setup_logging(_verbosity(ctx))
    for folder in folders:
        if not folder.is_dir():
            problem = "not a folder" if folder.exists() else "no such folder"
            raise UserError(f"{display_path(str(folder))}: {problem}; give the folders that hold your images.")
    from imgd.daemon.service.library import open_library, with_catalog_model

    config = with_catalog_model(get_config(ctx))

    started = time.monotonic()
    embedder = _load_embedder(config)
    library = open_library(config, embedder, reembed=reembed, rebuild=rebuild)
    if reembed and not library.reembedding:
        note(ctx, f"the catalog already holds the vectors of model '{embedder.name}'; nothing to re-embed.")
    try:
        with render.progress_bar(not _quiet(ctx) and sys.stderr.isatty()) as (on_total, progress):
            if library.engine.change is not None:
                change_model(ctx, library, on_total, progress)
            roots = [str(f.resolve()) for f in folders]
            summary = library.engine.reconcile(roots, progress=progress, on_total=on_total)
            backlog = library.catalog.media_backlog_count()
            if backlog:  # a catalog from before imgd kept metadata: read the headers (no pixels, no model)
                if on_total is not None:
                    on_total(backlog)  # a second bar in place of the first
                library.engine.backfill_all_media(progress)
        library.engine.save_index()
    finally:
        library.close()
    if not _quiet(ctx):
        click.echo(render.summary_line(summary, time.monotonic() - started), err=True)


def change_model(
    ctx: click.Context, library: Any, on_total: Callable[[int], None] | None, progress: Callable[[int], None] | None
) -> None:
    """Re-embed every image with the new model beside the old vectors, then switch: an interrupted run
    leaves search on the old model and the next one goes on from there."""
    done, total = library.catalog.model_change_progress()
    if on_total is not None:
        on_total(total - done)
    while count := library.engine.reembed_step():
        if progress is not None:
            progress(count)
    dropped = library.engine.finish_change()
    note(
        ctx,
        f"switched to model {display_path(library.engine.embedder.name)}: {total - len(dropped)} images re-embedded"
        + (f", {len(dropped)} unreadable now (indexed again below if they can be)" if dropped else ""),
    )


# -- search and similar ---------------------------------------------------------------------


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
    click.option("--type", "types", help=f"File types, comma-separated: {', '.join(FILE_TYPES)}."),
    click.option("--landscape", "orientation", flag_value="landscape", help="Only wider than tall."),
    click.option("--portrait", "orientation", flag_value="portrait", help="Only taller than wide."),
    click.option("--square", "orientation", flag_value="square", help="Only square."),
    click.option("--min-size", help="At least WIDTHxHEIGHT, a shorter side in pixels, or megapixels (12MP)."),
]


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(FILTER_OPTIONS):
        fn = option(fn)
    return fn


def build_filters(folders: tuple[str, ...], types: str | None, given: dict[str, Any]) -> Filters:
    """Filters from the FILTER_OPTIONS values (popped from `given`) and folders."""
    size = given.pop("min_size")
    return Filters(
        folders=tuple(os.path.abspath(os.path.expanduser(f)) for f in folders),
        after=given.pop("after"),
        before=given.pop("before"),
        camera=given.pop("camera"),
        types=tuple(t for t in (types or "").split(",") if t.strip()),
        orientation=given.pop("orientation"),
        **(min_size(size) if size else {}),
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
        click.option("--min-score", type=float, help="Leave out answers scoring below this cosine similarity."),
        click.option(
            "--auto", "auto_cut", is_flag=True, help="Stop where the scores fall away from the rest of the library."
        ),
        click.option(
            "--sort", type=click.Choice(SORTS), default="score", show_default=True, help="Order of the answers."
        ),
        click.option("--direct", is_flag=True, help="Answer here instead of asking the daemon."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return output_options(fn)


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


def build_options(
    config: Config, top_k: int | None, folders: tuple[str, ...], types: str | None, **given: Any
) -> Options:
    filters = build_filters(folders, types, given)
    auto_cut = given.pop("auto_cut")
    k = top_k or (AUTO_CUT_K if auto_cut else config.top_k)
    return Options(k=k, filters=filters, min_score=given.pop("min_score"), auto_cut=auto_cut, sort=given.pop("sort"))


def ask(ctx: click.Context, config: Config, request: Request, direct: bool = False) -> dict[str, Any]:
    """Send a request through the one facade; logging is set up only if this process answers it."""
    from imgd.daemon.api.facade import Api

    api = Api(config, lambda name: _load_embedder(config, name), direct=direct)
    if direct or not config.socket.exists():
        setup_logging(_verbosity(ctx))
    return api.call(request)


def print_hits(
    ctx: click.Context,
    hits: list[dict[str, Any]],
    fmt: str | None,
    preview_mode: str | None = None,
    config: Config | None = None,
) -> None:
    """Print images in the chosen format, thumbnails beside them on a terminal; exit 1 like grep on none."""
    if fmt == "json":
        click.echo(render.hits_json(hits))
    elif fmt == "jsonl":
        for hit in hits:
            click.echo(render.hit_json(hit))
    elif fmt == "paths":
        for hit in hits:
            click.echo(display_path(hit["path"]))
    elif fmt == "null":
        out = click.get_binary_stream("stdout")
        out.write(b"".join(os.fsencode(hit["path"]) + b"\0" for hit in hits))
        out.flush()
    else:
        preview.echo_hits(hits, render.hits_lines(hits), preview_mode, config or get_config(ctx))
    if not hits:
        click.echo("imgd: no matching images on disk.", err=True)
        ctx.exit(EXIT_NO_MATCH)


@cli.command()
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
    preview_mode, stray = preview.split_value(preview_mode)
    terms = (stray, *terms) if stray is not None else terms  # `--preview "a dog"`: the text, not a mode
    parsed = [
        *(parse_term("text", t) for t in terms),
        *(parse_term("image", t) for t in (*like, *image)),
        *(parse_term("text", t, -1.0) for t in unlike_text),
        *(parse_term("image", t, -1.0) for t in unlike_image),
    ]
    if not parsed:
        raise click.UsageError("give a text to search for, --like IMAGE, or both.")
    request = SearchRequest(terms=tuple(parsed), options=build_options(config, **given))
    print_hits(ctx, ask(ctx, config, request, direct)["hits"], fmt, preview_mode, config)


@cli.command()
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
    preview_mode, stray = preview.split_value(preview_mode)
    if stray is not None:  # `--preview PATH`: the path, not a mode
        if path is not None:
            raise click.UsageError(f"--preview takes one of {', '.join(preview.MODES)}, not {stray!r}.")
        path = stray
    if path is None:
        raise click.UsageError("give the PATH of an image to find more like it.")
    request = SimilarRequest(path=os.path.abspath(os.path.expanduser(path)), options=build_options(config, **given))
    print_hits(ctx, ask(ctx, config, request, direct)["hits"], fmt, preview_mode, config)


def _note_ignored_model(ctx: click.Context, config: Config) -> None:
    """A search must use the model its vectors came from; say so when --model names another."""
    named = options(ctx).get("model")
    if named:
        from imgd.daemon.service.library import ignored_model

        recorded = ignored_model(config, named)
        if recorded:
            note(ctx, f"searching with the catalog's model {display_path(recorded)}, not --model {named}.")


# -- dupes --------------------------------------------------------------------------------


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False))
@click.option(
    "--threshold",
    type=float,
    help="Cosine from which two images are the same picture (default [dupes] threshold, 0.975).",
)
@click.option(
    "--in",
    "within",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Only groups with an image under this folder (repeatable); -f/-0 --not-keeper then list only those.",
)
@click.option("--bursts", is_flag=True, help="Also list bursts: shots of one camera seconds apart that look alike.")
@click.option(
    "--burst-gap",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds between two shots of a burst, at most (camera clock, EXIF).",
)
@click.option("--not-keeper", is_flag=True, help="With -f/-0: leave each group's suggested keeper out.")
@click.option("--direct", is_flag=True, help="Compute here instead of asking the daemon.")
@filter_options
@output_options
@click.pass_context
def dupes(
    ctx: click.Context,
    folders: tuple[str, ...],
    threshold: float | None,
    within: tuple[str, ...],
    bursts: bool,
    burst_gap: float,
    not_keeper: bool,
    direct: bool,
    fmt: str | None,
    types: str | None,
    **given: Any,
) -> None:
    """Groups of images that are the same picture, the suggested keeper first.

    \b
    Exact copies (the same bytes) and near-duplicates (re-encoded, resized, cropped a little,
    rotated, converted, lightly edited: cosine >= --threshold to the keeper). The keeper is the
    image with the most pixels, then the oldest, then the shortest path. FOLDERS limit which
    images are compared (default: the whole library). --bursts adds bursts: shots of one camera
    at most --burst-gap seconds apart (EXIF capture time) that look alike. imgd never deletes or
    moves a file.

    \b
    Examples:
      imgd dupes                                   # every group in the library
      imgd dupes --in ~/Downloads -f --not-keeper  # downloads that are copies of a better image
      imgd dupes ~/Pictures -0 --not-keeper | xargs -0 trash-put
    """
    config = get_config(ctx)
    request = DupesRequest(
        threshold=threshold,
        filters=build_filters(folders, types, given),
        within=tuple(os.path.abspath(os.path.expanduser(f)) for f in within),
        bursts=bursts,
        burst_gap=burst_gap,
    )
    reply = ask(ctx, config, request, direct)
    groups = reply["groups"]
    if fmt in ("paths", "null"):
        paths = [
            m["path"]
            for g in groups
            for position, m in enumerate(g["members"])
            if not (not_keeper and (position == 0 or (request.within and not _under(m["path"], request.within))))
        ]
        if fmt == "paths":
            for path in paths:
                click.echo(display_path(path))
        else:
            out = click.get_binary_stream("stdout")
            out.write(b"".join(os.fsencode(p) + b"\0" for p in paths))
            out.flush()
    elif fmt == "json":
        click.echo(render.json_text(groups))
    elif fmt == "jsonl":
        for group in groups:
            click.echo(render.json_text(group))
    else:
        for line in render.dupes_lines(groups):
            click.echo(line)
    click.echo(render.dupes_summary(groups, reply["threshold"]), err=True)
    if not groups:
        ctx.exit(EXIT_NO_MATCH)


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(is_under(path, folder) for folder in folders)


# -- status, failed and config -------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--failed", is_flag=True, help="List the files that could not be indexed, with why.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, failed: bool) -> None:
    """Show what the daemon is doing and what the catalog holds."""
    if failed:
        ctx.invoke(failed_command, as_json=as_json)
        return
    info = ask(ctx, get_config(ctx), StatusRequest())["status"]
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for line in render.status_lines(info):
            click.echo(line)


@cli.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {path, error}.")
@click.pass_context
def failed_command(ctx: click.Context, as_json: bool) -> None:
    """List the files that could not be indexed, and why."""
    rows = ask(ctx, get_config(ctx), FailedRequest())["failed"]
    if as_json:
        click.echo(render.json_text(rows))
        return
    for row in rows:
        click.echo(f"{display_path(row['path'])}: {row['error']}")
    if not rows:
        note(ctx, "no failed files.")


@cli.command("config")
@click.option("--defaults", is_flag=True, help="Show the defaults instead of the settings in effect.")
@click.pass_context
def config_command(ctx: click.Context, defaults: bool) -> None:
    """Print every setting as TOML, with its meaning and environment variable."""
    click.echo(config_module.to_toml(None if defaults else get_config(ctx)), nl=False)


# -- the gallery ---------------------------------------------------------------------------


@cli.command()
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
    setup_logging(_verbosity(ctx))
    config = get_config(ctx)
    from imgd.web.server import Gallery, is_loopback, kept_token

    if not is_loopback(host):
        click.echo(
            f"imgd: warning: listening on {host}, not only on this computer: whoever reaches it with the "
            "token sees your photos, over an unencrypted connection.",
            err=True,
        )
    token = kept_token(config.state_dir / "web-token") if keep_token else None
    gallery = Gallery(config, lambda name: _load_embedder(config, name), host, port, token)
    click.echo(f"imgd gallery: {gallery.url}")
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(gallery.url)
    gallery.run()


# -- the daemon ----------------------------------------------------------------------------


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def run(ctx: click.Context, folders: tuple[Path, ...]) -> None:
    """Run the daemon in the foreground: watch FOLDERS and [watch] paths, and keep the index fresh.

    [watch] paths defaults to your pictures folder (XDG_PICTURES_DIR, else ~/Pictures), used only when
    no FOLDERS are given.
    """
    setup_logging(_verbosity(ctx), daemon=True)
    from imgd.daemon.service.library import with_catalog_model
    from imgd.daemon.service.run import run_daemon

    config = with_catalog_model(get_config(ctx))
    roots = watch_roots(config, folders)
    if not roots:
        raise UserError(
            "no folders to watch; pass them as arguments or set [watch] paths in the config "
            "(the default, your pictures folder, does not exist)."
        )
    code = run_daemon(config, roots, lambda config: _load_embedder(config, announce=False))  # it logs the load
    ctx.exit(code)


def watch_roots(config: Config, folders: tuple[Path, ...]) -> tuple[Path, ...]:
    """The folders given, plus [watch] paths when set; the default (the pictures folder) only when none are."""
    if folders and "watch_paths" not in config.given:
        return tuple(dict.fromkeys(folders))
    return tuple(dict.fromkeys([*config.watch_paths, *folders]))


@cli.group()
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
    from imgd.cli.unit import (
        WEB_UNIT_NAME,
        install_unit,
        render_unit,
        render_web_unit,
        service_environment,
        service_problems,
    )
    from imgd.daemon.service.library import with_catalog_model

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


def main() -> None:
    cli(prog_name="imgd")


if __name__ == "__main__":
    main()
