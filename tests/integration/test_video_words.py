"""Words in videos: a few of a video's samples read by the real OCR models, the video found by its words.

A PyAV clip shows a sign for its first seconds, then shapes; `imgd index` embeds its samples and reads
their words (at most VIDEO_WORD_FRAMES of them, decoded again at their times).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from imgd.cli.main import cli
from imgd.daemon.ingest.wordspass import VIDEO_WORD_FRAMES, spread
from PIL import Image, ImageDraw, ImageFont
from shapekit import shape_image

pytestmark = pytest.mark.slow

SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def sign(text: str, size: tuple[int, int]) -> Image.Image:
    page = Image.new("RGB", size, (245, 242, 235))
    ImageDraw.Draw(page).text((40, size[1] // 2 - 30), text, fill=(20, 20, 20), font=ImageFont.truetype(SANS, 44))
    return page


def write_clip(path: Path, scenes: list[tuple[Image.Image, float]], fps: int = 5) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = scenes[0][0].width, scenes[0][0].height, "yuv420p"
        stream.codec_context.gop_size = fps
        stream.options = {"preset": "ultrafast"}
        for picture, seconds in scenes:
            frame = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")
            for _ in range(round(seconds * fps)):
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_spread_keeps_the_ends_and_at_most_the_cap() -> None:
    times = [float(t) for t in range(0, 240, 2)]  # 120 samples: the per-video cap of a long video
    chosen = spread(times)
    assert len(chosen) == VIDEO_WORD_FRAMES and chosen[0] == 0.0 and chosen[-1] == 238.0
    assert chosen == sorted(set(chosen))
    assert spread([0.0, 2.0]) == [0.0, 2.0]


def test_a_video_is_found_by_the_words_in_its_frames(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    size = (640, 360)
    write_clip(
        pics / "parking.mp4",
        [(sign("PARKING ZONE B", size), 4.0), (shape_image("red", "circle", seed=1, size=size), 4.0)],
    )
    write_clip(pics / "circles.mp4", [(shape_image("blue", "square", seed=2, size=size), 6.0)])
    base = ["--state-dir", str(tmp_path / "state"), "--model", str(tiny_model), "--device", "cpu"]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "IMGD_BACKEND": "torch"}
    indexed = CliRunner().invoke(cli, [*base, "index", str(pics)], env=env)
    assert indexed.exit_code == 0, indexed.output

    result = CliRunner().invoke(cli, [*base, "search", "--direct", "--json", "x", "--words", "parking"], env=env)

    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [os.path.basename(hit["path"]) for hit in hits] == ["parking.mp4"]
    assert any("PARKING" in line for line in hits[0]["words"])
