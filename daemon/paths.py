"""Path rules every layer shares (base: imports nothing of imgd)."""

from __future__ import annotations

import os
import re
from pathlib import Path

# A model on the hub: `name` or `org/name` (letters, digits, `-`, `_`, `.`; not starting with `.` or `-`).
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_under(path: str, folder: str) -> bool:
    """Is path the folder itself or anything below it? (A plain prefix test would put /a/bc under /a/b.)"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def looks_like_path(name: str) -> bool:
    """Is a model name a folder? `./`, `../`, `/` and `~` say so, as does any `/` that is not the hub's `org/name`."""
    return name.startswith((".", "/", "~")) or ("/" in name and not _HUB_NAME.fullmatch(name))


SOCKET_PATH_MAX = 107  # bytes: a Unix socket address holds 108, its terminating NUL included


def state_folder(path: str | os.PathLike[str]) -> str:
    """The state folder as daemon and client compare it: absolute, symbolic links resolved."""
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def state_key(path: str | os.PathLike[str]) -> str:
    """A short name for a state folder (its socket's), the same in every process that names that folder."""
    import hashlib  # here: only commands that talk to a daemon need it

    return hashlib.sha256(os.fsencode(state_folder(path))).hexdigest()[:16]


def default_socket(state_dir: Path, runtime: str | None) -> Path:
    """$XDG_RUNTIME_DIR/imgd/<state_key>.sock; state_dir/imgd.sock without a runtime folder or past the cap."""
    if runtime and os.path.isabs(runtime):
        path = Path(runtime) / "imgd" / f"{state_key(state_dir)}.sock"
        if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
            return path
    return state_dir / "imgd.sock"  # already one per state folder
