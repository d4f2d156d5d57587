"""The ONNX Runtime backend: two sessions (image and text tower, projection included) and imgd's own
preprocessing; no torch or transformers at run time.

The ONNX files come from export.py, once per weights fingerprint, into state_dir/models. Each session
is checked on the probe the export recorded before it serves a vector; a file that fails the check
is rebuilt from the torch model, never used. The image session can be freed when the daemon is idle
and comes back on the next image.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelUnavailable
from . import prepare
from .base import check_text_dim, model_key, normalise
from .preprocess import PROBE_SIZES, PROBE_TEXTS, ImagePrep, TextPrep, probe_image
from .runtime import OnnxUnavailable, OrtRuntime, RuntimeRefused, cosines
from .store import ModelStore

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

RUNTIMES = {"onnx": "ONNX", "openvino": "OpenVINO"}


def _release_heap() -> None:
    """Hand freed pages back to the system, so an unloaded model shows in RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Tower:
    """One exported tower: its session, loaded on first use, verified on the recorded probe."""

    def __init__(
        self,
        kind: str,
        folder: Path,
        manifest: dict[str, Any],
        repair: Callable[[], tuple[Path, dict[str, Any]]] | None,
        threads: int,
        runtime: Any = None,
    ) -> None:
        self.kind = kind
        self.folder = folder
        self.manifest = manifest
        self.repair = repair
        self.threads = threads
        self.runtime = runtime or OrtRuntime()
        self.session: Any = None
        self.lock = threading.Lock()
        self.text: TextPrep | None = None
        self.image: ImagePrep | None = None
        self._read_prep()

    def _read_prep(self) -> None:
        part = self.manifest[self.kind]
        if self.kind == "image":
            self.image = ImagePrep.from_dict(part["prep"])
        else:
            tokenizer = (self.folder / "tokenizer.json").read_text()
            self.text = TextPrep(tokenizer, part["max_length"], part["pad_id"])

    def inputs(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        if self.kind == "image":
            assert self.image is not None
            return {"pixel_values": self.image.pixels(items)}
        assert self.text is not None
        return self.text.encode(items)

    def run(self, items: Sequence[Any]) -> np.ndarray:
        """Vectors for items; the caller holds the lock."""
        if self.session is None:
            self.session = self._open()
        return normalise(self.session.run(None, self.inputs(items))[0])

    def probe(self, session: Any) -> float:
        """The cosine of the session's vector for the recorded probe with the vector recorded at export."""
        part = self.manifest[self.kind]
        item = self.image.prepare(probe_image()) if self.kind == "image" and self.image else PROBE_TEXTS[0]
        got = session.run(None, self.inputs([item]))[0]
        return float(cosines(got, np.asarray([part["probe"]], dtype=np.float32))[0])

    def probe_inputs(self) -> dict[str, np.ndarray]:
        """The export's probe set, images of every shape or texts of every kind, as one batch."""
        if self.kind == "image" and self.image is not None:
            return self.inputs([self.image.prepare(probe_image(seed, size)) for seed, size in enumerate(PROBE_SIZES)])
        return self.inputs(list(PROBE_TEXTS))

    def probe_reference(self) -> np.ndarray | None:
        """The fp32 vectors the export recorded for the probe set, or None from an export that kept only one."""
        probes = self.manifest[self.kind].get("probes")
        return np.asarray(probes, dtype=np.float32) if probes else None

    def _open(self) -> Any:
        path = self.folder / f"{self.kind}.onnx"
        try:
            session, problem = self.runtime.open(path, self.threads, self), None
        except RuntimeRefused as exc:  # the files are sound: exporting them again would not help
            named = RUNTIMES[self.runtime.name]
            raise ModelUnavailable(f"cannot use the {named} backend: {exc}; try --backend onnx.") from None
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; all mean rebuild
            session, problem = None, str(exc).strip().splitlines()[0][:120] if str(exc).strip() else repr(exc)
        if problem is None:
            return session
        if self.repair is None:
            raise ModelUnavailable(f"{path} is damaged ({problem}); delete it to have it exported again.")
        log.warning("%s is damaged (%s); exporting it again from the torch model", path, problem)
        self.folder, self.manifest = self.repair()
        self.repair = None  # a fresh export that fails its probe is not retried in a loop
        self._read_prep()
        return self._open()

    def release(self) -> bool:
        with self.lock:
            if self.session is None:
                return False
            self.session = None
        _release_heap()
        return True


class OnnxEmbedder:
    """An exported CLIP model (and an optional separate text model) served by ONNX Runtime or OpenVINO on the CPU."""

    device = "cpu"

    def __init__(
        self,
        name: str,
        image: Tower,
        text: Tower,
        batch_size: int = 32,
        text_name: str | None = None,
    ) -> None:
        self.name = name
        self.text_name = text_name
        self.fingerprint: str | None = image.manifest["fingerprint"]
        self.dim = int(image.manifest["dim"])
        self.backend: str = image.runtime.name
        self.precision: str = image.runtime.precision
        self.reason: str | None = None  # why this backend runs, when `auto` measured it
        self.batch_size = batch_size
        self._image = image
        self._text = text
        self.image_loads = 0
        self.last_load_s: float | None = None
        self.last_image_use = time.monotonic()
        self.last_text_use = time.monotonic()

    @property
    def image_loaded(self) -> bool:
        return self._image.session is not None

    @property
    def text_loaded(self) -> bool:
        return self._text.session is not None

    def warm(self) -> None:
        """Open both sessions now (the daemon), instead of on the first file or query."""
        self.encode_texts(["a photo"])
        self.encode_images([])

    def prepare(self, image: Image.Image) -> Image.Image:
        assert self._image.image is not None
        return self._image.image.prepare(image)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        tower = self._image
        with tower.lock:
            if tower.session is None:
                started = time.monotonic()
                tower.session = tower._open()
                self.image_loads += 1
                self.last_load_s = time.monotonic() - started
                if self.image_loads > 1:
                    log.info("loaded the image model again in %.2f s", self.last_load_s)
            self.last_image_use = time.monotonic()
            if not images:
                return np.zeros((0, self.dim), dtype=np.float32)
            step = self.batch_size
            vectors = np.concatenate([tower.run(images[i : i + step]) for i in range(0, len(images), step)])
            self.last_image_use = time.monotonic()
            return vectors

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tower = self._text
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with tower.lock:
            step = self.batch_size
            vectors = np.concatenate([tower.run(texts[i : i + step]) for i in range(0, len(texts), step)])
            self.last_text_use = time.monotonic()
            return vectors

    def release_images(self) -> bool:
        """Free the image session (and its memory) until the next image arrives."""
        return self._image.release()

    def release_texts(self) -> bool:
        """Free the text session until the next query: ~250-310 MB of ViT-B/32's, reopened in ~0.2 s from the
        export or OpenVINO's cache (benchmarks/RESULTS.md, session 5)."""
        return self._text.release()


def _exported(store: ModelStore, model: str, tower: str, measure: bool = False) -> tuple[Path, dict[str, Any]]:
    """The export holding `tower` for `model`: found by the name note without torch, else made now."""
    key = model_key(model)
    fingerprint = store.lookup(key)
    if fingerprint is not None:
        manifest = store.manifest(fingerprint)
        if manifest is not None and tower in manifest:
            return store.folder(fingerprint), manifest
    return prepare.export(store, model, measure=measure)  # first use, or the files changed: torch, in a child


def load_onnx(
    model: str,
    state_dir: Path,
    batch_size: int = 32,
    text_model: str | None = None,
    threads: int = 0,
    device: str = "cpu",
    runtime: Any = None,
    measure: bool = False,
) -> OnnxEmbedder:
    """Open the exported towers of `model` (and `text_model`), exporting them first if need be.

    `runtime` serves them: ONNX Runtime fp32 by default, or an OpenVinoRuntime. `measure`: an export
    made now also runs `auto`'s measurement in its child process, so this one loads only what won.
    """
    # Found, not imported: OpenVINO serves without it (0.2 s of a warm start), ONNX Runtime imports it on opening.
    if importlib.util.find_spec("onnxruntime") is None:
        raise OnnxUnavailable("onnxruntime is not installed")
    store = ModelStore(Path(state_dir) / "models")
    folder, manifest = _exported(store, model, "image", measure)
    if "image" not in manifest:
        raise ModelUnavailable(f"model '{model}' cannot embed images; imgd needs a CLIP model such as clip-ViT-B-32.")

    def repair_for(name: str) -> Callable[[], tuple[Path, dict[str, Any]]]:
        def repair() -> tuple[Path, dict[str, Any]]:
            return prepare.export(store, name, force=True)

        return repair

    image = Tower("image", folder, manifest, repair_for(model), threads, runtime)
    if text_model:
        text_folder, text_manifest = _exported(store, text_model, "text")
        if "text" not in text_manifest:
            raise ModelUnavailable(f"text model '{text_model}' cannot embed text.")
        check_text_dim(text_model, int(text_manifest["dim"]), model, int(manifest["dim"]))
        text = Tower("text", text_folder, text_manifest, repair_for(text_model), threads, runtime)
    else:
        if "text" not in manifest:
            raise ModelUnavailable(f"model '{model}' cannot embed text; imgd needs a CLIP model.")
        text = Tower("text", folder, manifest, repair_for(model), threads, runtime)
    return OnnxEmbedder(
        model_key(model), image, text, batch_size=batch_size, text_name=model_key(text_model) if text_model else None
    )
