"""The OpenVINO backend: the exported ONNX towers compiled by OpenVINO, the compiled form cached beside them.

Its own precision is bf16 where the CPU does bf16 natively (AVX512_BF16 or AMX: OpenVINO lists BF16
among the CPU's capabilities), fp32 elsewhere. The compiled form is kept by OpenVINO's own model
cache (CACHE_DIR), which maps the blob rather than reading it. A freshly compiled tower serves only
after it agreed with ONNX Runtime fp32 on the export's probe set (min cosine >= 0.999, each probe
nearest its own reference) and with the vector recorded at export; only then is the note written
that makes its cache trusted, with each blob's stamp (inode, size, mtime, ctime). A cached tower whose
blobs still carry the stamps it was verified with opens without a probe (half of the ViT-B/32 image
tower's warm open); one written or replaced since is probed again, and one that is cut short, fails
to load or fails to match is compiled again.

    models/<fingerprint>/image.<precision>.ov/<hash>.blob  OpenVINO's cache of the compiled tower
    models/<fingerprint>/image.<precision>.json            {key: what it was compiled for, blobs: {name: size},
                                                            verified: {name: stamp when it last passed}}
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .base import normalise
from .runtime import Probed, ProbeFailed, RuntimeRefused, cosines, make_session, stamp, version

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


def import_openvino() -> Any:
    """The openvino package without its model-conversion tools, which imgd never calls.

    `import openvino` also imports openvino.tools.ovc (convert_model, and with it urllib, email and
    its telemetry): about 60% of the package's import time, paid by every warm start. The package
    imports them under `except ImportError`, so a None in sys.modules leaves them out; it is taken
    away again, so a later explicit import of the tools still works.
    """
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    tools = "openvino.tools.ovc"
    blocked = tools not in sys.modules
    if blocked:
        sys.modules[tools] = None  # type: ignore[assignment]
    try:
        import openvino
    finally:
        if blocked and sys.modules.get(tools, 0) is None:
            del sys.modules[tools]
    return openvino


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
            openvino = import_openvino()
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
        recorded = self._trusted(cache, note, key)
        if recorded is not None:
            session, from_cache = self._compile(path, threads, cache)
            if from_cache:
                # Stamped after the load: a blob written before or during it shows a new stamp.
                if recorded.get("verified") == _stamps(cache):
                    return session  # verified once, not written since: a flipped weight would have changed it
                score = tower.probe(session)
                if score >= self.threshold:
                    self._save(cache, note, key)  # verified again, under the blobs' new stamps
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

    def _trusted(self, cache: Path, note: Path, key: dict[str, Any]) -> dict[str, Any] | None:
        """The note, if the cache holds what it says was verified: same key, the same blobs at their sizes."""
        try:
            recorded = json.loads(note.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("key") != key:
            return None
        blobs = recorded.get("blobs")
        found = _blobs(cache)
        if blobs != found:
            if found:  # a blob of another size: cut short or overwritten
                log.warning("%s is damaged (%s where %s were written); compiling it again", cache, found, blobs)
            return None
        return recorded if found else None

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
        """Write the note that makes the cache trusted: the key, each blob's size and stamp, once verified."""
        with contextlib.suppress(OSError):
            tmp = note.with_name(f".{note.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "blobs": _blobs(cache), "verified": _stamps(cache)}))
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


def _stamps(cache: Path) -> dict[str, list[int]]:
    """The stamp of each blob in an OpenVINO cache folder: any write or replacement changes it."""
    try:
        return {p.name: stamp(p) for p in sorted(cache.glob("*.blob"))}
    except OSError:
        return {}
