"""The group every imgd command hangs from: the global options, what they leave in the context, errors as one line."""

from __future__ import annotations

import difflib
import os
import signal
import sys
from typing import Any

import click
from imgd.daemon import config as config_module
from imgd.daemon.config import Config
from imgd.daemon.errors import ImgdError

from . import wording
from .preview import MODES as PREVIEW_MODES

EXIT_NO_MATCH = 1
EXIT_ERROR = 2
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
    """Add -v and subtract -q, wherever written, into one verbosity."""
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
            type=click.Choice(["auto", "torch", "onnx", "openvino"]),
            help="What runs the model: ONNX Runtime, OpenVINO or torch (env IMGD_BACKEND; default auto: fastest here).",
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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, preview_equals(args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImgdError as exc:
            raise UserError(wording.message(exc)) from None
        except KeyboardInterrupt:
            click.echo("imgd: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            reader_gone()


def preview_equals(args: list[str]) -> list[str]:
    """`args` with each bare `--preview` written `--preview=auto`, and every mode checked.

    `--preview` takes its mode after `=` only, so the word after a bare one is a term or a path, never
    swallowed as a mode. A word there that is a mode or nearly one (`--preview block`, the old spelling)
    is refused in one sentence rather than searched for; words after `--` are terms, left as they are.
    """
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--preview":
            following = out[i + 1] if i + 1 < len(out) else ""
            if mode := difflib.get_close_matches(following, PREVIEW_MODES, n=1, cutoff=0.8):
                raise UserError(
                    f"--preview takes its mode after '=' (--preview={mode[0]}); to search for "
                    f"{following!r}, write it before --preview."
                )
            out[i] = "--preview=auto"
        elif arg.startswith("--preview=") and (mode := arg.partition("=")[2]) not in PREVIEW_MODES:
            raise UserError(f"--preview= takes one of {', '.join(PREVIEW_MODES)}, not {mode!r}.")
    return out


RETRY_INTERRUPT_S = 0.05


def never_ignore_ctrl_c() -> None:
    """Make a Ctrl-C that lands in a finaliser still end the command, with exit 130 as anywhere else.

    Python raises KeyboardInterrupt wherever the main thread is; inside a `__del__` (the regex module's,
    while the model loads) it is "ignored": printed as a traceback, and the command runs on to the end.
    The hook swallows that one quietly and raises it again a moment later from a timer (SIGALRM), once
    the finaliser has returned; a hook cannot raise itself, and a signal sent from it would land in it.
    """

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, RETRY_INTERRUPT_S)
        else:
            sys.__unraisablehook__(unraisable)

    def interrupt(signum: int, frame: Any) -> None:
        if frame is not None and frame.f_code is hook.__code__:  # still in the hook: it would be lost
            signal.setitimer(signal.ITIMER_REAL, RETRY_INTERRUPT_S)
            return
        raise KeyboardInterrupt

    sys.unraisablehook = hook
    signal.signal(signal.SIGALRM, interrupt)


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


def get_config(ctx: click.Context, **flags: Any) -> Config:
    """Load the config with the global options given so far, and `flags` that are set, over it."""
    values = dict(options(ctx))
    values.update({k: v for k, v in flags.items() if v is not None})
    config_file = values.pop("config_file", None)
    return config_module.load(config_file, values)


def verbosity(ctx: click.Context) -> int:
    """-v counts up, -q down, wherever they were written."""
    return ctx.meta.get(VERBOSITY_KEY, 0)


def quiet(ctx: click.Context) -> bool:
    """-q (anywhere, or `index --quiet`): only results and errors."""
    return verbosity(ctx) < 0


def note(ctx: click.Context, text: str) -> None:
    """One informational line on stderr, unless quiet."""
    if not quiet(ctx):
        click.echo(f"imgd: {text}", err=True)
