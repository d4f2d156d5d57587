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
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import faiss

from .ivf import STORAGE

MAGIC = b"IMGDIDX2"  # 2: IVF stores 8-bit codes; an older imgd finds no header of its own and rebuilds
_OLDER = (b"IMGDIDX1",)  # read too: an exact index is the same in both, a float16 IVF is refused (rebuilt)
_HEADER_LEN = struct.Struct("<I")
HEADER_ROOM = 1024  # bytes kept for the header (~200 used), written last: it holds the payload's checksum
_CHUNK = 1 << 22  # bytes FAISS hands over at a time when saving


class IndexFileError(Exception):
    """The index file cannot be trusted; the caller rebuilds from the catalog."""


def write(path: Path, dump: Callable[[Callable[[bytes], int]], dict[str, object]]) -> None:
    """Write an index file atomically; a crash at any moment leaves the old file or the new one.

    `dump(put)` hands FAISS's bytes to `put` as FAISS makes them and returns the header: they go
    straight into the temp file, hashed on the way, so no copy of the index is ever held (serialized
    to one buffer first, a 1.45M-vector index took +1.5 GB for the save). The header goes in a room
    reserved before them, padded with spaces (JSON ignores them), once the checksum is known.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + _HEADER_LEN.pack(HEADER_ROOM) + b" " * HEADER_ROOM)
            digest = hashlib.sha256()

            def put(chunk: bytes) -> int:
                digest.update(chunk)
                return fh.write(chunk)

            header = dump(put)
            text = json.dumps({**header, "sha256": digest.hexdigest()}).encode()
            if len(text) > HEADER_ROOM:
                raise ValueError(f"index file header of {len(text)} bytes exceeds its {HEADER_ROOM}")
            fh.seek(len(MAGIC) + _HEADER_LEN.size)
            fh.write(text.ljust(HEADER_ROOM))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def dump_into(index: faiss.Index, put: Callable[[bytes], int]) -> None:
    """FAISS's bytes of `index`, handed to `put` a few MB at a time."""
    faiss.write_index(index, faiss.PyCallbackIOWriter(put, _CHUNK))


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
