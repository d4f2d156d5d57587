"""A model change keeps videos: each stored frame gets the new model's vector, none is dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
import videokit
from conftest import write_image
from imgd.daemon.embedders import load_embedder
from imgd.daemon.service.library import open_library
from imgd.daemon.store.catalog import Catalog


def frames(config) -> dict[int, list[tuple[int, float]]]:
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        return {cid: catalog.frames_of(cid) for cid in map(int, catalog.content_ids())}
    finally:
        catalog.close()


@pytest.mark.slow
def test_a_model_change_re_embeds_every_frame_of_a_video(tmp_path: Path, make_config, embedder, wide_model):
    pics = tmp_path / "pics"
    videokit.circle_then_square(pics / "trip.mp4")
    write_image(pics / "photo.png", seed=3)
    config = make_config()
    library = open_library(config, embedder)
    try:
        library.engine.reconcile([str(pics)])
    finally:
        library.close()
    before = frames(config)
    assert sorted(len(f) for f in before.values()) == [1, 2]  # the photo, and the video's two scenes
    wide = load_embedder(str(wide_model), device="cpu", batch_size=8)
    library = open_library(make_config(model=wide.name), wide, previous=lambda name: embedder)
    try:
        while library.engine.reembed_step():
            pass
        assert library.engine.finish_change() == []  # nothing could not be read: the video is kept
        assert library.index.dim == 48 and len(library.index) == 3
    finally:
        library.close()
    assert frames(config) == before  # same frames, same vector ids: nothing dropped, nothing re-indexed
