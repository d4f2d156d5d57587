"""Sampling a video's frames: real files written by PyAV, decoded by PyAV (daemon/ingest/video.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import videokit
from imgd.daemon.errors import ImageReadError
from imgd.daemon.ingest import video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each test video once: tiny, a few seconds."""
    root = tmp_path_factory.mktemp("clips")
    two = [("red", "circle", 4.0), ("blue", "square", 4.0)]
    mpeg4 = videokit.write_video(root / "mpeg4.avi", [("green", "star", 1.0)], codec="mpeg4")
    trip = videokit.circle_then_square(root / "trip.mp4")
    (root / "empty.mp4").write_bytes(b"")
    return {
        "trip": trip,
        "sparse": videokit.write_video(root / "sparse.mp4", two, gop=80),  # one keyframe in 8 s
        "every25": videokit.write_video(root / "every25.mp4", [("red", "circle", 10.0)], gop=25),
        "short": videokit.write_video(root / "short.mp4", [("green", "star", 0.1)]),  # one frame
        "truncated": videokit.truncated(root / "truncated.mp4", trip),
        "audio": videokit.audio_only(root / "audio.mp4"),
        "codec": videokit.unknown_codec(root / "codec.avi", mpeg4),
        "empty": root / "empty.mp4",
    }


def test_samples_are_keyframes_where_keyframes_lie_within_half_a_step(clips):
    """A keyframe every 2.5 s, samples wanted every 2 s: the keyframes themselves, never a frame between."""
    found = video.read_video(str(clips["every25"]))
    assert [f.at for f in found.frames] == [0.0, 2.5, 5.0, 7.5]
    assert found.duration == pytest.approx(10.0, abs=0.2) and found.meta.format == "mp4"


def test_where_keyframes_are_sparse_a_frame_is_decoded_at_the_wanted_time(clips):
    """One keyframe in 8 s: a sample still comes within MAX_GAP, and it shows the blue square's half."""
    frames = video.read_video(str(clips["sparse"])).frames
    times = [f.at for f in frames]
    assert times[0] == 0.0 and all(b - a <= video.MAX_GAP + 0.2 for a, b in zip(times, times[1:], strict=False))
    assert any(4.0 <= t < 8.0 for t in times), times
    later = np.asarray(frames[-1].image.convert("RGB"), dtype=np.float32)
    assert later[..., 2].mean() > later[..., 0].mean()  # blue over red: the square, not the circle


def test_the_shortest_clip_gives_one_frame_and_frames_are_small(clips):
    found = video.read_video(str(clips["short"]))
    assert [f.at for f in found.frames] == [0.0] and found.frames[0].image.size == (128, 128)
    assert (found.meta.width, found.meta.height) == (128, 128)


def test_the_interval_stretches_beyond_the_cap_and_always_covers_the_whole_video():
    assert video.slots(8.0) == [0.0, 2.0, 4.0, 6.0]
    hour = video.slots(3600.0)
    assert len(hour) == video.MAX_FRAMES and hour[-1] >= 3600.0 - 3600.0 / video.MAX_FRAMES - 1e-6
    assert video.slots(0.0) == [0.0] and video.slots(float("nan")) == [0.0] and video.slots(0.3) == [0.0]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "not a video FFmpeg can read (damaged or truncated?)"),
        ("audio", "no video stream"),
        ("codec", "no decoder for its video codec"),
        ("empty", "not a video FFmpeg can read (damaged or truncated?)"),
    ],
)
def test_a_bad_video_fails_with_one_reason(clips, name, reason):
    with pytest.raises(ImageReadError) as caught:
        video.read_video(str(clips[name]))
    assert caught.value.reason == reason


def test_an_empty_file_is_refused_before_ffmpeg_sees_it(clips):
    with pytest.raises(ImageReadError, match="empty file"):
        video.hash_file(str(clips["empty"]))


def test_a_video_past_its_time_budget_fails_instead_of_hanging(clips):
    ticks = iter(range(1000))
    with pytest.raises(ImageReadError, match="longer than"):
        video.read_video(str(clips["trip"]), budget=2.5, clock=lambda: float(next(ticks)))


@pytest.mark.slow
def test_an_hour_of_4k_is_sampled_within_bounds(tmp_path):
    path = videokit.long_video(tmp_path / "hour.mp4")
    started = time.monotonic()
    found = video.read_video(str(path))
    assert time.monotonic() - started < 30.0
    assert found.duration == pytest.approx(3600.0, abs=1.0) and (found.meta.width, found.meta.height) == (3840, 2160)
    assert 1 <= len(found.frames) <= video.MAX_FRAMES and found.frames[-1].at >= 3000.0
    assert max(min(f.image.size) for f in found.frames) <= video.FRAME_SIDE


def test_near_identical_neighbours_are_kept_once():
    a, b = np.eye(4, dtype=np.float32)[:2]
    near = (a + 0.01 * b) / np.linalg.norm(a + 0.01 * b)
    assert video.distinct(np.stack([a, near, a, b, b, a])) == [0, 3, 5]
    assert video.distinct(np.zeros((0, 4), dtype=np.float32)) == []


def test_a_time_after_a_video_path_names_its_frame(tmp_path):
    clip = tmp_path / "trip.mp4"
    assert video.split_time(f"{clip}@1:23") == (str(clip), 83.0)
    assert video.split_time(f"{clip}@1:02:03") == (str(clip), 3723.0)
    assert video.split_time(f"{clip}@4.5") == (str(clip), 4.5)
    assert video.split_time(str(clip)) == (str(clip), None)
    assert video.split_time(f"{tmp_path}/photo.jpg@1:23") == (f"{tmp_path}/photo.jpg@1:23", None)
    named = tmp_path / "odd.mp4@1:00"
    named.write_bytes(b"x")  # a file really named so is that file
    assert video.split_time(str(named)) == (str(named), None)
