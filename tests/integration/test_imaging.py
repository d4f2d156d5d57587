"""imaging: every file either decodes to an upright RGB picture of its true size, or fails as ImageReadError."""

from __future__ import annotations

import io
import os
import random
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import picture, write_image
from imgd.daemon.errors import ImageReadError
from imgd.daemon.ingest import imaging
from imgd.daemon.ingest.engine import Engine
from imgd.daemon.ingest.loading import _Loaded
from imgd.daemon.ingest.scanner import PathFilter
from imgd.daemon.service.library import open_library
from imgd.daemon.store.index import VectorIndex
from imgd.daemon.store.records import FileStat
from PIL import Image

LIMIT = 200_000_000  # Config.max_image_pixels' default


def encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def decode(data: bytes, max_pixels: int = LIMIT) -> tuple[Image.Image, tuple[int, int]]:
    return imaging.decode("test-image", data, max_pixels)


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image, dtype=np.int16)


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(pixels(a) - pixels(b)).mean())


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = orientation
    return exif.tobytes()


# How a camera stores an upright scene for each EXIF orientation that swaps the sides.
STORED_AS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    """A 10000x9500 (95 Mpx) JPEG: above Pillow's own bomb limit, below imgd's default limit."""
    return encode(Image.new("L", (10000, 9500), 128), "JPEG", quality=50)


# -- orientation and draft decoding ------------------------------------------------------------


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_gives_the_same_pixels_as_the_upright_twin(orientation: int) -> None:
    upright = picture(3, (96, 64))
    stored = upright.transpose(STORED_AS[orientation])
    assert stored.size == (64, 96)

    twin, twin_size = decode(encode(upright, "JPEG", quality=95))
    rotated, rotated_size = decode(encode(stored, "JPEG", quality=95, exif=exif_with_orientation(orientation)))

    assert rotated_size == twin_size == (96, 64)
    assert rotated.size == (96, 64)
    assert mean_diff(rotated, twin) < 6
    # The wrong rotation (180 degrees off) is far from the twin, so the check above means something.
    assert mean_diff(rotated.transpose(Image.Transpose.ROTATE_180), twin) > 20


def test_rotated_large_jpeg_reports_its_full_upright_size_even_when_drafted() -> None:
    upright = picture(4, (1800, 1000))
    data = encode(upright.transpose(STORED_AS[6]), "JPEG", quality=90, exif=exif_with_orientation(6))

    image, size = decode(data)

    assert size == (1800, 1000)
    assert image.width > image.height  # upright, even though decoded at reduced scale
    assert imaging.DRAFT_MIN_SIDE <= image.height < 1000
    assert mean_diff(image, upright.resize(image.size)) < 8


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_large_jpeg_is_draft_decoded_but_never_below_the_model_minimum(fmt: str) -> None:
    """Phone photos often open as MPO (a JPEG with extra frames); they deserve draft decoding too."""
    original = picture(5, (4000, 3000))
    extra = {"save_all": True, "append_images": [picture(6, (4000, 3000))]} if fmt == "MPO" else {}
    data = encode(original, fmt, quality=85, **extra)
    assert Image.open(io.BytesIO(data)).format == fmt

    image, size = decode(data)

    assert size == (4000, 3000)
    assert imaging.DRAFT_MIN_SIDE <= min(image.size) < 3000
    assert image.width / image.height == pytest.approx(4000 / 3000, rel=0.01)
    assert mean_diff(image, original.resize(image.size)) < 8


def test_jpeg_too_small_to_halve_is_decoded_at_full_size() -> None:
    side = 2 * imaging.DRAFT_MIN_SIDE - 1
    image, size = decode(encode(picture(7, (side + 300, side)), "JPEG"))
    assert image.size == size == (side + 300, side)


def test_image_above_pillows_own_limit_but_within_max_pixels_decodes(huge_jpeg: bytes) -> None:
    """max_image_pixels is the one limit: a 95 Mpx camera photo is not a decompression bomb at 200 Mpx."""
    image, size = decode(huge_jpeg, max_pixels=LIMIT)
    assert size == (10000, 9500)
    assert imaging.DRAFT_MIN_SIDE <= min(image.size) < 9500


