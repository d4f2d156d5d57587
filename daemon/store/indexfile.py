"""The index file: a header (generation, count, dim, checksum, catalog id) before FAISS's own bytes.

A missing, truncated, corrupt, foreign or older-format file is refused here (IndexFileError) and the
caller rebuilds from the catalog. Writes are atomic: temp file, fsync, rename, fsync the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from .ivf import STORAGE

MAGIC = b"IMGDIDX2"  # 2: IVF stores 8-bit codes; an older imgd finds no header of its own and rebuilds
_OLDER = (b"IMGDIDX1",)  # read too: an exact index is the same in both, a float16 IVF is refused (rebuilt)
_HEADER_LEN = struct.Struct("<I")


class IndexFileError(Exception):
    """The index file cannot be trusted; the caller rebuilds from the catalog."""


def write(path: Path, header: dict[str, object], payload: np.ndarray) -> None:
    """Write header and FAISS payload atomically; a crash at any moment leaves the old file or the new one."""
    text = json.dumps({**header, "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + _HEADER_LEN.pack(len(text)) + text)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read(path: Path) -> tuple[dict, faiss.Index]:
    """The header (a dict) and the FAISS index of a file checked against its own header.

    The payload is hashed, then parsed, a few MB at a time: read whole, the file and FAISS's copy of it
    were both held at once (twice the index at every start). Parsed only once its checksum holds, so a
    damaged size field never reaches FAISS.
    """
    try:
        with open(path, "rb") as fh:
            meta, raw = _read(fh)
    except FileNotFoundError:
        raise IndexFileError("index file is missing") from None
    except OSError as exc:
        raise IndexFileError(f"index file unreadable ({exc.strerror})") from None
    return meta, raw


def _read(fh: BinaryIO) -> tuple[dict, faiss.Index]:
    """Check and parse an open index file: its header, its checksum, then FAISS's part."""
    head = fh.read(len(MAGIC) + _HEADER_LEN.size)
    if not head.startswith((MAGIC, *_OLDER)) or len(head) < len(MAGIC) + _HEADER_LEN.size:
        raise IndexFileError("index file has no imgd header")
    (length,) = _HEADER_LEN.unpack_from(head, len(MAGIC))
    try:
        meta = json.loads(fh.read(length))
        int(meta["generation"]), int(meta["count"]), int(meta["dim"]), str(meta["sha256"])
    except (ValueError, KeyError, TypeError):
        raise IndexFileError("index file header is damaged") from None
    start, digest = fh.tell(), hashlib.sha256()
    while chunk := fh.read(1 << 22):
        digest.update(chunk)
    if digest.hexdigest() != meta["sha256"]:
        raise IndexFileError("index file is truncated or corrupt (checksum mismatch)")
    fh.seek(start)
    try:
        raw = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
    except RuntimeError:
        raise IndexFileError("index file could not be parsed by FAISS") from None
    count, dim = int(meta["count"]), int(meta["dim"])
    if raw.d != dim or raw.ntotal != count:
        raise IndexFileError("index file contents disagree with its header")
    if not isinstance(raw, faiss.IndexIDMap2 | faiss.IndexIVF):
        raise IndexFileError(f"index file holds an unexpected FAISS index ({type(raw).__name__})")
    codec = getattr(getattr(raw, "sq", None), "qtype", None)
    if isinstance(raw, faiss.IndexIVF) and (not head.startswith(MAGIC) or codec != STORAGE):
        raise IndexFileError("index file holds an older approximate index (float16 lists)")
    return meta, raw


def discard_partial_saves(path: Path) -> int:
    """Delete temp files of saves a crash interrupted; call only with the writer lock held."""
    removed = 0
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
