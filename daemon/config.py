"""One frozen Config, loaded as defaults < TOML file < IMGD_* environment < command-line flags.

Every key is one row of KEYS (TOML name, kind, default, help); the Config dataclass, the TOML and
environment readers, validation, `imgd config` and the README's key list all follow from it, so a
new setting is one row.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .filetypes import DEFAULT_EXCLUDES
from .paths import default_socket


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "imgd" / "config.toml"


def default_state_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "imgd"


def pictures_dir() -> Path | None:
    """The user's pictures folder: XDG_PICTURES_DIR (environment, else user-dirs.dirs), else ~/Pictures.

    None when it does not exist, or when xdg-user-dirs points it at the home folder itself (its way
    of saying "disabled"): watching a whole home folder is never a default worth having.
    """
    home = Path.home()
    value = os.environ.get("XDG_PICTURES_DIR", "")
    if not value:
        try:
            text = (_xdg("XDG_CONFIG_HOME", ".config") / "user-dirs.dirs").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        for line in text.splitlines():
            key, _, raw = line.strip().partition("=")
            if key == "XDG_PICTURES_DIR":
                value = raw.strip().strip('"')
    if value.startswith("$HOME"):
        value = str(home) + value[len("$HOME") :]
    folder = Path(value) if value and os.path.isabs(value) else home / "Pictures"
    return folder if folder.is_dir() and folder != home else None


def default_watch_paths() -> tuple[Path, ...]:
    folder = pictures_dir()
    return (folder,) if folder else ()


# -- value kinds: each turns a raw TOML/env/flag value into the field's type or says why not ----------


def _path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ValueError("expected a path")
    return Path(os.path.expanduser(str(value)))


def _paths(value: Any) -> tuple[Path, ...]:
    items = value.split(os.pathsep) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str | Path) for v in items):
        raise ValueError("expected a list of folder paths")
    return tuple(Path(os.path.expanduser(str(v))) for v in items if str(v))


def _globs(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a list of glob patterns")
    return tuple(v.strip() for v in items if v.strip())


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected true or false")


def _whole(value: Any, positive: bool) -> int:
    # int() would silently truncate 2.5 and raise OverflowError on inf.
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    number = int(value)
    if number < 0 or (positive and number == 0):
        raise ValueError("must be a positive whole number")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def _cosine(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("expected a number")
    number = float(value)
    if not 0.0 < number <= 1.0:
        raise ValueError("a cosine similarity above 0 and at most 1")
    return number


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("expected a number")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("a number from 0 to 1")
    return number


KINDS: dict[str, Callable[[Any], Any]] = {
    "path": _path,
    "paths": _paths,
    "globs": _globs,
    "bool": _bool,
    "count": lambda v: _whole(v, positive=True),
    "whole": lambda v: _whole(v, positive=False),
    "seconds": _seconds,
    "text": _text,
}


@dataclass(frozen=True)
class Key:
    """One setting: where it lives in TOML, its kind, default and one line of help."""

    field: str  # the Config attribute
    toml: str  # "section.key" or a top-level "key"
    kind: str | Callable[[Any], Any]  # a name in KINDS, or a _choice(...)
    default: Any  # a value, or a zero-argument callable for defaults computed at load time
    help: str
    env: str = ""  # IMGD_<FIELD> unless given

    @property
    def env_var(self) -> str:
        return self.env or f"IMGD_{self.field.upper()}"

    @property
    def choices(self) -> tuple[str, ...]:
        return getattr(self.kind, "choices", ())

    def parse(self, value: Any, source: str) -> Any:
        parse = KINDS[self.kind] if isinstance(self.kind, str) else self.kind
        try:
            return parse(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {self.toml}: invalid value {value!r} ({exc}).") from None

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


KEYS: tuple[Key, ...] = (
    Key("state_dir", "state_dir", "path", default_state_dir, "catalog.db and index.faiss (--state-dir)"),
    Key(
        "socket_path",
        "socket",
        "path",
        None,
        "query socket; default $XDG_RUNTIME_DIR/imgd/<hash of state_dir>.sock, one per state folder",
        "IMGD_SOCKET",
    ),
    Key(
        "model",
        "model.name",
        "text",
        "clip-ViT-B-32",
        "hub name or local folder (--model); unset: the catalog's, else this",
    ),
    Key("device", "model.device", _choice("auto", "cpu", "cuda"), "auto", "where the model runs (--device)"),
    Key(
        "precision",
        "model.precision",
        _choice("auto", "float32", "bfloat16"),
        "auto",
        "auto = bfloat16 only where the CPU/GPU has it natively",
    ),
    Key(
        "backend",
        "model.backend",
        _choice("auto", "torch", "onnx", "openvino"),
        "auto",
        "what runs the model; auto = the fastest of ONNX Runtime and OpenVINO, measured here (--backend)",
    ),
    Key("text_model", "model.text", "text", None, "a separate text model for queries (--text-model)"),
    Key(
        "idle_unload",
        "model.idle_unload",
        "seconds",
        300.0,
        "the daemon frees its image and text models and its words reader after this many seconds unused; 0 = never",
    ),
    Key(
        "reembed_pause",
        "model.reembed_pause",
        "seconds",
        0.0,
        "during a model change, the daemon rests this long between batches, leaving the CPU to other work",
    ),
    Key("batch_size", "model.batch_size", "count", 32, "images per forward pass"),
    Key("decode_threads", "model.decode_threads", "whole", 0, "image decoding threads; 0 = one per core"),
    Key("max_image_pixels", "index.max_image_pixels", "count", 200_000_000, "larger images are refused as bombs"),
    Key(
        "persist_interval",
        "index.persist_interval",
        "seconds",
        60.0,
        "seconds between index saves when it changed, stretched for large libraries",
    ),
    Key(
        "exact_limit",
        "index.exact_limit",
        "count",
        40_000,
        "above this many unique images search uses an approximate IVF index",
    ),
    Key(
        "reconcile_interval",
        "index.reconcile_interval",
        "seconds",
        6 * 3600.0,
        "seconds between full rescans; 0 = never",
    ),
    Key(
        "missing_grace",
        "index.missing_grace",
        "seconds",
        7 * 24 * 3600.0,
        "seconds entries of a vanished folder are kept",
    ),
    Key("top_k", "search.top_k", "count", 10, "images listed when -k is not given"),
    Key(
        "preview",
        "search.preview",
        _choice("off", "auto", "kitty", "iterm", "sixel", "blocks"),
        "off",
        "thumbnails beside results; auto = on a terminal that shows images",
    ),
    Key(
        "thumbnail_cache_mb",
        "thumbnails.cache_mb",
        "count",
        1024,
        "cap of the thumbnail cache in state_dir/thumbs; least recently used go first",
    ),
    Key(
        "dupes_threshold",
        "dupes.threshold",
        _cosine,
        0.975,
        "cosine from which two images count as the same picture (`imgd dupes`)",
    ),
    Key("words_enabled", "words.enabled", "bool", True, "read the words in pictures (OCR) after they are embedded"),
    Key(
        "words_min_confidence",
        "words.min_confidence",
        _fraction,
        0.5,
        "lines read with a lower confidence (0-1) are kept but not searched",
    ),
    Key(
        "words_runtime",
        "words.runtime",
        _choice("auto", "onnx", "openvino"),
        "auto",
        "what runs the OCR models; auto = OpenVINO where measured faster and faithful, else ONNX Runtime",
    ),
    Key(
        "watch_paths",
        "watch.paths",
        "paths",
        default_watch_paths,
        "folders `imgd run` watches besides its arguments; unset: your pictures folder, when run gets none "
        "(':'-separated in env)",
    ),
    Key("exclude", "watch.exclude", "globs", DEFAULT_EXCLUDES, "names never indexed (case-insensitive globs)"),
    Key("extra_exclude", "watch.extra_exclude", "globs", (), "added to exclude, so the defaults stay"),
    Key("follow_symlinks", "watch.follow_symlinks", "bool", False, "follow symbolic links to files and folders"),
    Key(
        "settle_seconds", "watch.settle_seconds", "seconds", 1.0, "quiet time before a new or changed file is embedded"
    ),
    Key(
        "polling",
        "watch.polling",
        _choice("auto", "always", "never"),
        "auto",
        "auto = inotify, polling when the watch limit is hit",
    ),
)

BY_FIELD: dict[str, Key] = {key.field: key for key in KEYS}
BY_TOML: dict[str, Key] = {key.toml: key for key in KEYS}


class _Paths:
    """Derived settings; mixed into the generated Config."""

    if TYPE_CHECKING:  # the generated dataclass has one attribute per key
        state_dir: Path
        socket_path: Path | None
        model: str
        device: str
        precision: str
        backend: str
        text_model: str | None
        idle_unload: float
        reembed_pause: float
        batch_size: int
        decode_threads: int
        max_image_pixels: int
        persist_interval: float
        exact_limit: int
        reconcile_interval: float
        missing_grace: float
        top_k: int
        preview: str
        thumbnail_cache_mb: int
        dupes_threshold: float
        words_enabled: bool
        words_min_confidence: float
        words_runtime: str
        watch_paths: tuple[Path, ...]
        exclude: tuple[str, ...]
        extra_exclude: tuple[str, ...]
        follow_symlinks: bool
        settle_seconds: float
        polling: str
        given: frozenset[str]

        def __init__(self, **values: Any) -> None: ...

    @property
    def catalog_path(self) -> Path:
        return self.state_dir / "catalog.db"

    @property
    def index_path(self) -> Path:
        return self.state_dir / "index.faiss"

    @property
    def thumbnails_path(self) -> Path:
        return self.state_dir / "thumbs"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "writer.lock"

    @property
    def excludes(self) -> tuple[str, ...]:
        return self.exclude + self.extra_exclude

    @property
    def socket(self) -> Path:
        """The daemon's socket for this state folder: each library has its own, so one never answers for another."""
        if self.socket_path is not None:
            return self.socket_path
        return default_socket(self.state_dir, os.environ.get("XDG_RUNTIME_DIR"))

    def threads(self) -> int:
        return self.decode_threads or max(1, os.cpu_count() or 1)


