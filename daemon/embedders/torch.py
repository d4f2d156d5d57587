"""The sentence-transformers/torch backend: the way a model is named, downloaded and loaded.

The only module, with export.py, that imports torch, transformers or sentence-transformers. It also
reads off a loaded model what the ONNX backend needs to reproduce it without them: the image
processor's settings, tokenizer.json, and a fingerprint of the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from ..paths import looks_like_path
from .base import check_text_dim, model_key, normalise, shrink_to_side
from .preprocess import ImagePrep

log = logging.getLogger(__name__)


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


def choose_device(device: str) -> str:
    import torch

    chosen = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if chosen == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu.")
    return chosen


def _load_advice(model: str, local: bool, exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if local:
        return (
            f"could not load the model in '{model}' ({reason}); the folder must hold a "
            "sentence-transformers model saved with save_pretrained/save."
        )
    return (
        f"could not load model '{model}' ({reason}). If this machine is offline, download it on a "
        f"networked machine (SentenceTransformer('{model}').save('clip-model')), copy the folder "
        "here and pass --model /path/to/clip-model (or set IMGD_MODEL). To try imgd without it, build the "
        "random-weight test model as the README's Set up says (python tests/clipkit.py ~/imgd-models/tiny-clip)."
    )


def load_sentence_transformer(model: str, device: str) -> Any:
    """Local folder, else the hub cache, else the hub itself if it can be reached; one clear error otherwise."""
    _quiet_libraries()
    from sentence_transformers import SentenceTransformer

    local = os.path.isdir(os.path.expanduser(model))
    if not local and looks_like_path(model):
        raise ModelUnavailable(f"model folder '{model}' does not exist; check the path given to --model.")
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            if local:
                loaded = SentenceTransformer(os.path.expanduser(model), device=device)
            else:
                try:
                    loaded = SentenceTransformer(model, device=device, local_files_only=True)
                except Exception:  # noqa: BLE001 - not cached: try the network below
                    if not _hub_reachable():
                        raise ConnectionError("not in the local cache and the model hub cannot be reached") from None
                    loaded = SentenceTransformer(model, device=device)
    except Exception as exc:  # noqa: BLE001 - any load failure means the same thing to the user
        raise ModelUnavailable(_load_advice(model, local, exc)) from None
    _cap_length(loaded)
    return loaded


def _cap_length(st_model: Any) -> None:
    """Truncate text to the positions the text model has: a CLIP tokenizer saved without a limit
    would otherwise let a long query crash the model instead of being cut, as CLIP's own is."""
    clip = clip_module(st_model)
    config = getattr(clip.config, "text_config", None) if clip is not None else None
    positions = getattr(config, "max_position_embeddings", None)
    if positions and (st_model.max_seq_length is None or st_model.max_seq_length > positions):
        st_model.max_seq_length = int(positions)


def clip_module(st_model: Any) -> Any | None:
    """The transformers model under a CLIP-style first module (one with both feature methods), else None."""
    first = st_model[0]
    inner = getattr(first, "auto_model", None) or getattr(first, "model", None)
    if inner is not None and hasattr(inner, "get_image_features") and hasattr(inner, "get_text_features"):
        return inner
    return None


def _processor(st_model: Any) -> Any:
    first = st_model[0]
    return getattr(first, "processor", None) or getattr(first, "tokenizer", None)


