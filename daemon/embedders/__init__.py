"""The model backends behind one Embedder protocol: sentence-transformers/torch (torch.py), ONNX
Runtime (onnx.py) and OpenVINO (openvino.py), both fed by export.py in a child process (prepare.py).
`load_embedder` picks one by `[model] backend`; `auto` serves what choice.py measured fastest here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailable
from .base import Embedder, model_key, normalise

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["BACKENDS", "Embedder", "load_configured", "load_embedder", "model_key", "normalise"]

BACKENDS = ("auto", "torch", "onnx", "openvino")
EXPORTED = {"onnx": "ONNX", "openvino": "OpenVINO"}

log = logging.getLogger(__name__)


def load_embedder(
    model: str,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 32,
    backend: str = "torch",
    state_dir: Path | None = None,
    text_model: str | None = None,
    threads: int = 0,
) -> Embedder:
    """The model for `backend`; `auto` takes the exported runtime measured fastest here.

    torch runs only when named (or for `device='cuda'`, which only torch serves): no serving process
    may import it, so `auto` that cannot export says so and names `--backend torch` instead of loading
    it. Exported files live under state_dir. `precision` applies to torch, and to a named openvino;
    `auto` lets the measurement decide.
    """
    if backend not in BACKENDS:
        raise ModelUnavailable(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
    text_model = text_model or None
    named = EXPORTED.get(backend)
    if named and state_dir is None:
        raise ModelUnavailable(f"the {named} backend needs a state folder to keep its exported model in.")
    if backend == "auto" and state_dir is None and device != "cuda":
        raise ModelUnavailable(
            "the auto backend needs a state folder to keep its exported model in; or --backend torch."
        )
    if named and device == "cuda":
        raise ModelUnavailable(f"the {named} backend runs on the CPU; use --backend torch with --device cuda.")
    preloaded = fingerprint = None
    if backend != "torch" and state_dir is not None and device != "cuda":
        from .onnx import OnnxUnavailable, load_onnx

        def load(runtime: Any = None, measure: bool = False) -> Embedder:
            return load_onnx(
                model,
                state_dir,
                batch_size=batch_size,
                text_model=text_model,
                threads=threads,  # an exported runtime's threads (0: one per core); torch follows OMP_NUM_THREADS
                runtime=runtime,
                measure=measure,
            )

        try:
            if backend == "openvino":
                from .choice import make_runtime

                return load(make_runtime("openvino", precision))
            # exports first where need be, and then measures in the same child; sessions open on first use
            embedder = load(measure=backend == "auto")
            if backend == "onnx" or embedder.fingerprint is None:
                return embedder
            from .choice import load_auto

            return load_auto(load, Path(state_dir) / "models", embedder.fingerprint)
        except OnnxUnavailable as exc:
            if named:
                raise ModelUnavailable(f"cannot use the {named} backend: {exc}; try --backend torch.") from None
            raise ModelUnavailable(
                f"cannot run model '{model}' on ONNX Runtime or OpenVINO: {exc}; name --backend torch to use torch."
            ) from None
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


def load_configured(config: Config, model: str | None = None, threads: int = 0) -> Embedder:
    """load_embedder with the config's model settings: `model` names another (a model change's old one),
    `threads` sizes the runtime (0: one per core; a cluster's worker takes one)."""
    return load_embedder(
        model or config.model,
        config.device,
        config.precision,
        config.batch_size,
        backend=config.backend,
        state_dir=config.state_dir,
        text_model=config.text_model or None,
        threads=threads,
    )
