"""config as the model runtime reads it: decode threads in the engine's pool, the precision torch picks."""

from __future__ import annotations

import os

import pytest


def test_decode_threads_zero_means_one_per_core(make_config, embedder):
    from imgd.daemon.service.library import open_library

    config = make_config(decode_threads=0)
    assert config.threads() == (os.cpu_count() or 1)
    assert make_config(decode_threads=3).threads() == 3
    library = open_library(config, embedder)
    try:
        assert library.engine._pool._max_workers == (os.cpu_count() or 1)
    finally:
        library.close()


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_bfloat16_only_where_the_cpu_does_it_natively(monkeypatch, native):
    import torch
    from imgd.daemon.embedders.torch import choose_precision

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert choose_precision("auto", "cpu") == ("bfloat16" if native else "float32")
    assert choose_precision("float32", "cpu") == "float32"  # an explicit choice is kept either way
    assert choose_precision("bfloat16", "cpu") == "bfloat16"