def _field(key: Key) -> tuple[str, object, dataclasses.Field]:
    if callable(key.default):
        return key.field, Any, dataclasses.field(default_factory=key.default)
    return key.field, Any, dataclasses.field(default=key.default)


# The fields set by the config file, the environment or flags rather than left at their default.
_GIVEN = ("given", frozenset, dataclasses.field(default=frozenset(), compare=False, repr=False))

Config = dataclasses.make_dataclass(
    "Config",
    [*(_field(key) for key in KEYS), _GIVEN],
    bases=(_Paths,),
    frozen=True,
    namespace={"__doc__": "Every setting imgd reads; passed explicitly, never global.", "__module__": __name__},
)


def _from_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            import tomllib  # here: 5 ms of every command's start where no config file exists

            data = tomllib.load(fh)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found.") from None
        return {}
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or pass another --config.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror}).") from None
    values: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{sub}": subvalue for sub, subvalue in value.items()})
        else:
            flat[name] = value
    for toml_name, value in flat.items():
        key = BY_TOML.get(toml_name)
        if key is None:
            raise ConfigError(f"{path}: unknown key {toml_name}; see `imgd config --defaults` for the keys.")
        values[key.field] = key.parse(value, str(path))
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {k.field: k.parse(env[k.env_var], f"environment {k.env_var}") for k in KEYS if env.get(k.env_var)}


