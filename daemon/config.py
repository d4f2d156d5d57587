"""One frozen Config, loaded as defaults < TOML file < IMGD_* environment < command-line flags."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_EXCLUDES: tuple[str, ...] = (
    "*.part",
    "*.crdownload",
    "*.tmp",
    "*.download",
    "*.partial",
    "*~",
    ".*",  # hidden files and folders, rsync's .name.XXXXXX temp files, macOS ._* resource forks
    "@eaDir",
    ".thumbnails",
    "#recycle",
    "$RECYCLE.BIN",
)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
)


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "imgd" / "config.toml"


def default_state_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "imgd"


@dataclass(frozen=True)
class Config:
    """Every setting imgd reads; passed explicitly, never global."""

    state_dir: Path = field(default_factory=default_state_dir)
    model: str = "clip-ViT-B-32"
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | float32 | bfloat16
    batch_size: int = 32
    decode_threads: int = 0  # 0 = one per core
    max_image_pixels: int = 200_000_000
    top_k: int = 10
    watch_paths: tuple[Path, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    extra_exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    settle_seconds: float = 1.0
    persist_interval: float = 60.0
    exact_limit: int = 40_000  # above this many unique images, search an IVF index instead of every vector
    reconcile_interval: float = 6 * 3600.0
    missing_grace: float = 7 * 24 * 3600.0
    polling: str = "auto"  # auto | always | never
    socket_path: Path | None = None

    @property
    def catalog_path(self) -> Path:
        return self.state_dir / "catalog.db"

    @property
    def index_path(self) -> Path:
        return self.state_dir / "index.faiss"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "writer.lock"

    @property
    def excludes(self) -> tuple[str, ...]:
        return self.exclude + self.extra_exclude

    @property
    def socket(self) -> Path:
        if self.socket_path is not None:
            return self.socket_path
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = Path(runtime) / "imgd" if runtime and os.path.isabs(runtime) else self.state_dir
        return base / "imgd.sock"

    def threads(self) -> int:
        return self.decode_threads or max(1, os.cpu_count() or 1)


# TOML location of each key: (section or None, key) -> field name.
_TOML_KEYS: dict[tuple[str | None, str], str] = {
    (None, "state_dir"): "state_dir",
    (None, "socket"): "socket_path",
    ("model", "name"): "model",
    ("model", "device"): "device",
    ("model", "precision"): "precision",
    ("model", "batch_size"): "batch_size",
    ("model", "decode_threads"): "decode_threads",
    ("index", "max_image_pixels"): "max_image_pixels",
    ("index", "persist_interval"): "persist_interval",
    ("index", "exact_limit"): "exact_limit",
    ("index", "reconcile_interval"): "reconcile_interval",
    ("index", "missing_grace"): "missing_grace",
    ("search", "top_k"): "top_k",
    ("watch", "paths"): "watch_paths",
    ("watch", "exclude"): "exclude",
    ("watch", "extra_exclude"): "extra_exclude",
    ("watch", "follow_symlinks"): "follow_symlinks",
    ("watch", "settle_seconds"): "settle_seconds",
    ("watch", "polling"): "polling",
}

_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "float32", "bfloat16"),
    "polling": ("auto", "always", "never"),
}

_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _key_name(field_name: str) -> str:
    for (section, key), name in _TOML_KEYS.items():
        if name == field_name:
            return f"{section}.{key}" if section else key
    return field_name


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a raw TOML/env/flag value into the field's type, or say which key is wrong and why."""
    where = f"{source}: {_key_name(name)}"
    kind = _FIELDS[name].type
    try:
        if name in ("state_dir",) or (name == "socket_path" and value is not None):
            if not isinstance(value, str | Path) or not str(value):
                raise ValueError("expected a path")
            return Path(os.path.expanduser(str(value)))
        if name == "watch_paths":
            items = value.split(os.pathsep) if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(v, str | Path) for v in items):
                raise ValueError("expected a list of folder paths")
            return tuple(Path(os.path.expanduser(str(v))) for v in items if str(v))
        if name in ("exclude", "extra_exclude"):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
                raise ValueError("expected a list of glob patterns")
            return tuple(v.strip() for v in items if v.strip())
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            ):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError("expected true or false")
        if kind == "int":
            # int() would silently truncate 2.5 and raise OverflowError on inf.
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            number = int(value)
            if number < 0 or (name in ("batch_size", "top_k", "max_image_pixels", "exact_limit") and number == 0):
                raise ValueError("must be a positive whole number")
            return number
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number of seconds")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("expected a finite number")
            if number < 0:
                raise ValueError("must not be negative")
            return number
        if name in _CHOICES:
            if value not in _CHOICES[name]:
                raise ValueError(f"expected one of {', '.join(_CHOICES[name])}")
            return value
        if not isinstance(value, str) or not value:
            raise ValueError("expected a non-empty string")
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {value!r} ({exc}).") from None


def _from_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found.") from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or pass another --config.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror}).") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for subkey, subvalue in value.items():
                name = _TOML_KEYS.get((key, subkey))
                if name is None:
                    raise ConfigError(f"{path}: unknown key {key}.{subkey}; see the README for the keys.")
                values[name] = _coerce(name, subvalue, str(path))
        else:
            name = _TOML_KEYS.get((None, key))
            if name is None:
                raise ConfigError(f"{path}: unknown key {key}; see the README for the keys.")
            values[name] = _coerce(name, value, str(path))
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _FIELDS:
        var = "IMGD_SOCKET" if name == "socket_path" else f"IMGD_{name.upper()}"
        if env.get(var):
            values[name] = _coerce(name, env[var], f"environment {var}")
    return values


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
        values[name] = _coerce(name, value, "option")
    return Config(**values)
