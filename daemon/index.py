"""The vector index: the only module that touches FAISS.

The index is a cache of the catalog's vectors. Its file carries a header (generation, count, dim,
checksum) so a missing, stale, truncated or corrupt file is detected on load and rebuilt from the
catalog instead of being served. Writes are atomic: temp file, fsync, rename, fsync the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .catalog import Catalog

log = logging.getLogger(__name__)

MAGIC = b"IMGDIDX1"
_HEADER_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class IndexHeader:
    generation: int
    count: int
    dim: int
    sha256: str


class IndexFileError(Exception):
    """The index file cannot be trusted; the caller rebuilds from the catalog."""


class VectorIndex:
    """Exact inner-product search over L2-normalised vectors, keyed by catalog content id."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lock = threading.RLock()
        self.generation = 0  # catalog generation this index reflects
        self.dirty = False  # changed since the last save

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray, generation: int | None = None) -> None:
        if len(ids) == 0:
            return
        # At the catalog's float16 precision, so a rebuilt index answers exactly like the live one.
        vectors = np.asarray(vectors).astype(np.float16).astype(np.float32).reshape(-1, self.dim)
        with self._lock:
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
            self._touch(generation)

    def remove(self, ids: list[int] | np.ndarray, generation: int | None = None) -> int:
        """Remove ids in one call: FAISS scans every stored id per call, so callers batch removals."""
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))
            self._touch(generation)
            return removed

    def _touch(self, generation: int | None) -> None:
        self.dirty = True
        if generation is not None:
            self.generation = generation

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k (content id, cosine) pairs, best first."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            k = min(k, len(self))
            if k <= 0:
                return []
            scores, ids = self._index.search(query, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def reconstruct(self, content_id: int) -> np.ndarray:
        with self._lock:
            return self._index.reconstruct(int(content_id))

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically; a crash at any moment leaves the old file or the new one, never half."""
        with self._lock:
            payload = faiss.serialize_index(self._index).tobytes()
            generation, count = self.generation, len(self)
            self.dirty = False
        header = json.dumps(
            {
                "generation": generation,
                "count": count,
                "dim": self.dim,
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        ).encode()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(MAGIC + _HEADER_LEN.pack(len(header)) + header)
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException:
            self.dirty = True
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    @classmethod
    def read(cls, path: Path) -> tuple[VectorIndex, IndexHeader]:
        """Load and check the file against its own header; raise IndexFileError if it is damaged."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise IndexFileError("index file is missing") from None
        except OSError as exc:
            raise IndexFileError(f"index file unreadable ({exc.strerror})") from None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER_LEN.size:
            raise IndexFileError("index file has no imgd header")
        (length,) = _HEADER_LEN.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + _HEADER_LEN.size
        try:
            meta = json.loads(data[start : start + length])
            header = IndexHeader(int(meta["generation"]), int(meta["count"]), int(meta["dim"]), str(meta["sha256"]))
        except (ValueError, KeyError, TypeError):
            raise IndexFileError("index file header is damaged") from None
        payload = data[start + length :]
        if hashlib.sha256(payload).hexdigest() != header.sha256:
            raise IndexFileError("index file is truncated or corrupt (checksum mismatch)")
        try:
            raw = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError:
            raise IndexFileError("index file could not be parsed by FAISS") from None
        if raw.d != header.dim or raw.ntotal != header.count:
            raise IndexFileError("index file contents disagree with its header")
        index = cls(header.dim)
        index._index = faiss.IndexIDMap2(raw) if not isinstance(raw, faiss.IndexIDMap2) else raw
        index.generation = header.generation
        return index, header

    @classmethod
    def build(cls, catalog: Catalog, dim: int) -> VectorIndex:
        """Rebuild from the catalog's vectors, the source of truth."""
        index = cls(dim)
        for ids, vectors in catalog.iter_vectors():
            index.add(ids, vectors)
        index.generation = catalog.generation
        index.dirty = True
        return index

    @classmethod
    def load_verified(cls, path: Path, catalog: Catalog, dim: int) -> VectorIndex:
        """The saved index if it matches the catalog exactly, else a fresh one built from the catalog."""
        try:
            index, header = cls.read(path)
            generation, count = catalog.generation, catalog.count_contents()
            if header.dim != dim:
                raise IndexFileError(f"index file has {header.dim} dims, the model has {dim}")
            if header.generation != generation or header.count != count:
                raise IndexFileError(
                    f"index file is stale (generation {header.generation}, {header.count} vectors; "
                    f"catalog has generation {generation}, {count} vectors)"
                )
            index.dirty = False
            return index
        except IndexFileError as exc:
            if catalog.count_contents() or Path(path).exists():
                log.info("rebuilding the index from the catalog: %s", exc)
            return cls.build(catalog, dim)


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
