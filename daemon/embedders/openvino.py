"""The OpenVINO backend: the exported ONNX towers compiled by OpenVINO, the compiled form cached beside them.

Its own precision is bf16 where the CPU does bf16 natively (AVX512_BF16 or AMX: OpenVINO lists BF16
among the CPU's capabilities), fp32 elsewhere. A freshly compiled tower serves only after it agreed
with ONNX Runtime fp32 on the export's probe set (min cosine >= 0.999, each probe nearest its own
reference) and with the vector recorded at export; only then is it written to the cache. A cached
tower is probed again on every open, and one that fails to load or to match is compiled again.

    models/<fingerprint>/image.<precision>.ov   the compiled tower (OpenVINO's export_model)
    models/<fingerprint>/image.<precision>.json {key: what it was compiled for, size}
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .base import normalise
from .runtime import Probed, ProbeFailed, RuntimeRefused, cosines, make_session

log = logging.getLogger(__name__)

OV_COSINE = 0.999  # bf16 keeps ~3 significant digits; fp32 OpenVINO agrees to ~1e-6 anyway
HINTS = {"float32": "f32", "bfloat16": "bf16"}


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
    """bfloat16 where the device computes it natively, else float32."""
    try:
        capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return "float32"
    return "bfloat16" if "BF16" in capabilities else "float32"


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
        }

    def open(self, path: Path, threads: int, tower: Probed) -> OvSession:
        """The tower compiled for this CPU: from the cache if it is whole and still gives the probe, else anew."""
        blob = path.with_name(f"{path.stem}.{self.precision}.ov")
        note = blob.with_suffix(".json")
        key = self._key(path)
        cached = self._import(blob, note, key, threads)
        if cached is not None:
            score = tower.probe(cached)
            if score >= self.threshold:
                return cached
            log.warning("%s is damaged (probe cosine %.6f); compiling it again", blob, score)
        session = OvSession(self.core.compile_model(str(path), self.device, self._config(threads)))
        self._verify(path, threads, tower, session)
        score = tower.probe(session)
        if score < self.threshold:
            raise ProbeFailed(f"probe cosine {score:.6f}")  # the ONNX file disagrees with its manifest
        self._save(session, blob, note, key)
        return session

    def _import(self, blob: Path, note: Path, key: dict[str, Any], threads: int) -> OvSession | None:
        """The cached compiled tower, or None when it is missing, stale, short or will not load."""
        try:
            recorded = json.loads(note.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("key") != key:
            return None
        try:
            # Read, not mapped: importing from a shared memory-mapped tensor crashed (OpenVINO 2026.4).
            data = blob.read_bytes()
            if len(data) != recorded.get("size"):
                raise ValueError(f"{len(data)} bytes where {recorded.get('size')} were written")
            return OvSession(self.core.import_model(data, self.device, self._config(threads)))
        except Exception as exc:  # noqa: BLE001 - a damaged blob fails in many ways; all mean compile again
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            log.warning("%s is damaged (%s); compiling it again", blob, reason)
            return None

    def _verify(self, path: Path, threads: int, tower: Probed, session: OvSession) -> float:
        """Refuse a compiled tower whose probe vectors stray from ONNX Runtime fp32's; return the worst cosine."""
        inputs = tower.probe_inputs()
        want = normalise(make_session(path, threads).run(None, inputs)[0])
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

    def _save(self, session: OvSession, blob: Path, note: Path, key: dict[str, Any]) -> None:
        """Write the compiled tower, then its note: a reader trusts no blob without a note of its size."""
        with contextlib.suppress(OSError):
            note.unlink(missing_ok=True)
            data = session.compiled.export_model()
            data = data.getvalue() if hasattr(data, "getvalue") else bytes(data)
            for path, content in ((blob, data), (note, json.dumps({"key": key, "size": len(data)}).encode())):
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(content)
                os.replace(tmp, path)
