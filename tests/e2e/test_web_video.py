"""The gallery and videos over real HTTP: a video's hit carries its best frame's time, its thumbnail shows
that frame, and the original plays by HTTP range requests behind the same token."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import videokit
from click.testing import CliRunner
from conftest import write_image
from imgd.cli.main import cli
from imgd.daemon import config as config_module
from imgd.daemon.embedders import load_embedder
from imgd.web.server import Gallery
from PIL import Image
from test_web import Browser


@pytest.fixture
def gallery(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[Gallery, Path]]:
    pics = tmp_path / "pics"
    videokit.circle_then_square(pics / "trip.mp4")
    write_image(pics / "photo.jpg", seed=1, size=(160, 120))
    config = config_module.load(None, {"state_dir": tmp_path / "state", "model": str(tiny_model)}, env={})
    result = CliRunner().invoke(
        cli, ["--state-dir", str(config.state_dir), "--model", str(tiny_model), "index", str(pics)]
    )
    assert result.exit_code == 0, result.output
    server = Gallery(config, lambda name: load_embedder(name, device="cpu", batch_size=8), port=0)
    server.start()
    try:
        yield server, pics
    finally:
        server.stop()


def colour(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)


@pytest.mark.slow  # indexing with a model, and a gallery server
def test_a_video_hit_shows_its_frame_and_plays_by_range_requests(gallery):
    server, _ = gallery
    browser = Browser(server)
    assert browser.get("/api/search?q=anything").status == 403  # no token, no answer
    browser.log_in()
    hits = browser.get("/api/search?q=anything&limit=10").json()["hits"]
    video = next(h for h in hits if h["name"] == "trip.mp4")
    photo = next(h for h in hits if h["name"] == "photo.jpg")
    assert video["time"] in (0.0, 4.0) and "time" not in photo
    red, blue = (
        colour(browser.get(f"/thumb/{video['id']}?t=0").body),
        colour(browser.get(f"/thumb/{video['id']}?t=5").body),
    )
    assert red[0] > red[2] and blue[2] > blue[0]  # the circle's red at 0 s, the square's blue at 5 s
    assert browser.get(f"/view/{video['id']}?t=5").headers["content-type"] == "image/jpeg"
    assert browser.get(f"/thumb/{video['id']}?t=nonsense").status == 200  # a bad time is the start
    part = browser.request("GET", f"/original/{video['id']}", headers={"Range": "bytes=0-99"})
    assert part.status == 206 and len(part.body) == 100 and part.headers["content-type"] == "video/mp4"
    assert part.headers["content-range"].startswith("bytes 0-99/")
    stranger = Browser(server)
    assert stranger.request("GET", f"/original/{video['id']}", headers={"Range": "bytes=0-99"}).status == 403
