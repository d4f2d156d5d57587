"""Where the engine gets its model: the backends live in daemon/embedders/; this keeps the old name."""

from __future__ import annotations

from .embedders import BACKENDS, Embedder, load_embedder, model_key, normalise

__all__ = ["BACKENDS", "Embedder", "load_embedder", "model_key", "normalise"]
