"""ONNX Runtime helpers shared by the backends (onnx.py, openvino.py) and the export: sessions and the probe check.

Apart from both so neither imports the other at load time: the backend imports the export only when a
model must be exported, and the export needs these to verify what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .base import normalise

PROBE_COSINE = 0.9999


class OnnxUnavailable(Exception):
    """The ONNX backend cannot serve this model; `st_model` is the torch model if one was loaded."""

    def __init__(self, message: str, st_model: Any = None, fingerprint: str | None = None) -> None:
        super().__init__(message)
        self.st_model = st_model
        self.fingerprint = fingerprint


class RuntimeRefused(OnnxUnavailable):
    """A runtime cannot serve a sound export faithfully (missing, or its vectors disagree): not damage to repair."""


class ProbeFailed(Exception):
    """A session's vector for the recorded probe is not the recorded one: the files are damaged."""


class Probed(Protocol):
    """What a runtime needs from the tower it opens: the probe batch and the recorded-probe check."""

    kind: str

    def probe_inputs(self) -> dict[str, np.ndarray]: ...

    def probe_reference(self) -> np.ndarray | None: ...

    def probe(self, session: Any) -> float: ...


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of a with the same row of b."""
    return np.sum(normalise(a) * normalise(b), axis=1)


def version(package: str) -> str | None:
    """The installed version of a package, without importing it; None when it is not installed.

    Read from the name of its wheel's `<name>-<version>.dist-info` folder, first on sys.path as
    importlib.metadata finds it: a warm `auto` or OpenVINO start asks for two versions, and importing
    importlib.metadata (email, zipfile, csv) costs ~30 ms of CPU. Any other layout asks importlib.metadata.
    """
    prefix = f"{package.replace('-', '_')}-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        found = [n for n in names if n.endswith(".dist-info") and n.startswith(prefix)]
        if len(found) == 1:
            return found[0][len(prefix) : -len(".dist-info")]
        if found or any(n == package or n.startswith((prefix, f"{package}.")) for n in names):
            break  # two dist-infos, or the package without one: let importlib.metadata decide
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def stamp(path: Path) -> list[int]:
    """What changes whenever a file is written or replaced: inode, size, mtime and ctime (no call sets ctime back)."""
    info = path.stat()
    return [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def verified(note: Path, key: dict[str, Any]) -> bool:
    """Whether `note` says a file passed its probe under exactly `key` (its stamp included)."""
    try:
        return bool(json.loads(note.read_text()) == key)
    except (OSError, ValueError):
        return False


def record_verified(note: Path, key: dict[str, Any]) -> None:
    """Note that a file passed its probe under `key`, so later opens of the unchanged file skip the probe."""
    with contextlib.suppress(OSError):
        tmp = note.with_name(f".{note.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(key))
        os.replace(tmp, note)


def make_session(path: Path, threads: int = 0, device: str = "cpu") -> Any:
    """Open an ONNX file on the CPU (or CUDA), with `threads` intra-op threads (0: one per core) that never spin."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores the decode threads need, and a query on a busy CPU waits for them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing CUDA provider is said once, below
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    if session.get_providers()[0] != providers[0]:  # ONNX Runtime falls back to the CPU with only a warning
        raise RuntimeRefused(f"ONNX Runtime's {providers[0]} did not load")
    return session


class OrtRuntime:
    """ONNX Runtime on the CPU at fp32: the reference every other runtime is checked against."""

    name = "onnx"
    precision = "float32"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        # CUDA's kernels round differently from the CPU's: held to the other runtimes' bar, not the export's
        self.threshold = PROBE_COSINE if device == "cpu" else 0.999

    def open(self, path: Path, threads: int, tower: Probed) -> Any:
        """A session for the tower's file, refused (ProbeFailed) unless it gives the recorded probe vector.

        The probe runs once per file: a note keyed by the file's stamp and the runtime's version says it
        passed, so a warm start skips it, while a file written or replaced since is probed again.
        """
        session = make_session(path, threads, self.device)
        # Stamped after the load: a file changed before or during it shows a new stamp, and is probed.
        note = path.with_name(f"{path.name}.verified.json")
        import onnxruntime  # imported by make_session: its version costs nothing, importlib.metadata's ~30 ms

        key = {"onnxruntime": onnxruntime.__version__, "device": self.device, "stamp": stamp(path)}
        if verified(note, key):
            return session
        score = tower.probe(session)
        if score < self.threshold:
            raise ProbeFailed(f"probe cosine {score:.6f}")
        record_verified(note, key)
        return session