def image_prep_of(st_model: Any) -> ImagePrep | None:
    """The image processor's settings, or None when this model does not take images."""
    if clip_module(st_model) is None:
        return None
    processor = _processor(st_model)
    ip = getattr(processor, "image_processor", processor)

    def get(obj: Any, key: str) -> Any:
        # transformers 4 keeps dicts here, transformers 5 SizeDicts with attributes.
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    size, crop = ip.size, getattr(ip, "crop_size", None)
    side = get(size, "shortest_edge")
    do_crop = bool(getattr(ip, "do_center_crop", False)) and crop is not None
    if side is None and not (get(size, "height") and get(size, "width")):
        return None
    height = get(crop, "height") if do_crop else get(size, "height") or side
    width = get(crop, "width") if do_crop else get(size, "width") or side
    if not getattr(ip, "do_resize", True) or not getattr(ip, "do_normalize", True):
        return None
    return ImagePrep(
        side=int(side) if side else None,
        height=int(height),
        width=int(width),
        crop=do_crop,
        mean=tuple(float(v) for v in ip.image_mean),
        std=tuple(float(v) for v in ip.image_std),
        rescale=float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0,
        resample=int(getattr(ip, "resample", 3) or 3),
    )


def text_prep_of(st_model: Any) -> dict[str, Any]:
    """tokenizer.json, the length the torch path truncates to, and the padding id."""
    tokenizer = getattr(_processor(st_model), "tokenizer", None) or st_model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelUnavailable("the model's tokenizer has no tokenizer.json form")
    max_length = int(st_model.max_seq_length or tokenizer.model_max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {"tokenizer": backend.to_str(), "max_length": max_length, "pad_id": int(pad_id)}


def fingerprint_of(st_model: Any) -> str:
    """What the vectors depend on: every weight (names, shapes, bytes) and the image settings."""
    import torch

    digest = hashlib.sha256()
    prep = image_prep_of(st_model)
    digest.update(json.dumps(prep.as_dict() if prep else None, sort_keys=True).encode())
    for name, tensor in sorted(st_model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:32]


class ClipEmbedder:
    """A sentence-transformers CLIP model (and an optional separate text model), loaded once and kept."""

    backend = "torch"

    def __init__(
        self,
        model: str,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 32,
        text_model: str | None = None,
        fingerprint: str | None = None,
        preloaded: Any = None,
    ) -> None:
        import torch

        self.name = model_key(model)
        self.text_name = model_key(text_model) if text_model else None
        self.batch_size = batch_size
        self.device = choose_device(device)
        self._model = preloaded if preloaded is not None else load_sentence_transformer(model, self.device)
        self._text_model = load_sentence_transformer(text_model, self.device) if text_model else self._model
        self.precision = choose_precision(precision, self.device)
        self._dtype = torch.bfloat16 if self.precision == "bfloat16" else None
        self._torch = torch
        try:
            self.dim = int(self._encode(self._model, [Image.new("RGB", (32, 32))]).shape[1])
            if text_model is None:
                self._encode(self._model, ["a photo"])
        except Exception as exc:  # noqa: BLE001
            raise ModelUnavailable(
                f"model '{model}' loaded but cannot embed both text and images ({type(exc).__name__}); "
                "imgd needs a CLIP model such as clip-ViT-B-32."
            ) from None
        if text_model is not None:
            try:
                text_dim = int(self._encode(self._text_model, ["a photo"]).shape[1])
            except Exception as exc:  # noqa: BLE001
                raise ModelUnavailable(
                    f"text model '{text_model}' loaded but cannot embed text ({type(exc).__name__})."
                ) from None
            check_text_dim(text_model or "", text_dim, model, self.dim)
        prep = image_prep_of(self._model)
        self._target_side = prep.side if prep else None
        self.fingerprint = fingerprint or fingerprint_of(self._model)

    def prepare(self, image: Image.Image) -> Image.Image:
        """Resize to the processor's shortest edge in the decode thread, with its own filter."""
        return shrink_to_side(image, self._target_side)

    def _encode(self, model: Any, items: Sequence[object]) -> np.ndarray:
        torch = self._torch
        autocast = (
            torch.autocast(self.device, dtype=self._dtype) if self._dtype is not None else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            vectors = model.encode(
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
        return self._encode(self._model, images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self._text_model, texts)

    def release_images(self) -> bool:
        """One torch model serves both towers here: there is nothing to free on its own."""
        return False
