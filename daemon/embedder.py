"""CLIP through sentence-transformers: the only module that imports torch.

`Embedder` is the protocol the engine needs; `ClipEmbedder` is the real one. Vectors come out
L2-normalised float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .errors import ModelUnavailable

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the engine needs from a model: a name to record, a size, and two encoders."""

    name: str
    dim: int
    device: str
    precision: str

    def prepare(self, image: Image.Image) -> Image.Image:
        """Shrink a decoded image to what the model looks at; safe to call from decode threads."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def model_key(name: str) -> str:
    """The name recorded in the catalog: an absolute path for local folders, else the hub name."""
    expanded = os.path.expanduser(name)
    return str(Path(expanded).resolve()) if os.path.isdir(expanded) else name


def _quiet_libraries() -> None:
    """The libraries log progress bars and retries to stderr; imgd reports load problems itself."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import huggingface_hub.utils.logging as hub_logging
    import transformers.utils.logging as tf_logging

    hub_logging.set_verbosity_error()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "httpx", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")
    warnings.filterwarnings("ignore", module="sentence_transformers")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connect instead of the hub client's minute of retries when offline."""
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def choose_precision(requested: str, device: str) -> str:
    """bfloat16 only where the hardware does it natively; elsewhere emulation makes it slower."""
    if requested != "auto":
        return requested
    import torch

    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    try:
        return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"
    except (AttributeError, RuntimeError):
        return "float32"


class ClipEmbedder:
    """A sentence-transformers CLIP model, loaded once and kept."""

    def __init__(self, model: str, device: str = "auto", precision: str = "auto", batch_size: int = 32) -> None:
        _quiet_libraries()
        import torch
        from sentence_transformers import SentenceTransformer

        self.name = model_key(model)
        self.batch_size = batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailable("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu.")
        local = os.path.isdir(os.path.expanduser(model))
        if not local and (os.sep in model or model.startswith(".")) and not model.count("/") == 1:
            raise ModelUnavailable(f"model folder '{model}' does not exist; check the path given to --model.")
        try:
            self._model = self._load(SentenceTransformer, model, local)
        except Exception as exc:  # noqa: BLE001 - any load failure means the same thing to the user
            raise ModelUnavailable(self._load_advice(model, local, exc)) from None
        self.precision = choose_precision(precision, self.device)
        self._dtype = torch.bfloat16 if self.precision == "bfloat16" else None
        self._torch = torch
        try:
            probe = self.encode_texts(["a photo"])
            self.dim = int(probe.shape[1])
            self.encode_images([Image.new("RGB", (32, 32))])
        except Exception as exc:  # noqa: BLE001
            raise ModelUnavailable(
                f"model '{model}' loaded but cannot embed both text and images ({type(exc).__name__}); "
                "imgd needs a CLIP model such as clip-ViT-B-32."
            ) from None
        self._target_side = self._processor_side()

    def _load(self, factory: type, model: str, local: bool) -> object:
        """Local folder, else the hub cache, else the hub itself if it can be reached."""
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            if local:
                return factory(os.path.expanduser(model), device=self.device)
            try:
                return factory(model, device=self.device, local_files_only=True)
            except Exception:  # noqa: BLE001 - not cached: try the network below
                if not _hub_reachable():
                    raise ConnectionError("not in the local cache and the model hub cannot be reached") from None
            return factory(model, device=self.device)

    @staticmethod
    def _load_advice(model: str, local: bool, exc: Exception) -> str:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        if local:
            return (
                f"could not load the model in '{model}' ({reason}); the folder must hold a "
                "sentence-transformers CLIP model saved with save_pretrained/save."
            )
        return (
            f"could not load model '{model}' ({reason}). If this machine is offline, download it on a "
            f"networked machine (SentenceTransformer('{model}').save('clip-model')), copy the folder "
            "here and pass --model /path/to/clip-model (or set IMGD_MODEL)."
        )

    def _processor_side(self) -> int | None:
        """The shortest side the model's image processor resizes to, to shrink images early."""
        module = self._model[0]
        processor = getattr(module, "processor", None)
        image_processor = getattr(processor, "image_processor", processor)
        size = getattr(image_processor, "size", None)
        # transformers 4 keeps a dict here, transformers 5 a SizeDict with attributes.
        side = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
        return int(side) if side else None

    def prepare(self, image: Image.Image) -> Image.Image:
        """Resize to the processor's shortest edge in the decode thread, with its own filter."""
        side = self._target_side
        if side is None or min(image.size) <= side:
            return image
        width, height = image.size
        if width <= height:
            size = (side, int(side * height / width))
        else:
            size = (int(side * width / height), side)
        return image.resize(size, Image.Resampling.BICUBIC)

    def _encode(self, items: Sequence[object]) -> np.ndarray:
        torch = self._torch
        autocast = (
            torch.autocast(self.device, dtype=self._dtype) if self._dtype is not None else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            vectors = self._model.encode(
                list(items),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
                normalize_embeddings=False,
            )
        return normalise(np.asarray(vectors, dtype=np.float32))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return self._encode(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def load_embedder(model: str, device: str = "auto", precision: str = "auto", batch_size: int = 32) -> Embedder:
    return ClipEmbedder(model, device=device, precision=precision, batch_size=batch_size)