def test_image_over_max_pixels_is_refused_before_decoding(huge_jpeg: bytes) -> None:
    with pytest.raises(ImageReadError) as caught:
        decode(huge_jpeg, max_pixels=90_000_000)
    assert "10000x9500" in caught.value.reason
    assert "too large" in caught.value.reason


# -- modes ---------------------------------------------------------------------------------------


def test_palette_with_transparency_turns_transparent_pixels_white() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # 0: black (transparent), 1: red
    image.paste(1, (0, 0, 4, 8))
    for fmt in ("PNG", "GIF"):
        decoded, _ = decode(encode(image, fmt, transparency=0))
        assert decoded.getpixel((1, 1)) == (255, 0, 0), fmt
        assert decoded.getpixel((6, 6)) == (255, 255, 255), fmt


def test_palette_without_transparency_keeps_its_colours() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    decoded, _ = decode(encode(image, "PNG"))
    assert decoded.getpixel((1, 1)) == (0, 0, 255)
    assert decoded.getpixel((6, 6)) == (0, 0, 0)


def test_la_is_composited_over_white() -> None:
    image = Image.new("LA", (3, 1))
    image.putdata([(0, 0), (0, 255), (0, 128)])  # black: transparent, opaque, half
    decoded, _ = decode(encode(image, "PNG"))
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0)) == (0, 0, 0)
    assert all(abs(c - 127) <= 1 for c in decoded.getpixel((2, 0)))


def test_rgba_is_composited_over_white() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 255, 128)])
    decoded, _ = decode(encode(image, "PNG"))
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0)) == (255, 0, 0)
    r, g, b = decoded.getpixel((2, 0))
    assert abs(r - 127) <= 1 and abs(g - 127) <= 1 and b == 255


