"""Duplicates and videos: exact copies of a video are a group; a video is never a near-duplicate of
anything (no measured method earns it yet), even where one of its frames matches a photo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import videokit
from click.testing import CliRunner
from imgd.cli.main import cli
from PIL import Image
from shapekit import shape_image


@pytest.mark.slow  # indexing with a model: tens of seconds here
def test_a_video_is_a_duplicate_of_its_copies_only(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    trip = videokit.circle_then_square(pics / "trip.mp4")
    shutil.copy(trip, pics / "trip copy.mp4")
    # The video's first frame as a photo, and a photo of it a little brighter: near-duplicates of each other.
    frame = shape_image("red", "circle", seed=0, size=videokit.SIZE, background="light")
    frame.save(pics / "frame.png")
    Image.fromarray(np.clip(np.asarray(frame, dtype=np.int16) + 6, 0, 255).astype(np.uint8)).save(pics / "bright.png")
    args = ["--state-dir", str(tmp_path / "state"), "--model", str(tiny_model)]
    assert CliRunner().invoke(cli, [*args, "index", str(pics)], env={"IMGD_BACKEND": "torch"}).exit_code == 0
    result = CliRunner().invoke(cli, [*args, "dupes", "--direct", "--json", "--threshold", "0.9"])
    groups = [sorted(Path(m["path"]).name for m in group["members"]) for group in json.loads(result.stdout)]
    assert sorted(groups) == [["bright.png", "frame.png"], ["trip copy.mp4", "trip.mp4"]], groups
