"""The model backends behind one Embedder protocol: sentence-transformers/torch (torch.py) and ONNX
Runtime (onnx.py, fed by export.py). `load_embedder` picks one by `[model] backend`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ModelUnavailable
from .base import Embedder, model_key, normalise

__all__ = ["BACKENDS", "Embedder", "load_embedder", "model_key", "normalise"]

BACKENDS = ("auto", "torch", "onnx")

log = logging.getLogger(__name__)


def load_embedder(
    model: str,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 32,
    backend: str = "torch",
    state_dir: Path | None = None,
    text_model: str | None = None,
) -> Embedder:
    """The model for `backend`; `auto` takes ONNX where its files exist or can be made, else torch.

    ONNX files live under state_dir, so without one only torch is possible.
    """
    if backend not in BACKENDS:
        raise ModelUnavailable(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
    text_model = text_model or None
    if backend == "onnx" and state_dir is None:
        raise ModelUnavailable("the ONNX backend needs a state folder to keep its exported model in.")
    if backend == "onnx" and device == "cuda":
        raise ModelUnavailable("the ONNX backend runs on the CPU; use --backend torch with --device cuda.")
    preloaded = fingerprint = None
    if backend != "torch" and state_dir is not None and device != "cuda":
        from .onnx import OnnxUnavailable, load_onnx

        try:
            return load_onnx(model, state_dir, batch_size=batch_size, text_model=text_model)
        except OnnxUnavailable as exc:
            if backend == "onnx":
                raise ModelUnavailable(f"cannot use the ONNX backend: {exc}; try --backend torch.") from None
            log.warning("%s; using the torch backend", exc)
            preloaded, fingerprint = exc.st_model, exc.fingerprint
    from .torch import ClipEmbedder

    if fingerprint is None and state_dir is not None:
        from .store import ModelStore

        fingerprint = ModelStore(Path(state_dir) / "models").lookup(model_key(model))
    embedder = ClipEmbedder(
        model,
        device=device,
        precision=precision,
        batch_size=batch_size,
        text_model=text_model,
        fingerprint=fingerprint,
        preloaded=preloaded,
    )
    if state_dir is not None and fingerprint is None and embedder.fingerprint:
        from .store import ModelStore

        ModelStore(Path(state_dir) / "models").remember(embedder.name, embedder.fingerprint)
    return embedder
