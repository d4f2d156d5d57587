"""Export a sentence-transformers model's towers to ONNX, once per weights fingerprint.

Needs torch (and the `onnx` package the exporter uses), but only here and only the first time a
model is used with the ONNX backend. Each tower is verified before it is published: imgd's own
preprocessing + ONNX Runtime must give the torch path's vectors (cosine >= 0.9999) on probe images
of several shapes and on probe texts, long and non-ASCII ones included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base import model_key, normalise
from .preprocess import PROBE_SIZES, PROBE_TEXTS, ImagePrep, TextPrep, probe_image
from .runtime import PROBE_COSINE, OnnxUnavailable, cosines, make_session
from .store import FORMAT, ModelStore
from .torch import clip_module, fingerprint_of, image_prep_of, load_sentence_transformer, text_prep_of

log = logging.getLogger(__name__)

OPSET = 17


def _torch_vectors(st_model: Any, items: list[Any]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        vectors = st_model.encode(
            items, batch_size=8, convert_to_numpy=True, show_progress_bar=False, normalize_embeddings=False
        )
    return normalise(np.asarray(vectors, dtype=np.float32))


def _towers(st_model: Any) -> tuple[Any, Any]:
    """torch modules from model inputs to the final vector, one per tower (image may be None)."""
    import torch

    clip = clip_module(st_model)

    def features(out: Any) -> Any:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, pixel_values: Any) -> Any:
            return features(self.clip.get_image_features(pixel_values=pixel_values))

    class ClipTextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return features(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    class TextTower(torch.nn.Module):
        """A text-only sentence-transformers model: transformer, pooling, dense projection and all."""

        def __init__(self) -> None:
            super().__init__()
            self.model = st_model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    if clip is not None:
        return ImageTower().eval(), ClipTextTower().eval()
    return None, TextTower().eval()


def _export(module: Any, inputs: dict[str, np.ndarray], path: Path) -> None:
    import torch

    names = list(inputs)
    axes = {name: {0: "batch", 1: "sequence"} if name != "pixel_values" else {0: "batch"} for name in names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(inputs[name]) for name in names),
            str(path),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _export_text(st_model: Any, text_tower: Any, staging: Path, threads: int = 0) -> dict[str, Any]:
    """Export and verify the text tower into `staging`; return its part of the manifest."""
    text = text_prep_of(st_model)
    (staging / "tokenizer.json").write_text(text["tokenizer"])
    tokens = TextPrep(text["tokenizer"], text["max_length"], text["pad_id"])
    _export(text_tower, tokens.encode(list(PROBE_TEXTS[:2])), staging / "text.onnx")
    score, reference = _verify_texts(st_model, tokens, staging / "text.onnx", threads)
    return {
        "files": {name: (staging / name).stat().st_size for name in ("text.onnx", "tokenizer.json")},
        "max_length": text["max_length"],
        "pad_id": text["pad_id"],
        "probe": reference[0].tolist(),
        "probes": reference.tolist(),
        "verified_cosine": score,
    }


def can_fork() -> bool:
    """A forked copy of this process may export a tower: Linux, two cores, no other thread that could hold a lock."""
    return sys.platform.startswith("linux") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


class ForkedTower:
    """One tower exported in a forked copy of this process while this one exports the other.

    Tracing and writing a tower is single-threaded Python and C++ under the GIL: on two cores the text
    tower (a third of the export) costs no wall time beside the image tower. The copy shares the loaded
    weights (copy on write), runs torch on one thread (its OpenMP pool does not survive a fork), and
    hands back its manifest part, or why it failed, through a file in the staging folder.
    """

    def __init__(self, work: Callable[[], dict[str, Any]], out: Path) -> None:
        self.out = out
        self.pid = os.fork()
        if self.pid == 0:  # the copy: never returns, never runs the parent's clean-up
            code = 1
            try:
                import torch

                torch.set_num_threads(1)
                try:
                    result: dict[str, Any] = {"part": work()}
                except OnnxUnavailable as exc:
                    result = {"unavailable": str(exc)}
                except Exception as exc:  # noqa: BLE001 - said to the parent, which reports it
                    result = {"failed": str(exc).strip().splitlines()[0][:160] if str(exc).strip() else repr(exc)}
                out.write_text(json.dumps(result))
                code = 0
            finally:
                os._exit(code)

    def result(self) -> dict[str, Any]:
        """Wait for the copy; its manifest part, or its failure raised here."""
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        try:
            result = json.loads(self.out.read_text())
        except (OSError, ValueError):
            raise RuntimeError(f"the text tower's export process died (wait status {status})") from None
        finally:
            self.out.unlink(missing_ok=True)
        if "unavailable" in result:
            raise OnnxUnavailable(result["unavailable"])
        if "failed" in result:
            raise RuntimeError(result["failed"])
        return result["part"]

    def stop(self) -> None:
        """End the copy early (this side failed), so that the staging folder can go."""
        if self.pid:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0


def export_model(st_model: Any, fingerprint: str, store: ModelStore, name: str) -> tuple[Path, dict[str, Any]]:
    """Export, verify and publish every tower of `st_model`; raise OnnxUnavailable if one disagrees."""
    staging = store.staging(fingerprint)
    forked: ForkedTower | None = None
    try:
        manifest: dict[str, Any] = {"format": FORMAT, "fingerprint": fingerprint, "model": name}
        image_tower, text_tower = _towers(st_model)
        prep = image_prep_of(st_model)
        if image_tower is not None and prep is not None:
            if can_fork():
                forked = ForkedTower(lambda: _export_text(st_model, text_tower, staging, 1), staging / ".text.json")
            _export(image_tower, {"pixel_values": prep.pixels([probe_image(), probe_image(1)])}, staging / "image.onnx")
            score, reference = _verify_images(st_model, prep, staging / "image.onnx")
            manifest["image"] = {
                "files": {"image.onnx": (staging / "image.onnx").stat().st_size},
                "prep": prep.as_dict(),
                "probe": reference[0].tolist(),
                "probes": reference.tolist(),  # fp32 vectors of the whole probe set: other runtimes check on them
                "verified_cosine": score,
            }
            manifest["dim"] = reference.shape[1]
        manifest["text"] = forked.result() if forked else _export_text(st_model, text_tower, staging)
        forked = None
        manifest.setdefault("dim", len(manifest["text"]["probe"]))
        for path in staging.iterdir():
            _fsync(path)
        (staging / "manifest.json").write_text(json.dumps(manifest))
        _fsync(staging / "manifest.json")
        return store.publish(staging, fingerprint), manifest
    except BaseException:
        if forked is not None:
            forked.stop()
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check(kind: str, scores: np.ndarray) -> float:
    worst = float(scores.min())
    if worst < PROBE_COSINE:
        raise OnnxUnavailable(f"the exported {kind} model disagrees with torch (cosine {worst:.6f} < {PROBE_COSINE})")
    return worst


def _verify_images(st_model: Any, prep: ImagePrep, path: Path) -> tuple[float, np.ndarray]:
    images = [prep.prepare(probe_image(seed, size)) for seed, size in enumerate(PROBE_SIZES)]
    session = make_session(path)
    got = normalise(session.run(None, {"pixel_values": prep.pixels(images)})[0])
    want = _torch_vectors(st_model, images)
    return _check("image", cosines(got, want)), want


def _verify_texts(st_model: Any, tokens: TextPrep, path: Path, threads: int = 0) -> tuple[float, np.ndarray]:
    session = make_session(path, threads)
    got = normalise(session.run(None, tokens.encode(list(PROBE_TEXTS)))[0])
    single = normalise(session.run(None, tokens.encode([PROBE_TEXTS[2]]))[0])  # unpadded, alone
    want = _torch_vectors(st_model, list(PROBE_TEXTS))
    return _check("text", np.concatenate([cosines(got, want), cosines(single, want[2:])])), want


def ensure_exported(
    store: ModelStore, model: str, device: str = "cpu", force: bool = False, st_model: Any = None
) -> tuple[Path, dict[str, Any]]:
    """Load `model` with torch, fingerprint it, and export it unless that fingerprint is exported already."""
    name = model_key(model)
    if st_model is None:
        st_model = load_sentence_transformer(model, "cpu")
    fingerprint = fingerprint_of(st_model)
    store.remember(name, fingerprint)
    manifest = None if force else store.manifest(fingerprint)
    if manifest is not None:
        return store.folder(fingerprint), manifest
    log.warning("preparing model '%s' for ONNX Runtime (once; this takes a while)", model)
    started = time.monotonic()
    try:
        folder, manifest = export_model(st_model, fingerprint, store, name)
    except OnnxUnavailable as exc:
        raise OnnxUnavailable(str(exc), st_model, fingerprint) from None
    except Exception as exc:  # noqa: BLE001 - an exporter failure leaves the torch path working
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise OnnxUnavailable(f"could not export model '{model}' to ONNX ({reason})", st_model, fingerprint) from None
    log.info("exported '%s' to %s in %.1f s", model, folder, time.monotonic() - started)
    return folder, manifest
