"""thumbnails: upright, small, made once per file version, kept under a size cap, never from a link."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pytest
from conftest import picture, write_image
from imgd.daemon.api import thumbnails
from imgd.daemon.api.thumbnails import VIEW_SIDE, ThumbnailCache
from imgd.daemon.errors import ImageReadError
from imgd.daemon.ingest import imaging
from PIL import Image

# How a camera stores an upright scene for each EXIF orientation that swaps the sides.
STORED_AS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ThumbnailCache]:
    with ThumbnailCache(tmp_path / "thumbs", max_bytes=50 << 20) as cache:
        yield cache


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every real decode the cache does (a spy: the decode itself still runs)."""
    calls: list[str] = []
    real = imaging.decode

    def spy(path: str, *args: object, **kwargs: object):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(imaging, "decode", spy)
    return calls


def as_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_rotated_camera_photo_gives_an_upright_thumbnail(cache, tmp_path, orientation):
    upright = picture(7, (600, 400))  # landscape scene
    stored = upright.transpose(STORED_AS[orientation])  # the sensor's portrait pixels
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = orientation
    path = tmp_path / "camera.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())

    thumb = cache.get(str(path))

    image = as_image(thumb.data)
    assert image.size == (thumb.width, thumb.height) == (256, 171)
    assert mean_diff(image, upright.resize(image.size, Image.Resampling.BOX)) < 12


def test_sizes_keep_the_aspect_ratio_and_never_enlarge(cache, tmp_path):
    big = write_image(tmp_path / "big.jpg", seed=1, size=(3000, 2000))
    tall = write_image(tmp_path / "tall.png", seed=2, size=(300, 900))
    tiny = write_image(tmp_path / "tiny.png", seed=3, size=(40, 30))

    assert as_image(cache.get(str(big)).data).size == (256, 171)
    assert as_image(cache.get(str(big), VIEW_SIDE).data).size == (1600, 1067)
    assert as_image(cache.get(str(tall)).data).size == (85, 256)
    assert as_image(cache.get(str(tiny)).data).size == (40, 30)


def test_a_second_request_is_served_from_disk_without_decoding(cache, tmp_path, decodes):
    path = str(write_image(tmp_path / "a.jpg", seed=1, size=(800, 600)))

    first = cache.get(path)
    second = cache.get(path)
    with ThumbnailCache(cache.folder, max_bytes=50 << 20) as other_process:
        third = other_process.get(path)

    assert decodes == [path]
    assert first.data == second.data == third.data
    assert first.path is not None and first.path.is_file() and first.path.is_relative_to(cache.folder)


def test_a_changed_file_gets_a_new_thumbnail(cache, tmp_path, decodes):
    path = tmp_path / "a.jpg"
    write_image(path, seed=1, size=(400, 300))
    before = cache.get(str(path))
    write_image(path, seed=2, size=(400, 300))  # another picture, quite possibly the same size
    after = cache.get(str(path))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # only the mtime moves
    touched = cache.get(str(path))

    assert len(decodes) == 3
    assert mean_diff(as_image(before.data), as_image(after.data)) > 10
    assert mean_diff(as_image(after.data), picture(2, after_size(after)).convert("RGB")) < 12
    assert touched.path != after.path


def after_size(thumb: thumbnails.Thumbnail) -> tuple[int, int]:
    return thumb.width, thumb.height


def test_concurrent_requests_for_one_file_decode_it_once(cache, tmp_path, decodes):
    path = str(write_image(tmp_path / "a.jpg", seed=1, size=(2000, 1500)))
    results: list[bytes] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        results.append(cache.get(path).data)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert decodes == [path]
    assert len(results) == 8 and len(set(results)) == 1


class FinishesBeforeSubmitReturns(ThreadPoolExecutor):
    """A pool whose jobs are done when submit returns: the race the real pool loses now and then."""

    def submit(self, fn, /, *args, **kwargs):
        future = super().submit(fn, *args, **kwargs)
        wait([future])
        return future


def test_a_job_done_before_its_callback_is_registered_does_not_deadlock(cache, tmp_path):
    """Found as an intermittent 300 s hang: a failed job (it never takes the cache's lock) could finish
    before submit registered its done-callback, which then ran at once, under the lock it needs."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    cache._pool.shutdown()
    cache._pool = FinishesBeforeSubmitReturns(max_workers=1)
    outcome: list[str] = []

    def ask() -> None:
        try:
            cache.get(str(broken))
        except ImageReadError as exc:
            outcome.append(exc.reason)

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(10)

    assert not worker.is_alive(), "cache.get deadlocked"
    assert outcome == ["not a recognised image format"] and cache._inflight == {}


def test_the_size_cap_evicts_the_least_recently_used(tmp_path):
    paths = [str(write_image(tmp_path / "pics" / f"{i}.png", seed=i, size=(256, 256))) for i in range(8)]
    with ThumbnailCache(tmp_path / "thumbs", max_bytes=1 << 30) as probe:
        one = len(probe.get(paths[0]).data)
    cap = int(one * 4.5)
    with ThumbnailCache(tmp_path / "thumbs2", max_bytes=cap) as cache:
        made = [cache.get(p) for p in paths[:4]]
        old = time.time() - 3600
        for i, thumb in enumerate(made):  # 0 oldest ... 3 newest
            os.utime(thumb.path, (old + i, old + i))
        cache.get(paths[0])  # a hit: 0 is now the most recently used
        for p in paths[4:6]:
            cache.get(p)

        assert cache.size_on_disk() <= cap
        assert made[0].path.exists(), "the thumbnail just viewed was evicted"
        assert not made[1].path.exists() and not made[2].path.exists()
        assert cache.cache_path(paths[5]).exists()


def test_a_symbolic_link_is_refused_unless_links_are_followed(tmp_path):
    target = write_image(tmp_path / "real.jpg", seed=1)
    link = tmp_path / "link.jpg"
    link.symlink_to(target)

    with ThumbnailCache(tmp_path / "t1", max_bytes=1 << 20) as cache, pytest.raises(ImageReadError, match="symbolic"):
        cache.get(str(link))
    with ThumbnailCache(tmp_path / "t2", max_bytes=1 << 20, follow_symlinks=True) as cache:
        assert cache.get(str(link)).width == 96


def test_unreadable_things_fail_as_image_read_errors_and_store_nothing(cache, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not a jpeg</html>")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")

    with pytest.raises(ImageReadError, match="not a regular file"):
        cache.get(str(fifo))
    with pytest.raises(ImageReadError, match="vanished"):
        cache.get(str(tmp_path / "gone.jpg"))
    with pytest.raises(ImageReadError, match="not a recognised image"):
        cache.get(str(broken))
    with pytest.raises(ImageReadError, match="empty"):
        cache.get(str(empty))
    with pytest.raises(ValueError):
        cache.get(str(broken), side=100)
    assert cache.size_on_disk() == 0


def test_a_cache_that_cannot_be_written_still_gives_thumbnails(tmp_path):
    blocker = tmp_path / "thumbs"
    blocker.write_text("a file where the cache folder should be")
    path = str(write_image(tmp_path / "a.jpg", seed=1))

    with ThumbnailCache(blocker, max_bytes=1 << 20) as cache:
        thumb = cache.get(path)

    assert thumb.path is None and as_image(thumb.data).size == (96, 64)


def test_a_damaged_cache_entry_is_made_again(cache, tmp_path, decodes):
    path = str(write_image(tmp_path / "a.jpg", seed=1))
    first = cache.get(path)
    first.path.write_bytes(b"garbage")

    again = cache.get(path)

    assert len(decodes) == 2 and again.data == first.data
