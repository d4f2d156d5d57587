"""Path rules every layer shares (base: imports nothing of imgd)."""

from __future__ import annotations

import os


def is_under(path: str, folder: str) -> bool:
    """Is path the folder itself or anything below it? (A plain prefix test would put /a/bc under /a/b.)"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
