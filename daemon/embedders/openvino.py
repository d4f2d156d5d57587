"""The OpenVINO backend: the exported ONNX towers compiled by OpenVINO, the compiled form cached beside them.

Its own precision is bf16 where the CPU does bf16 natively (AVX512_BF16 or AMX: OpenVINO lists BF16
among the CPU's capabilities), fp32 elsewhere. The compiled form is kept by OpenVINO's own model
cache (CACHE_DIR), which maps the blob rather than reading it. A freshly compiled tower serves only
after it agreed with ONNX Runtime fp32 on the export's probe set (min cosine >= 0.999, each probe
nearest its own reference) and with the vector recorded at export; only then is the note written
that makes its cache trusted. A cached tower is probed again on every open, and one that is cut
short, fails to load or fails to match is compiled again.

    models/<fingerprint>/image.<precision>.ov/<hash>.blob  OpenVINO's cache of the compiled tower
    models/<fingerprint>/image.<precision>.json            {key: what it was compiled for, blobs: {name: size}}
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .base import normalise
from .runtime import Probed, ProbeFailed, RuntimeRefused, cosines, make_session

log = logging.getLogger(__name__)

OV_COSINE = 0.999  # bf16 keeps ~3 significant digits; fp32 OpenVINO agrees to ~1e-6 anyway
HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


@functools.cache
def cpu_model() -> str:
    """The CPU's model name, part of every key a compiled model or a measurement is stored under."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def version(package: str) -> str | None:
    """The installed version of a package, without importing it; None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def native_precision(core: Any, device: str = "CPU") -> str:
    """bfloat16 where the CPU computes it natively, float16 on a GPU that does, else float32."""
    from .devices import Devices, ov_precision

    try:
        capabilities = tuple(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError:
        capabilities = ()
    return ov_precision(Devices(ov_devices=(device,), ov_capabilities={device: capabilities}), device)


class OvSession:
    """A compiled OpenVINO model behind the one call the towers make: run(None, inputs) -> [vectors]."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def run(self, _outputs: Any, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        # The infer request reuses its output buffer on the next call: copy the result out.
        return [np.array(self.compiled(inputs)[0], dtype=np.float32)]


