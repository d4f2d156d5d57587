"""The few errors a user can act on; the CLI turns each into one line, never a traceback."""

from __future__ import annotations

import os


class ImgdError(Exception):
    """A problem the user can understand and fix; str() is the whole message."""


class ConfigError(ImgdError):
    """The config file, an environment variable or a flag holds an invalid value."""


class ModelUnavailable(ImgdError):
    """The CLIP weights cannot be loaded (no network, bad path, not a CLIP model)."""


class ModelMismatch(ImgdError):
    """The catalog was built with another model; its vectors cannot be mixed with this one's."""


class CatalogError(ImgdError):
    """The catalog file is damaged, foreign or from a newer imgd."""


class DiskFull(ImgdError):
    """The disk holding the state folder is full; writing resumes by itself once space is freed."""


class CatalogBusy(ImgdError):
    """Another imgd process (usually the daemon) is writing the catalog."""


class DaemonNotRunning(ImgdError):
    """No daemon answers on the socket; callers fall back to the direct path."""


class ProtocolError(ImgdError):
    """The daemon and the client could not understand each other."""


class ImageReadError(ImgdError):
    """One file could not be read or decoded; it is skipped and recorded, never fatal."""

    def __init__(self, path: str | bytes, reason: str) -> None:
        self.path = os.fsdecode(path)
        self.reason = reason
        super().__init__(f"{display_path(self.path)}: {reason}")


def display_path(path: str | bytes) -> str:
    """Render a path for humans: undecodable bytes shown as \\xNN, control chars escaped."""
    text = os.fsdecode(path)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
