"""`[model] backend = auto`: the fastest runtime that keeps the vectors faithful, measured on this machine.

The first time a model is served on a machine, each candidate (devices.py: ONNX Runtime fp32, OpenVINO
at its own precision and at fp32, and on a GPU ONNX Runtime's CUDA provider or OpenVINO's GPU device
where they are installed) embeds the same probe batch; the fastest whose vectors agree with ONNX
Runtime fp32 (min cosine >= 0.999, each probe nearest its own reference) is recorded under a key of
the CPU model, the GPUs present, core count, library versions and weights fingerprint, and served from then on without
measuring. A changed key part means a new measurement. A recorded backend that fails to load gives
way to the next fastest, with one log line. torch is never a candidate: it runs only when named.

Speeds within the timing's noise (MARGIN) are a tie, and a tie goes to the candidate whose image tower
opens faster warm (measured by opening it a second time, from its cache: what every later start
pays), since a command pays that open on every start while the speed difference is not measurable.
Only tied candidates are opened again (where one wins outright, as OpenVINO bf16 does on a bf16 CPU, the
first run skips ~2.6 s of reopening); each tied one's anonymous memory added by its open tower is recorded
too (`hold_mb`), for the reader. A record with a tie but without open times (`open_s`, from an older
release) is measured again once: its pick favoured ONNX Runtime on a start-up claim that was not measured.

    models/<fingerprint>/backend-<hash of the key>.json  {key, results: [{backend, precision, images_per_s,
                                                          min_cosine[, open_s, hold_mb: tied ones]} or
                                                          {backend, precision, error}], pick}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelUnavailable
from .base import normalise
from .devices import Candidate, candidates, detect
from .openvino import cpu_model, version
from .preprocess import probe_image
from .runtime import OnnxUnavailable, OrtRuntime, cosines

log = logging.getLogger(__name__)

# Enough to reach the steady per-image cost, small enough to keep the first run short: 4 against 8 took
# 2 CPU s less on ViT-B/32 and gave the same pick with the same spread of ratios (RESULTS.md, session 4).
PROBE_BATCH = 4
MIN_COSINE = 0.999
TIMED_RUNS = 2
# A one-batch timing on a busy machine varies by ~10%: speeds closer than that are a tie, broken by the warm open.
MARGIN = 1.1


def make_runtime(backend: str, precision: str = "auto", device: str = "cpu") -> Any:
    """The runtime object a backend name stands for; RuntimeRefused when its library is missing."""
    if backend == "onnx":
        return OrtRuntime(device)
    from .openvino import OpenVinoRuntime

    return OpenVinoRuntime(precision) if device == "cpu" else OpenVinoRuntime(precision, device)


def accelerators() -> list[str]:
    """The GPUs this machine shows, cheaply (no runtime's device scan): a change means measuring again."""
    found = [f"dri/{p.name}" for p in sorted(Path("/dev/dri").glob("renderD*"))]
    found += [f"nvidia/{p.name}" for p in sorted(Path("/dev").glob("nvidia[0-9]*"))]
    return found


def machine_key(fingerprint: str) -> dict[str, Any]:
    """What a measurement depends on: a change in any part measures again."""
    return {
        "cpu": cpu_model(),
        "accelerators": accelerators(),
        "cores": os.cpu_count(),
        "onnxruntime": version("onnxruntime"),
        "openvino": version("openvino"),
        "fingerprint": fingerprint,
    }


def record_path(models: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(models) / str(key["fingerprint"]) / f"backend-{digest}.json"


def read_record(models: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The measurement recorded for exactly this key, or None."""
    try:
        record = json.loads(record_path(models, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("results"), list):
        return None
    tied = ties(record)
    if len(tied) > 1 and any("open_s" not in r for r in tied):
        return None  # a tie measured before the open times: its pick rested on an unmeasured rule, so measure again
    return record


def ties(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The passed candidates whose speed is within MARGIN of the fastest: the timing cannot tell them apart."""
    passed = [r for r in record["results"] if "error" not in r]
    top = max((float(r["images_per_s"]) for r in passed), default=0.0)
    return [r for r in passed if float(r["images_per_s"]) * MARGIN >= top]


def ranking(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates that passed, best first: the tied fastest by warm open time, then the rest by speed."""
    passed = [r for r in record["results"] if "error" not in r]
    tied = ties(record)
    first = sorted(tied, key=lambda r: (float(r.get("open_s", 0.0)), -float(r["images_per_s"])))
    return first + sorted((r for r in passed if r not in tied), key=lambda r: -float(r["images_per_s"]))


def label(result: dict[str, Any]) -> str:
    """'onnx float32', or 'openvino float16 on GPU' for a candidate off the CPU."""
    device = result.get("device", "cpu")
    return f"{result['backend']} {result['precision']}" + ("" if device == "cpu" else f" on {device}")


def reason(record: dict[str, Any], chosen: dict[str, Any]) -> str:
    """One line saying why `chosen` runs: its speed against the others measured on this machine."""
    others = [r for r in ranking(record) if r is not chosen and r != chosen]
    tied = [r for r in ties(record) if r is not chosen and r != chosen] if chosen in ties(record) else []

    def opens(result: dict[str, Any]) -> str:
        return f", opens in {result['open_s']:.2f} s" if tied and "open_s" in result else ""

    line = f"{label(chosen)}: {chosen['images_per_s']:.1f} img/s{opens(chosen)}"
    if others:
        line += " vs " + ", ".join(f"{label(r)} {r['images_per_s']:.1f}{opens(r)}" for r in others)
    line += " on this CPU" if all(r.get("device", "cpu") == "cpu" for r in record["results"]) else ""
    return line + (f" (speeds within {round((MARGIN - 1) * 100)}%: the quicker to open runs)" if tied else "")


def _time(embedder: Any, pixels: list[Any]) -> tuple[float, np.ndarray]:
    """Images per second on the probe batch (best of a few runs) and the vectors."""
    # Opening the tower (compile, verify, probe) runs it on a picture already: that is the warm-up.
    embedder.encode_images([])
    best, vectors = float("inf"), None
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        vectors = embedder.encode_images(pixels)
        best = min(best, time.perf_counter() - started)
    return len(pixels) / max(best, 1e-9), vectors


def _anon() -> int:
    """This process's anonymous resident memory in bytes: what the kernel cannot take back as page cache.

    Not all of RSS: OpenVINO maps its cached blob, whose file pages (366 MB of the ViT-B/32 image tower's
    740) are shared with the page cache and reclaimable, where ONNX Runtime's weights are all anonymous.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _open_cost(embedder: Any, pixels: list[Any]) -> tuple[float, float]:
    """Seconds a warm open of the image tower takes (its cache built by the timing's open) and anonymous MB it holds.

    What every later start pays before its first picture: OpenVINO imports its cached blob, ONNX
    Runtime creates its session (the probe is skipped on both: the first open recorded it passed).
    """
    embedder.release_images()
    before = _anon()
    started = time.perf_counter()
    embedder.encode_images([])
    took = time.perf_counter() - started
    embedder.encode_images(pixels)  # the buffers a batch needs are part of what the tower holds
    return took, max(_anon() - before, 0) / 2**20


def measure(load: Callable[[Any], Any], models: Path, key: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Time every candidate through `load(runtime)`; record the results; return them and the fastest's embedder."""
    log.warning("measuring which runtime is fastest on this CPU (once)")
    results: list[dict[str, Any]] = []
    embedders: dict[int, Any] = {}
    reference: np.ndarray | None = None
    pixels: list[Any] = []
    seen: set[Candidate] = set()
    for backend, precision, device in candidates(detect()):
        entry: dict[str, Any] = {"backend": backend, "precision": precision, "device": device}
        try:
            runtime = make_runtime(backend, precision, device)
            entry["precision"] = runtime.precision
            if Candidate(backend, runtime.precision, device) in seen:
                continue  # OpenVINO's own precision is fp32 on this CPU: measured once
            seen.add(Candidate(backend, runtime.precision, device))
            embedder = load(runtime)
            if not pixels:
                pixels = [embedder.prepare(probe_image(seed)) for seed in range(PROBE_BATCH)]
            speed, vectors = _time(embedder, pixels)
            # One image tower held at a time (ViT-B/32: ~350 MB each): the pick opens again on its first picture.
            embedder.release_images()
        except (OnnxUnavailable, ModelUnavailable) as exc:  # a candidate that cannot serve is left out
            results.append({**entry, "error": str(exc)})
            continue
        if reference is None:
            reference = vectors  # the first candidate is ONNX Runtime fp32, the reference
        worst = float(cosines(vectors, reference).min())
        ranked = np.argmax(normalise(vectors) @ normalise(reference).T, axis=1)
        entry.update(images_per_s=round(speed, 2), min_cosine=round(worst, 6))
        if worst < MIN_COSINE or not np.array_equal(ranked, np.arange(len(reference))):
            entry["error"] = f"vectors disagree with fp32 (min cosine {worst:.6f})"
        else:
            embedders[len(results)] = embedder
        results.append(entry)
    record = {"key": key, "results": results, "measured_at": time.time()}
    tied = ties(record)
    if len(tied) > 1:
        # The warm open decides only a tie: timed for the tied alone, each reopened from the cache its first open
        # built (~0.7-1 s a candidate for ViT-B/32, all of it on the first run's clock when one wins outright).
        for entry in tied:
            embedder = embedders[results.index(entry)]
            try:
                open_s, hold_mb = _open_cost(embedder, pixels)
            except (OnnxUnavailable, ModelUnavailable) as exc:  # its cache would not open again: it cannot serve
                entry["error"] = str(exc)
                continue
            finally:
                embedder.release_images()
            entry.update(open_s=round(open_s, 3), hold_mb=round(hold_mb))
    best = ranking(record)
    if not best:
        raise OnnxUnavailable("no runtime gave faithful vectors: " + "; ".join(r["error"] for r in results))
    record["pick"] = {k: best[0][k] for k in ("backend", "precision", "device")}
    _write(record_path(models, key), record)
    log.info("backend: %s", reason(record, best[0]))
    return record, embedders[results.index(best[0])]


def _write(path: Path, record: dict[str, Any]) -> None:
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not record the backend measurement in %s (%s)", path, exc)


def recorded_reason(models: Path, model: str) -> str | None:
    """What `auto` serves for `model` on this machine and why, from the record alone; None before a measurement."""
    from .base import model_key
    from .store import ModelStore

    fingerprint = ModelStore(models).lookup(model_key(model))
    record = read_record(models, machine_key(fingerprint)) if fingerprint else None
    best = ranking(record) if record else []
    return reason(record, best[0]) if record and best else None


def load_auto(load: Callable[[Any], Any], models: Path, fingerprint: str) -> Any:
    """The recorded fastest backend for this machine and model (measuring it first if need be)."""
    key = machine_key(fingerprint)
    record = read_record(models, key)
    if record is None:
        record, embedder = measure(load, models, key)
        embedder.reason = reason(record, ranking(record)[0])
        return embedder
    order = ranking(record)
    for i, chosen in enumerate(order):
        try:
            embedder = load(make_runtime(chosen["backend"], chosen["precision"], chosen.get("device", "cpu")))
            if chosen.get("device", "cpu") != "cpu":
                embedder.encode_images([])  # a GPU that went away fails here, while the CPU can still take over
        except (OnnxUnavailable, ModelUnavailable) as exc:
            following = order[i + 1] if i + 1 < len(order) else None
            if following is None:
                raise
            log.warning("%s failed to load (%s); using %s", chosen["backend"], exc, following["backend"])
            continue
        embedder.reason = reason(record, chosen)
        return embedder
    raise OnnxUnavailable("no measured backend is recorded for this model")
