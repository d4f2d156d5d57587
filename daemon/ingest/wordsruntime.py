"""Which runtime runs the words models: ONNX Runtime (RapidOCR's own) or OpenVINO, chosen by measuring.

RapidOCR runs its PP-OCRv4 detector and recogniser on ONNX Runtime. OpenVINO, where it is installed,
runs the same ONNX files, often faster on the CPU (the gate's detector at 480 px: ~35 ms against ~49 ms
here, benchmarks/RESULTS.md). The first time the models load on a machine, each model runs on a probe
(a rendered receipt: the gate's picture for the detector, its lines for the recogniser) a few times on
each runtime; OpenVINO takes a model over only when its outputs agree with ONNX Runtime's (the same
boxes, the same text) and it is faster by MARGIN. The choice is recorded under a key of the CPU model,
the threads per model and the libraries' versions, and served from then on without timing; OpenVINO's
outputs are still checked against ONNX Runtime's on the probe at every load. OpenVINO missing, failing
to compile, disagreeing, or failing at a later call: ONNX Runtime serves that model, with one log line.

    state_dir/models/words-runtime-<hash of the key>.json  {key, results: {model: {runtime: ms | error}}, pick}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..embedders.openvino import cpu_model, version

log = logging.getLogger(__name__)

# The models OpenVINO may take over: (RapidOCR's attribute, the attribute its session sits in, its file).
# The orientation classifier is small and runs only on the lines found: left on ONNX Runtime.
MODELS = {
    "detector": ("text_det", "infer", "ch_PP-OCRv4_det_infer.onnx"),
    "recogniser": ("text_rec", "session", "ch_PP-OCRv4_rec_infer.onnx"),
}
TIMED_RUNS = 3  # per runtime, in turns, after one run each to warm up: the fastest counts
MARGIN = 1.1  # a timing on a busy machine varies by ~10%; within that, ONNX Runtime (RapidOCR's own) stays
MAX_DIFFERENCE = 0.02  # the detector's text probabilities: fp32 on both sides agrees to ~1e-3
PROBE_LINES = ["HARDWARE STORE", "Hammer 12.99", "Nails 4.50", "TOTAL 17.49"]
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class OvModel:
    """A compiled OpenVINO model behind the call RapidOCR makes of its session: model(batch) -> [output].

    An infer request holds its own buffers and must not be shared by threads running at once: each
    thread gets its own. OpenVINO failing at a call hands the model back to ONNX Runtime for good.
    """

    def __init__(self, compiled: Any, fallback: Callable[[np.ndarray], list[np.ndarray]], name: str) -> None:
        self._compiled = compiled
        self._fallback = fallback
        self._name = name
        self._local = threading.local()
        self._failed = False

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The model's output on OpenVINO, through this thread's infer request; OpenVINO's errors raised."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return [np.array(request.infer([batch])[0], dtype=np.float32)]  # copied: the request reuses its buffer

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._failed:
            return self._fallback(batch)
        try:
            return self.run(batch)
        except Exception as exc:  # noqa: BLE001 - whatever OpenVINO raises, ONNX Runtime can still read the picture
            if not self._failed:
                self._failed = True
                log.warning("OpenVINO failed running the words %s (%s); using ONNX Runtime", self._name, exc)
            return self._fallback(batch)  # this picture too: read on ONNX Runtime, not lost


Prepare = Callable[[Image.Image], tuple[np.ndarray, tuple[int, int]]]  # a picture -> the gate's detector input


def _probe(ocr: Any, prepare: Prepare) -> dict[str, tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], str | None]]]:
    """Each model's probe input, and a check that says how two runtimes' outputs on it disagree (None: they agree)."""
    face = ImageFont.truetype(str(FONT), 30) if FONT.exists() else ImageFont.load_default()
    page = Image.new("RGB", (640, 480), (245, 242, 235))
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(PROBE_LINES):
        draw.text((40, 30 + row * 60), line, fill=(20, 20, 20), font=face)
    batch, shape = prepare(page)

    def same_boxes(a: np.ndarray, b: np.ndarray) -> str | None:
        post = ocr.text_det.postprocess_op
        boxes_a, boxes_b = post(a, shape)[0], post(b, shape)[0]
        if len(boxes_a) == 0 or len(boxes_a) != len(boxes_b) or np.abs(boxes_a - boxes_b).max() > 2:
            return f"boxes differ ({len(boxes_a)} against {len(boxes_b)})"
        difference = float(np.abs(a - b).max())
        return f"probabilities differ by {difference:.4f}" if difference > MAX_DIFFERENCE else None

    rows = np.asarray(page)[:, :, ::-1]  # the recogniser's lines, cut as RapidOCR cuts them (BGR)
    crops = [rows[22 + 60 * row : 66 + 60 * row, 30 : 40 + 18 * len(line)] for row, line in enumerate(PROBE_LINES)]
    ratio = max(crop.shape[1] / crop.shape[0] for crop in crops)
    lines = np.concatenate([ocr.text_rec.resize_norm_img(crop, ratio)[None] for crop in crops]).astype(np.float32)

    def same_text(a: np.ndarray, b: np.ndarray) -> str | None:
        decode = ocr.text_rec.postprocess_op
        text_a, text_b = [t for t, _ in decode(a)], [t for t, _ in decode(b)]
        return None if text_a == text_b and any(text_a) else f"read {text_b} where ONNX Runtime read {text_a}"

    return {"detector": (batch, same_boxes), "recogniser": (lines, same_text)}


def _fastest_ms(runs: dict[str, Callable[[np.ndarray], list[np.ndarray]]], batch: np.ndarray) -> dict[str, float]:
    """Milliseconds per call of each runtime on the batch: the fastest of TIMED_RUNS, taken in turns."""
    best = {name: float("inf") for name in runs}
    for run in runs.values():
        run(batch)  # warm-up: the first call of a shape prepares it
    for _ in range(TIMED_RUNS):
        for name, run in runs.items():
            started = time.perf_counter()
            run(batch)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: round(1000 * seconds, 2) for name, seconds in best.items()}


def machine_key(threads: int) -> dict[str, Any]:
    """What the choice depends on: a change in any part measures again."""
    return {
        "cpu": cpu_model(),
        "threads": threads,
        "onnxruntime": version("onnxruntime"),
        "openvino": version("openvino"),
        "rapidocr": version("rapidocr-onnxruntime"),
    }


def record_path(state_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(state_dir) / "models" / f"words-runtime-{digest}.json"


def _read_record(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key and "pick" in record else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not record the words runtime measurement in %s (%s)", path, exc)


def _compile(folder: Path, file: str, threads: int, state_dir: Path | None) -> Any:
    """The model compiled by OpenVINO for the CPU at fp32, through its model cache in the state folder."""
    import openvino

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    if state_dir is not None:
        config["CACHE_DIR"] = str(Path(state_dir) / "models" / "words.ov")
    return openvino.Core().compile_model(str(folder / file), "CPU", config)


def choose(ocr: Any, prepare: Prepare, threads: int, state_dir: Path | None, runtime: str = "auto") -> dict[str, str]:
    """Put OpenVINO behind each model of `ocr` that it runs faithfully and faster; return each model's runtime.

    `prepare` makes the detector's input as the gate does. `runtime`: auto (the recorded choice,
    measured first if need be), onnx (RapidOCR as it comes), or openvino (wherever it loads and
    agrees, without timing).
    """
    picks = dict.fromkeys(MODELS, "onnx")
    if runtime == "onnx":
        return picks
    if version("openvino") is None:
        log.info("words models on ONNX Runtime (OpenVINO is not installed)")
        return picks
    import rapidocr_onnxruntime

    folder = Path(rapidocr_onnxruntime.__file__).parent / "models"
    key = machine_key(threads)
    path = record_path(state_dir, key) if state_dir is not None else None
    record = _read_record(path, key) if path is not None and runtime == "auto" else None
    wanted = record["pick"] if record else dict.fromkeys(MODELS, "openvino")
    probes = _probe(ocr, prepare)
    results: dict[str, dict[str, Any]] = {}
    for model, (attribute, slot, file) in MODELS.items():
        if wanted.get(model) != "openvino":
            continue
        owner = getattr(ocr, attribute)
        onnx = getattr(owner, slot)
        batch, differ = probes[model]
        try:
            ov = OvModel(_compile(folder, file, threads, state_dir), onnx, model)
            problem = differ(onnx(batch)[0], ov.run(batch)[0])
        except Exception as exc:  # noqa: BLE001 - OpenVINO's errors have no common type
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            results[model] = {"error": problem}
            log.warning("OpenVINO cannot run the words %s (%s); using ONNX Runtime", model, problem)
            continue
        if record is None and runtime == "auto":
            results[model] = _fastest_ms({"onnx": onnx, "openvino": ov.run}, batch)
            if results[model]["openvino"] * MARGIN > results[model]["onnx"]:
                continue
        setattr(owner, slot, ov)
        picks[model] = "openvino"
    if record is None and runtime == "auto":
        if path is not None and all("error" not in r for r in results.values()):  # a failure is tried again
            _write_record(path, {"key": key, "results": results, "pick": picks, "measured_at": time.time()})
        log.info("words models: %s", describe(picks, results))
    else:
        log.info("words models: %s", describe(picks, (record or {}).get("results", {})))
    return picks


def describe(picks: dict[str, str], results: dict[str, dict[str, Any]]) -> str:
    """'detector on openvino (35.1 ms vs onnx 49.0 ms), recogniser on onnx (...)': one line for the log."""
    parts = []
    for model, pick in picks.items():
        timed = results.get(model, {})
        part = f"{model} on {pick}"
        with contextlib.suppress(KeyError, TypeError):
            other = "onnx" if pick == "openvino" else "openvino"
            part += f" ({timed[pick]:.1f} ms vs {other} {timed[other]:.1f} ms)"
        parts.append(part)
    return ", ".join(parts)
