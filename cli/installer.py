"""The service's unit installed: what would stop the service that the unit cannot fix, and the file written.

unit.py renders the unit's text; this module checks the model cache and the folders the service
needs, and writes the unit where the user's service manager looks for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from imgd.daemon.errors import ImgdError, display_path

from .unit import UNIT_NAME, in_temp, local_model


def model_caches(env: Mapping[str, str]) -> list[Path]:
    """Where sentence-transformers looks for a hub model, as the Hugging Face libraries decide it."""
    if env.get("HF_HUB_CACHE"):
        hub = Path(env["HF_HUB_CACHE"])
    elif env.get("HF_HOME"):
        hub = Path(env["HF_HOME"]) / "hub"
    else:
        cache = env.get("XDG_CACHE_HOME", "")
        hub = (Path(cache) if os.path.isabs(cache) else Path.home() / ".cache") / "huggingface" / "hub"
    folders = [hub.expanduser()]
    if env.get("SENTENCE_TRANSFORMERS_HOME"):
        folders.append(Path(env["SENTENCE_TRANSFORMERS_HOME"]).expanduser())
    return folders


def model_cached(name: str, env: Mapping[str, str]) -> bool:
    """Is hub model `name` in a local cache, where the service (no network) can load it?"""
    repos = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for folder in model_caches(env):
        for repo in repos:
            snapshots = folder / ("models--" + repo.replace("/", "--")) / "snapshots"
            if (snapshots.is_dir() and any(snapshots.iterdir())) or (folder / repo.replace("/", "_")).is_dir():
                return True
    return False


def service_problems(state_dir: str, model: str, env: Mapping[str, str] | None = None) -> list[str]:
    """What would stop the service from working that the unit alone cannot fix, each with its fix."""
    env = os.environ if env is None else env
    problems = []
    folder = local_model(model)
    if folder is None:
        if not model_cached(model, env):
            problems.append(
                f"model {model} is not in the local model cache ({display_path(str(model_caches(env)[0]))}) and "
                "the service has no network, so it would fail to start; run `imgd index DIR` once on this "
                "machine with network access (it downloads the model), or pass --model FOLDER."
            )
    elif not os.path.isdir(folder):
        problems.append(
            f"the model folder {display_path(folder)} does not exist, so the service would fail to start; "
            "pass the folder that holds the model with --model."
        )
    elif not os.access(folder, os.R_OK | os.X_OK):
        problems.append(f"the model folder {display_path(folder)} is not readable by you; fix its permissions.")
    elif in_temp(folder):
        problems.append(
            f"the model folder {display_path(folder)} is in a temporary folder, emptied at reboot, after which "
            "the service would fail; move it somewhere lasting (say ~/.local/share/imgd-models/), re-embed with "
            "`imgd --model NEW index --reembed DIR` and rerun `imgd --model NEW service install`."
        )
    state = os.path.abspath(state_dir)
    if in_temp(state):
        problems.append(
            f"the state folder {display_path(state)} is in a temporary folder, emptied at reboot with the catalog "
            "in it; pass --state-dir somewhere lasting (the default is ~/.local/share/imgd)."
        )
    elif os.path.exists(state) and not os.access(state, os.W_OK | os.X_OK):
        problems.append(f"the state folder {display_path(state)} is not writable by you; fix its permissions.")
    return problems


def install_unit(text: str, unit_dir: Path | None = None, name: str = UNIT_NAME) -> Path:
    """Write a unit (imgd.service unless named) into unit_dir (default: the user's systemd folder) atomically."""
    folder = Path(unit_dir) if unit_dir is not None else default_unit_dir()
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ImgdError(f"cannot write {display_path(str(path))} ({reason}); pass a writable --unit-dir.") from None
    return path


def default_unit_dir() -> Path:
    """Where systemd looks for a user's own units: $XDG_CONFIG_HOME/systemd/user."""
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "systemd" / "user"
