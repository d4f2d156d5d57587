"""Per-image metadata: what the bytes say (EXIF date, camera, lens, GPS, type, upright size), read at
embed time from the decoded image and, for older catalogs, from the header alone."""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import picture
from imgd.daemon.errors import ImageReadError
from imgd.daemon.ingest import imaging
from imgd.daemon.service.library import open_library
from imgd.daemon.store.catalog import MEDIA_VERSION
from imgd.daemon.store.records import ImageMeta
from PIL import Image, ImageFile

LIMIT = 200_000_000


def exif_bytes(
    taken: str | bytes | None = None,
    offset: str | None = None,
    make: str | bytes | None = None,
    model: str | None = None,
    lens: str | None = None,
    gps: tuple[str, tuple, str, tuple] | None = None,
    orientation: int | None = None,
) -> bytes:
    exif = Image.Exif()
    if make is not None:
        exif[0x010F] = make
    if model is not None:
        exif[0x0110] = model
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if taken is not None:
        sub[0x9003] = taken
    if offset is not None:
        sub[0x9011] = offset
    if lens is not None:
        sub[0xA434] = lens
    if gps is not None:
        lat_ref, lat, lon_ref, lon = gps
        exif.get_ifd(0x8825).update({1: lat_ref, 2: lat, 3: lon_ref, 4: lon})
    return exif.tobytes()


def write(path: Path, fmt: str = "JPEG", size: tuple[int, int] = (96, 64), **save: object) -> Path:
    buffer = io.BytesIO()
    picture(7, size).save(buffer, format=fmt, **save)
    path.write_bytes(buffer.getvalue())
    return path


def both(path: Path) -> ImageMeta:
    """The metadata decode_with_meta reads at embed time, checked equal to what probe reads from the header."""
    _, at_embed = imaging.decode_with_meta(str(path), path.read_bytes(), LIMIT)
    from_header = imaging.probe(str(path))
    assert from_header == at_embed
    return at_embed


def dms(degrees: int, minutes: int, seconds: str) -> tuple[Fraction, Fraction, Fraction]:
    return Fraction(degrees), Fraction(minutes), Fraction(seconds)


def test_exif_date_with_offset_camera_lens_and_gps(tmp_path: Path) -> None:
    exif = exif_bytes(
        taken="2021:06:05 14:03:22",
        offset="+02:00",
        make="Canon",
        model="Canon EOS R5",
        lens="RF24-105mm F4 L IS USM",
        gps=("N", dms(48, 51, "29.6"), "E", dms(2, 17, "40.2")),
    )
    meta = both(write(tmp_path / "a.jpg", exif=exif))
    assert meta == ImageMeta(
        format="jpeg",
        width=96,
        height=64,
        taken="2021-06-05 14:03:22",
        taken_offset="+02:00",
        make="Canon",
        model="Canon EOS R5",
        lens="RF24-105mm F4 L IS USM",
        latitude=pytest.approx(48.858222, abs=1e-6),
        longitude=pytest.approx(2.2945, abs=1e-6),
    )


def test_exif_date_without_offset_is_kept_on_the_cameras_clock(tmp_path: Path) -> None:
    meta = both(write(tmp_path / "a.jpg", exif=exif_bytes(taken="2019:12:31 23:59:59")))
    assert (meta.taken, meta.taken_offset) == ("2019-12-31 23:59:59", None)


def test_no_exif_gives_no_date_and_the_catalog_falls_back_to_the_mtime(tmp_path: Path) -> None:
    meta = both(write(tmp_path / "a.jpg"))
    assert meta == ImageMeta(format="jpeg", width=96, height=64)


@pytest.mark.parametrize("orientation, size", [(1, (96, 64)), (3, (96, 64)), (6, (64, 96)), (8, (64, 96))])
def test_width_and_height_are_upright(tmp_path: Path, orientation: int, size: tuple[int, int]) -> None:
    meta = both(write(tmp_path / "a.jpg", exif=exif_bytes(orientation=orientation)))
    assert (meta.width, meta.height) == size


def test_southern_and_western_coordinates_are_negative(tmp_path: Path) -> None:
    gps = ("S", dms(33, 51, "24"), "W", dms(70, 40, "12"))
    meta = both(write(tmp_path / "a.jpg", exif=exif_bytes(gps=gps)))
    assert meta.latitude == pytest.approx(-(33 + 51 / 60 + 24 / 3600), abs=1e-6)
    assert meta.longitude == pytest.approx(-(70 + 40 / 60 + 12 / 3600), abs=1e-6)


@pytest.mark.parametrize(
    "gps",
    [
        ("N", dms(0, 0, "0"), "E", dms(0, 0, "0")),  # a receiver without a fix
        ("N", dms(95, 0, "0"), "E", dms(2, 0, "0")),  # no such latitude
        ("N", (Fraction(1), Fraction(2)), "E", ()),  # no longitude at all
    ],
    ids=["null-island", "out-of-range", "empty"],
)
def test_impossible_positions_are_left_out(tmp_path: Path, gps: tuple) -> None:
    meta = both(write(tmp_path / "a.jpg", exif=exif_bytes(gps=gps, make="X")))
    assert (meta.latitude, meta.longitude) == (None, None)
    assert meta.make == "X"


