"""What a saved search does with a picture it matched: move, copy or link it into a folder, run a command.

A file action never overwrites: a taken name gets a number (`photo-1.jpg`). A move within one file
system is a rename, so the watcher sees a move and the catalog keeps the picture's vector. A command
runs without a shell (an argv), with the path as its last argument and IMGD_PATH, IMGD_SCORE and
IMGD_ALERT in its environment, in a session of its own so that one past its time limit is killed
whole (children too).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass

OUTPUT_KEEP = 2000  # characters of a command's output kept in the log
MAX_NUMBER = 10_000  # numbered names tried before a file action gives up

_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
_AT_FDCWD = -100


@dataclass(frozen=True)
class Outcome:
    """How one action went: `ok`, `failed` or `killed`, the resulting path, and what is worth logging."""

    outcome: str
    path: str
    detail: str = ""


def numbered(folder: str, name: str, number: int) -> str:
    """`name` in `folder`, or with `-number` before its extension when number > 0."""
    if number == 0:
        return os.path.join(folder, name)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f"{stem}-{number}{ext}")


def _rename_noreplace(src: str, dest: str) -> None:
    """Rename, failing with FileExistsError rather than replacing dest (renameat2 where the C library has it)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # a file system without RENAME_NOREPLACE: the fallback below
            raise OSError(code, os.strerror(code), dest)
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dest)
    os.rename(src, dest)


def _copy_new(src: str, dest: str) -> None:
    """Copy into a new file only: opening with O_EXCL fails on a name that is taken."""
    with open(src, "rb") as source, open(dest, "xb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    with contextlib.suppress(OSError):
        shutil.copystat(src, dest)


def _move(src: str, dest: str) -> None:
    try:
        _rename_noreplace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_new(src, dest)  # another file system: a copy, then the original goes
        os.unlink(src)


def place(kind: str, src: str, folder: str) -> Outcome:
    """Move, copy or (symbolically) link src into folder under a free name."""
    step = {"move": _move, "copy": _copy_new, "link": lambda s, d: os.symlink(s, d)}[kind]
    try:
        os.makedirs(folder, exist_ok=True)
        name = os.path.basename(src)
        for number in range(MAX_NUMBER):
            dest = numbered(folder, name, number)
            try:
                step(src, dest)
            except FileExistsError:
                continue
            return Outcome("ok", dest, f"{kind} to {dest}")
        return Outcome("failed", src, f"no free name for {name} in {folder}")
    except OSError as exc:
        return Outcome("failed", src, f"could not {kind} to {folder}: {exc.strerror or exc}")


def run_hook(command: tuple[str, ...], path: str, score: float, name: str, timeout: float) -> Outcome:
    """Run the command with the path, wait at most `timeout` seconds; its output is kept for the log."""
    env = {**os.environ, "IMGD_PATH": path, "IMGD_SCORE": f"{score:.4f}", "IMGD_ALERT": name}
    try:
        proc = subprocess.Popen(
            [*command, path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome("failed", path, f"could not run {command[0]}: {exc.strerror or exc}")
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return Outcome("killed", path, f"killed after {timeout:g}s; output: {_text(output)}".rstrip())
    text = _text(output)
    if proc.returncode != 0:
        return Outcome("failed", path, f"exit {proc.returncode}; output: {text}".rstrip())
    return Outcome("ok", path, f"output: {text}".rstrip() if text else "")


def _text(output: bytes | None) -> str:
    text = (output or b"").decode(errors="replace").strip()
    return text[-OUTPUT_KEEP:]