def load(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config; flags in `overrides` win, None values there mean 'not given'."""
    env = os.environ if env is None else env
    explicit = config_file or env.get("IMGD_CONFIG")
    path = Path(explicit) if explicit else default_config_path()
    values = _from_toml(path, required=bool(explicit))
    values.update(_from_env(env))
    for name, value in (overrides or {}).items():
        if value is None or (isinstance(value, tuple) and not value):
            continue
        values[name] = BY_FIELD[name].parse(value, "option")
    return Config(**values, given=frozenset(values))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(config: Config | None = None, with_help: bool = True) -> str:
    """The keys as a TOML document (defaults when config is None): `imgd config` and the README's list."""
    sections: dict[str, list[str]] = {}
    for key in KEYS:
        section, _, name = key.toml.rpartition(".")
        value = key.default_value() if config is None else getattr(config, key.field)
        if config is None and key.field in ("state_dir",):
            value = "~/.local/share/imgd"
        if config is None and key.field == "watch_paths":
            value = ("~/Pictures",)  # what the default is for most users, not this machine's
        line = f"{name} = {_toml_value(value)}" if value is not None else f"# {name} = (unset)"
        if with_help:
            extra = f"; one of {', '.join(key.choices)}" if key.choices else ""
            line = f"{line:<34} # {key.help}{extra} ({key.env_var})"
        sections.setdefault(section, []).append(line)
    parts = ["\n".join(sections.pop(""))]
    parts += [f"[{section}]\n" + "\n".join(lines) for section, lines in sections.items()]
    return "\n\n".join(parts) + "\n"