class OpenVinoRuntime:
    """OpenVINO on the CPU at `precision` (auto: its own choice for this CPU)."""

    name = "openvino"
    threshold = OV_COSINE

    def __init__(self, precision: str = "auto", device: str = "CPU") -> None:
        try:
            import openvino
        except ImportError:
            raise RuntimeRefused("openvino is not installed (pip install openvino)") from None
        self.core = openvino.Core()
        self.device = device
        self.precision = native_precision(self.core, device) if precision == "auto" else precision
        if self.precision not in HINTS:
            raise RuntimeRefused(f"OpenVINO cannot run at precision '{precision}'")

    def _config(self, threads: int) -> dict[str, Any]:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return config

    def _key(self, path: Path) -> dict[str, Any]:
        """What a compiled tower depends on besides the ONNX file's own folder (one per weights fingerprint)."""
        return {
            "openvino": version("openvino"),
            "device": self.device,
            "cpu": cpu_model(),
            "precision": self.precision,
            "onnx_size": path.stat().st_size,
            "onnx_mtime_ns": path.stat().st_mtime_ns,  # a re-export in place: OpenVINO's cache hash may not see it
        }

    def open(self, path: Path, threads: int, tower: Probed) -> OvSession:
        """The tower compiled for this CPU: from the cache if it is whole and still gives the probe, else anew."""
        cache = path.with_name(f"{path.stem}.{self.precision}.ov")
        note = cache.with_suffix(".json")
        key = self._key(path)
        session: OvSession | None = None
        if self._trusted(cache, note, key):
            session, from_cache = self._compile(path, threads, cache)
            if from_cache:
                score = tower.probe(session)
                if score >= self.threshold:
                    return session
                log.warning("%s is damaged (probe cosine %.6f); compiling it again", cache, score)
                session = None
            else:  # OpenVINO found the blob unreadable and compiled anew: that is verified below like any compile
                log.warning("%s is damaged (OpenVINO would not load it); compiling it again", cache)
        note.unlink(missing_ok=True)  # from here until _save nothing in the cache is trusted
        if session is None:
            _clear(cache)
            session, _ = self._compile(path, threads, cache)
        try:
            self._verify(path, threads, tower, session)
            score = tower.probe(session)
            if score < self.threshold:
                raise ProbeFailed(f"probe cosine {score:.6f}")  # the ONNX file disagrees with its manifest
        except BaseException:
            _clear(cache)  # never left behind for a later start to import
            raise
        self._save(cache, note, key)
        return session

    def _compile(self, path: Path, threads: int, cache: Path) -> tuple[OvSession, bool]:
        """The tower through OpenVINO's own model cache in `cache`, and whether it came from there (not compiled).

        OpenVINO maps a cached blob instead of reading it (a 351 MB ViT-B/32 image tower opens in a
        fraction of the time an import from bytes takes), and compiles anew, rewriting the blob, when
        the blob will not load.
        """
        config = {**self._config(threads), "CACHE_DIR": str(cache)}
        compiled = self.core.compile_model(str(path), self.device, config)
        try:
            from_cache = bool(compiled.get_property("LOADED_FROM_CACHE"))
        except RuntimeError:
            from_cache = False
        return OvSession(compiled), from_cache

    def _trusted(self, cache: Path, note: Path, key: dict[str, Any]) -> bool:
        """Whether the cache holds what the note says was verified: same key, the same blobs at their sizes."""
        try:
            recorded = json.loads(note.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(recorded, dict) or recorded.get("key") != key:
            return False
        blobs = recorded.get("blobs")
        found = _blobs(cache)
        if blobs != found:
            if found:  # a blob of another size: cut short or overwritten
                log.warning("%s is damaged (%s where %s were written); compiling it again", cache, found, blobs)
            return False
        return bool(found)

    def _verify(self, path: Path, threads: int, tower: Probed, session: OvSession) -> float:
        """Refuse a compiled tower whose probe vectors stray from ONNX Runtime fp32's; return the worst cosine."""
        inputs = tower.probe_inputs()
        # The export recorded the fp32 vectors: an ONNX Runtime session would cost seconds on ViT-B/32.
        recorded = tower.probe_reference()
        want = normalise(recorded if recorded is not None else make_session(path, threads).run(None, inputs)[0])
        got = normalise(session.run(None, inputs)[0])
        scores = cosines(got, want)
        ranked = np.argmax(got @ want.T, axis=1)
        worst = float(scores.min())
        if worst < self.threshold or not np.array_equal(ranked, np.arange(len(want))):
            raise RuntimeRefused(
                f"OpenVINO {self.precision} disagrees with fp32 on the {tower.kind} probes "
                f"(min cosine {worst:.6f}, {int(np.sum(ranked == np.arange(len(want))))}/{len(want)} ranked first)"
            )
        log.debug("OpenVINO %s %s tower: min cosine %.6f against fp32", self.precision, tower.kind, worst)
        return worst

    def _save(self, cache: Path, note: Path, key: dict[str, Any]) -> None:
        """Write the note that makes the cache trusted: the key and each blob's size, once verified."""
        with contextlib.suppress(OSError):
            tmp = note.with_name(f".{note.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "blobs": _blobs(cache)}))
            os.replace(tmp, note)


def _clear(cache: Path) -> None:
    """Remove a cache folder, or the single-file blob an earlier release kept under the same name."""
    if cache.is_dir():
        shutil.rmtree(cache, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            cache.unlink(missing_ok=True)


def _blobs(cache: Path) -> dict[str, int]:
    """The blobs in an OpenVINO cache folder with their sizes."""
    try:
        return {p.name: p.stat().st_size for p in sorted(cache.glob("*.blob"))}
    except OSError:
        return {}
