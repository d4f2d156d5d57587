"""Path rules every layer shares (base: imports nothing of imgd)."""

from __future__ import annotations

import os
import re

# A model on the hub: `name` or `org/name` (letters, digits, `-`, `_`, `.`; not starting with `.` or `-`).
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_under(path: str, folder: str) -> bool:
    """Is path the folder itself or anything below it? (A plain prefix test would put /a/bc under /a/b.)"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def looks_like_path(name: str) -> bool:
    """Is a model name a folder? `./`, `../`, `/` and `~` say so, as does any `/` that is not the hub's `org/name`."""
    return name.startswith((".", "/", "~")) or ("/" in name and not _HUB_NAME.fullmatch(name))