def test_cmyk_jpeg_decodes_to_the_right_colour() -> None:
    red, cyan = (0, 255, 255, 0), (255, 0, 0, 0)
    image = Image.new("CMYK", (32, 16), red)
    image.paste(cyan, (16, 0, 32, 16))
    data = encode(image, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded, _ = decode(data)
    assert np.abs(np.subtract(decoded.getpixel((4, 8)), (255, 0, 0))).max() <= 8
    assert np.abs(np.subtract(decoded.getpixel((28, 8)), (0, 255, 255))).max() <= 8


def test_sixteen_bit_png_gradient_is_scaled_not_saturated() -> None:
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    data = encode(Image.fromarray(gradient), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded, _ = decode(data)
    row = pixels(decoded)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert 120 <= row[128] <= 135  # the middle of the gradient is mid-grey
    assert np.all(np.diff(row) >= 0)
    assert len(np.unique(row)) > 200


def test_one_bit_image_is_black_and_white() -> None:
    image = Image.new("1", (2, 1))
    image.putdata([0, 1])
    decoded, _ = decode(encode(image, "PNG"))
    assert decoded.getpixel((0, 0)) == (0, 0, 0)
    assert decoded.getpixel((1, 0)) == (255, 255, 255)


def test_float_image_is_stretched_to_the_full_range() -> None:
    ramp = np.linspace(-1.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    data = encode(Image.fromarray(ramp, "F"), "TIFF")
    decoded, _ = decode(data)
    values = pixels(decoded)[:, :, 0].ravel()
    assert values[0] == 0 and values[-1] == 255
    assert np.all(np.diff(values) >= 0)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_decodes_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((220, 20, 20), (20, 220, 20), (20, 20, 220))]
    save: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    if fmt == "WEBP":
        save["lossless"] = True
    data = encode(frames[0], fmt, **save)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    decoded, size = decode(data)
    assert size == (16, 16)
    assert np.abs(np.subtract(decoded.getpixel((8, 8)), (220, 20, 20))).max() <= 4


# -- formats and names ---------------------------------------------------------------------------


def read_and_decode(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """What the engine does with a file: read it once, then decode those bytes."""
    data, _ = imaging.read_and_hash(str(path))
    return imaging.decode(str(path), data, LIMIT)


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.webp", "a.gif", "a.bmp", "a.tif"])
def test_every_supported_format_decodes(tmp_path: Path, name: str) -> None:
    path = write_image(tmp_path / name, seed=11, size=(96, 64))
    image, size = read_and_decode(path)
    assert size == (96, 64)
    assert image.mode == "RGB"
    assert mean_diff(image, picture(11, (96, 64))) < 6


def test_heic_decodes_when_pillow_heif_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif", reason="pillow_heif is not installed (optional extra imgd[heic])")
    assert imaging.HEIF_AVAILABLE
    path = tmp_path / "a.heic"
    path.write_bytes(encode(picture(12, (96, 64)), "HEIF", quality=95))
    image, size = read_and_decode(path)
    assert size == (96, 64)
    assert mean_diff(image, picture(12, (96, 64))) < 10


@pytest.fixture
def engine(make_config, embedder) -> Iterator[Engine]:
    library = open_library(make_config(), embedder)
    yield library.engine
    library.close()


def engine_load(engine: Engine, path: Path) -> _Loaded:
    """The engine's own read of one file, as its decode threads run it."""
    try:
        info = os.stat(path)
        stat = FileStat(str(path), info.st_size, info.st_mtime_ns)
    except OSError:
        stat = FileStat(str(path), 0, 0)
    return engine._load((stat, None))


def test_known_content_is_hashed_but_not_decoded(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    path = write_image(tmp_path / "pics" / "a.png", seed=13)
    engine.reconcile([tmp_path / "pics"])
    copy = tmp_path / "copy.png"
    copy.write_bytes(path.read_bytes())
    decoded: list[str] = []
    real_decode = imaging.decode_with_meta  # what the engine decodes with
    monkeypatch.setattr(imaging, "decode_with_meta", lambda p, *args: decoded.append(p) or real_decode(p, *args))

    known = engine_load(engine, copy)
    fresh = engine_load(engine, write_image(tmp_path / "new.png", seed=14))

    assert known.digest == imaging.digest_bytes(path.read_bytes()) and known.image is None and known.error is None
    assert decoded == [str(tmp_path / "new.png")], "only the unknown content is decoded"
    assert fresh.image is not None and (fresh.width, fresh.height) == (96, 64)


@pytest.mark.parametrize("name", ["X.JPG", "photo.JpEg", "scan.TIFF", "pic.Png", "IMG_1.HEIC"])
def test_image_extensions_match_case_insensitively(name: str) -> None:
    assert PathFilter(excludes=()).is_image_name(name)


@pytest.mark.parametrize("name", ["notes.txt", "jpg", "archive.jpg.zip", "X.JPG.part"])
def test_other_names_are_not_images(name: str) -> None:
    assert not PathFilter(excludes=()).is_image_name(name)


# -- bad inputs ----------------------------------------------------------------------------------


def expect_read_error(engine: Engine, path: Path) -> str:
    """The engine records this file as failed, with a reason, and never hands it to the model."""
    loaded = engine_load(engine, path)
    assert loaded.image is None
    assert loaded.error
    assert not loaded.error.startswith("unexpected error"), loaded.error
    return loaded.error


def test_zero_byte_file_fails(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert expect_read_error(engine, path) == "empty file"


def test_truncated_jpeg_fails_instead_of_decoding_half_grey(engine: Engine, tmp_path: Path) -> None:
    data = encode(picture(14, (200, 200)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    reason = expect_read_error(engine, path)
    assert reason.startswith("cannot decode") and "truncated" in reason


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("noise.jpg", random.Random(0).randbytes(4096)),
        ("page.png", b"<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>"),
    ],
)
def test_non_image_bytes_fail_as_unrecognised(engine: Engine, tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert expect_read_error(engine, path) == "not a recognised image format"


def test_bytes_that_only_look_like_jpeg_xl_fail_in_one_line(engine: Engine, tmp_path: Path) -> None:
    # FF 0A opens a JPEG XL codestream: pillow-jxl claims the file and libjxl raises RuntimeError with a
    # two-line plea to rebuild it from source. That was an "unexpected error" here, and in the words
    # pass an exception that made the daemon rescan the whole library, once per such file.
    path = tmp_path / "odd.jpg"
    path.write_bytes(b"\xff\x0a" + bytes(6))
    reason = expect_read_error(engine, path)
    assert reason.startswith("cannot decode (") and "\n" not in reason, reason
    with pytest.raises(ImageReadError, match="cannot read the header") as caught:
        imaging.probe(str(path))
    assert "\n" not in str(caught.value)


def test_an_error_reading_a_files_words_is_one_line_and_the_pass_goes_on(engine, tmp_path, caplog):
    # Any exception out of the words pass failed the worker's step, and the worker rescans the whole
    # library after a failed step: one such file cost a full reconcile, again at every batch.
    # The words child answers a failure it caught with its reason (WordsFailed); any other error is handled alike.
    path = write_image(tmp_path / "a.png", seed=5)
    info = os.stat(path)

    class GivesUp:
        def read_file(self, *args, **kwargs):
            raise RuntimeError("Generic Error.\nPlease build libjxl from source")

    with caplog.at_level("WARNING"):
        assert engine._read(GivesUp(), (7, [FileStat(str(path), info.st_size, info.st_mtime_ns)])) == (7, [])
    assert [r.getMessage() for r in caplog.records] == [f"cannot read the words of {path}: Generic Error."]


def test_decompression_bomb_fails_without_allocating(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(30000, 30000))
    assert path.stat().st_size < 200
    reason = expect_read_error(engine, path)
    assert "too large" in reason and "30000x30000" in reason


def test_fifo_named_like_an_image_fails_promptly(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    os.mkfifo(path)
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(imaging.read_bytes(str(path)))
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, name="fifo-reader", daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the reader so the thread ends, then fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
        pytest.fail("read_bytes blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ImageReadError)
    assert outcome[0].reason == "not a regular file"


def test_folder_named_like_an_image_fails(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "album.jpg"
    path.mkdir()
    assert expect_read_error(engine, path) == "not a regular file"


def test_unreadable_file_fails_with_permission_denied(engine: Engine, tmp_path: Path) -> None:
    path = write_image(tmp_path / "secret.jpg", seed=15)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: a mode-0 file is still readable")
        assert expect_read_error(engine, path) == "permission denied"
    finally:
        path.chmod(0o644)


def test_missing_file_fails(engine: Engine, tmp_path: Path) -> None:
    assert "vanished" in expect_read_error(engine, tmp_path / "gone.jpg")
    with pytest.raises(ImageReadError) as caught:  # the error names the file, for the log line
        imaging.read_bytes(str(tmp_path / "gone.jpg"))
    assert caught.value.path == str(tmp_path / "gone.jpg")
    assert str(caught.value) == f"{tmp_path / 'gone.jpg'}: file vanished before it could be read"


def test_missing_reference_image_says_so(make_config, embedder, tmp_path: Path) -> None:
    from imgd.daemon.search.query import Searcher

    searcher = Searcher(make_config(), VectorIndex(embedder.dim), lambda: embedder)
    with pytest.raises(ImageReadError, match="no such file"):
        searcher.image_vector(str(tmp_path / "query.jpg"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_damaged_headers_only_ever_raise_image_read_error(fmt: str) -> None:
    """Flip bytes near the start (where the headers live); decoding succeeds or skips, never crashes."""
    save = {"exif": exif_with_orientation(6)} if fmt in ("JPEG", "PNG", "WEBP", "TIFF") else {}
    original = encode(picture(16), fmt, **save)
    rng = random.Random(fmt)
    failures = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd TIFF tags before failing
        for _ in range(60):
            data = bytearray(original)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(min(len(data), 160))] = rng.randrange(256)
            try:
                image, _ = decode(bytes(data), max_pixels=1_000_000)
            except ImageReadError as exc:
                assert exc.reason
                failures += 1
            else:
                assert image.mode == "RGB"
    assert failures > 0  # the damage did reach the decoder
