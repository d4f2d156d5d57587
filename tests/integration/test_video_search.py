"""Videos in the library, end to end with the trained shapes model: indexed directly and by a real daemon,
found at the time they show what was asked, never crowding photos out, filtered by type and length, and
each bad video one line in `imgd failed` with the daemon still answering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import videokit
from click.testing import CliRunner
from daemonkit import DaemonProcess
from imgd.cli.main import cli
from imgd.daemon.store.catalog import Catalog
from shapekit import shape_image

pytestmark = pytest.mark.slow  # the shapes model through torch, and a daemon: tens of seconds

BAD = {
    "truncated.mp4": "not a video FFmpeg can read (damaged or truncated?)",
    "sound.mp4": "no video stream",
    "codec.avi": "no decoder for its video codec",
    "empty.mp4": "empty file",
}


def make_library(root: Path) -> Path:
    """trip.mp4 (a red circle 0-4 s, a blue square 4-8 s), squares.mp4 (one blue square and one yellow star
    in turn, 16 s: four frames of the same blue square), photos of each, and the bad videos."""
    pics = root / "pics"
    trip = videokit.circle_then_square(pics / "trip.mp4")
    scenes = [("blue", "square", 2.0) if n % 2 == 0 else ("yellow", "star", 2.0) for n in range(8)]
    videokit.write_video(pics / "squares.mp4", scenes, one_seed=True)
    for n in range(3):
        shape_image("blue", "square", 300 + n, (96, 96)).save(pics / f"square{n}.png")
        shape_image("red", "circle", 400 + n, (96, 96)).save(pics / f"circle{n}.png")
    bad = pics / "bad"
    bad.mkdir()
    videokit.truncated(bad / "truncated.mp4", trip)
    videokit.audio_only(bad / "sound.mp4")
    videokit.unknown_codec(
        bad / "codec.avi", videokit.write_video(root / "src.avi", [("red", "star", 1.0)], codec="mpeg4")
    )
    (bad / "empty.mp4").write_bytes(b"")
    return pics


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, shapes_model: Path) -> dict:
    root = tmp_path_factory.mktemp("videos")
    pics = make_library(root)
    args = ["--state-dir", str(root / "state"), "--model", str(shapes_model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "index", str(pics)], env={"IMGD_BACKEND": "torch"})
    assert result.exit_code == 0, result.output
    return {"root": root, "pics": pics, "args": args}


def run(library: dict, *command: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*library["args"], *command])
    return result.exit_code, result.stdout


def hits(library: dict, *query: str) -> list[dict]:
    code, out = run(library, "search", "--direct", "--json", *query)
    assert code in (0, 1), out
    return json.loads(out) if out.strip() else []


def test_a_blue_square_is_found_in_the_video_at_a_time_it_shows_one(library):
    found = {Path(h["path"]).name: h for h in hits(library, "-k", "20", "a blue square")}
    trip = found["trip.mp4"]
    assert 4.0 <= trip["time"] < 8.0 and trip["duration"] == pytest.approx(8.0, abs=0.2) and trip["type"] == "mp4"
    assert "time" not in found["square0.png"]  # a photo's row is as it was
    code, text = run(library, "search", "--direct", "-k", "20", "a blue square")
    line = next(line for line in text.splitlines() if "trip.mp4" in line)
    assert code == 0 and line.endswith(f"trip.mp4 @ 0:0{int(trip['time'])}"), line
    circle = next(h for h in hits(library, "-k", "20", "a red circle") if h["path"].endswith("trip.mp4"))
    assert 0.0 <= circle["time"] < 4.0


def test_a_video_is_one_content_with_its_distinct_frames_and_its_duration(library):
    catalog = Catalog(library["root"] / "state" / "catalog.db", readonly=True)
    try:
        record = catalog.get_file(str(library["pics"] / "trip.mp4"))
        assert [at for _, at in catalog.frames_of(record.content_id)] == [0.0, 4.0]  # 2 and 6 s repeat them
        assert catalog.durations([record.content_id]) == {record.content_id: pytest.approx(8.0, abs=0.2)}
    finally:
        catalog.close()
    listed = hits(library, "-k", "20", "--frames", "a blue square")
    assert next(h for h in listed if h["path"].endswith("trip.mp4"))["frames"] == [0.0, 4.0]


def test_frames_never_crowd_out_photos_k_counts_items(library):
    """squares.mp4 holds four blue-square frames, more than k: it still takes one place of the three."""
    found = hits(library, "-k", "3", "a blue square")
    paths = [h["path"] for h in found]
    assert len(paths) == 3 == len(set(paths)), paths
    assert sum(p.endswith(".png") for p in paths) >= 1, paths
    # Like a frame of squares.mp4, among videos: its four frames of that square score first; still, two
    # items are two videos.
    like = f"{library['pics'] / 'squares.mp4'}@0:00"
    videos = [Path(h["path"]).name for h in hits(library, "-k", "2", "--videos", "--like", like)]
    assert sorted(videos) == ["squares.mp4", "trip.mp4"], videos
    catalog = Catalog(library["root"] / "state" / "catalog.db", readonly=True)
    try:
        squares = catalog.get_file(str(library["pics"] / "squares.mp4"))
        assert len(catalog.frames_of(squares.content_id)) >= 4
    finally:
        catalog.close()


def test_video_filters_select_by_kind_type_and_length(library):
    names = lambda *query: sorted(Path(h["path"]).name for h in hits(library, "-k", "50", "a shape", *query))  # noqa: E731
    assert names("--videos") == ["squares.mp4", "trip.mp4"]
    assert names("--type", "mp4") == ["squares.mp4", "trip.mp4"]
    assert not any(n.endswith(".mp4") for n in names("--no-videos")) and len(names("--no-videos")) == 6
    assert names("--min-duration", "10") == ["squares.mp4"]
    assert names("--max-duration", "10") == ["trip.mp4"]
    code, _ = run(library, "search", "--direct", "x", "--no-videos", "--min-duration", "3")
    assert code == 2


def test_similar_from_a_frame_of_a_video_or_its_path(library):
    trip = library["pics"] / "trip.mp4"
    at_five = [Path(h["path"]).name for h in hits_similar(library, f"{trip}@0:05")]
    assert at_five[0].startswith("square"), at_five  # the frame shows the blue square
    first = [Path(h["path"]).name for h in hits_similar(library, str(trip))]
    assert first[0].startswith("circle") and "trip.mp4" not in first, first  # the path alone: its first frame


def hits_similar(library: dict, path: str) -> list[dict]:
    code, out = run(library, "similar", "--direct", "--json", "-k", "3", path)
    assert code == 0, out
    return json.loads(out)


def test_each_bad_video_is_one_line_in_failed(library):
    code, out = run(library, "failed")
    lines = [line for line in out.splitlines() if "/bad/" in line]
    assert sorted(lines) == sorted(f"{library['pics'] / 'bad' / name}: {why}" for name, why in BAD.items()), out


def test_through_the_daemon_the_same_answers_and_bad_videos_fail_while_it_answers(tmp_path, shapes_model):
    pics = make_library(tmp_path)
    with DaemonProcess(tmp_path, shapes_model, [pics], IMGD_BACKEND="torch") as daemon:
        daemon.start()
        status = daemon.wait_idle(timeout=240)
        assert daemon.answers() and status["daemon"]["state"] == "idle"
        env = {k: daemon.env[k] for k in ("IMGD_STATE_DIR", "IMGD_MODEL", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME")}
        runner = CliRunner()
        for query in (["a blue square", "-k", "3"], ["a blue square", "--videos", "--json", "--frames"]):
            through = runner.invoke(cli, ["search", *query], env=env)
            direct = runner.invoke(cli, ["search", "--direct", *query], env=env)
            assert through.exit_code == 0 and through.stdout == direct.stdout, (through.output, direct.output)
        assert " @ 0:0" in runner.invoke(cli, ["search", "a blue square", "--videos"], env=env).stdout
        failed = runner.invoke(cli, ["failed"], env=env).stdout
        assert all(f"{pics / 'bad' / name}: {why}" in failed for name, why in BAD.items()), failed
        shutil.copy(pics / "bad" / "truncated.mp4", pics / "bad" / "again.mp4")  # a bad one arriving live
        daemon.wait_idle(timeout=120)
        assert "again.mp4: not a video" in runner.invoke(cli, ["failed"], env=env).stdout and daemon.answers()