@pytest.mark.parametrize(
    "taken, offset, expected",
    [
        ("0000:00:00 00:00:00", "+01:00", (None, None)),
        ("    :  :     :  :  ", None, (None, None)),
        ("2020:02:30 10:00:00", None, (None, None)),  # no 30 February
        ("2020-02-03 10:00:00", "+25:00", ("2020-02-03 10:00:00", None)),
        ("2020:02:03 10:00:00.123", "-03:30", ("2020-02-03 10:00:00", "-03:30")),
    ],
)
def test_dates_as_cameras_really_write_them(tmp_path: Path, taken: str, offset: str | None, expected: tuple) -> None:
    meta = both(write(tmp_path / "a.jpg", exif=exif_bytes(taken=taken, offset=offset)))
    assert (meta.taken, meta.taken_offset) == expected


def test_padded_and_blank_strings_are_cleaned(tmp_path: Path) -> None:
    meta = both(write(tmp_path / "a.jpg", exif=exif_bytes(make="NIKON CORPORATION\x00\x00", model="   ", lens="")))
    assert (meta.make, meta.model, meta.lens) == ("NIKON CORPORATION", None, None)


def test_a_damaged_exif_block_gives_no_facts_but_the_image_still_decodes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + os.urandom(64))
    image, meta = imaging.decode_with_meta(str(path), path.read_bytes(), LIMIT)
    assert image.size == (96, 64)
    assert (meta.format, meta.width, meta.height, meta.taken, meta.make) == ("jpeg", 96, 64, None, None)


@pytest.mark.parametrize(
    "name, fmt, kind",
    [("a.png", "PNG", "png"), ("a.webp", "WEBP", "webp"), ("a.tif", "TIFF", "tiff"), ("a.gif", "GIF", "gif")],
)
def test_other_formats_report_their_type_and_exif(tmp_path: Path, name: str, fmt: str, kind: str) -> None:
    save = {} if fmt == "GIF" else {"exif": exif_bytes(taken="2018:01:02 03:04:05", make="Fujifilm")}
    meta = both(write(tmp_path / name, fmt=fmt, **save))
    assert (meta.format, meta.width, meta.height) == (kind, 96, 64)
    if fmt != "GIF":
        assert (meta.taken, meta.make) == ("2018-01-02 03:04:05", "Fujifilm")


@pytest.mark.skipif(not imaging.HEIF_AVAILABLE, reason="pillow-heif is not installed")
def test_heic_reports_heic_its_exif_and_its_upright_size(tmp_path: Path) -> None:
    exif = exif_bytes(taken="2023:07:08 09:10:11", offset="-07:00", make="Apple", model="iPhone 15", orientation=6)
    meta = both(write(tmp_path / "a.heic", fmt="HEIF", exif=exif))
    assert (meta.format, meta.taken, meta.taken_offset, meta.make, meta.model) == (
        "heic",
        "2023-07-08 09:10:11",
        "-07:00",
        "Apple",
        "iPhone 15",
    )
    assert (meta.width, meta.height) == (64, 96)


# -- reading the header only ---------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt", [("a.jpg", "JPEG"), ("a.png", "PNG"), ("a.webp", "WEBP"), ("a.tif", "TIFF")])
def test_probe_decodes_no_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, fmt: str) -> None:
    path = write(tmp_path / name, fmt=fmt, size=(1200, 900), exif=exif_bytes(taken="2018:01:02 03:04:05"))
    loads = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self):
        loads.append(self.format)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    meta = imaging.probe(str(path))
    assert (meta.width, meta.height, meta.taken) == (1200, 900, "2018-01-02 03:04:05")
    assert loads == []
    imaging.decode_with_meta(str(path), path.read_bytes(), LIMIT)
    assert loads  # the counter works: decoding does load


def test_probe_refuses_a_file_that_changed_since_it_was_indexed(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jpg", exif=exif_bytes(make="Canon"))
    info = path.stat()
    assert imaging.probe(str(path), (info.st_size, info.st_mtime_ns)).make == "Canon"
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    with pytest.raises(ImageReadError, match="changed since it was indexed"):
        imaging.probe(str(path), (info.st_size, info.st_mtime_ns))


def test_probe_fails_cleanly_on_what_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    for name, reason in [
        ("text.jpg", "not a recognised image format"),
        ("folder.jpg", "not a regular file"),
        ("pipe.jpg", "not a regular file"),
        ("gone.jpg", "vanished"),
    ]:
        with pytest.raises(ImageReadError, match=reason):
            imaging.probe(str(tmp_path / name))


# -- at embed time, through the engine ------------------------------------------------------------


def test_indexing_stores_the_metadata_of_each_new_content(make_config, embedder, tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    write(pics / "a.jpg", exif=exif_bytes(taken="2021:06:05 14:03:22", offset="+02:00", make="Canon", orientation=6))
    write(pics / "b.png", fmt="PNG")
    lib = open_library(make_config(), embedder)
    try:
        lib.engine.reconcile([pics])
        assert lib.catalog.media_backlog_count() == 0
        found = lib.catalog.media_for([str(pics / "a.jpg"), str(pics / "b.png")])
        a, b = found[str(pics / "a.jpg")], found[str(pics / "b.png")]
        assert (a.taken, a.taken_source, a.make, a.width, a.height, a.file_type) == (
            "2021-06-05T14:03:22+02:00",
            "exif",
            "Canon",
            64,
            96,
            "jpeg",
        )
        assert (b.taken_source, b.file_type, b.width, b.height) == ("mtime", "png", 96, 64)
        assert lib.catalog.conn.execute("SELECT DISTINCT version FROM media").fetchall() == [(MEDIA_VERSION,)]
        assert lib.engine.backfill_media() == 0  # nothing to read again
    finally:
        lib.close()
