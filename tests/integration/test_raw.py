"""RAW, AVIF and JPEG XL: real files written by pidng and Pillow, decoded by LibRaw, libavif and libjxl.

The DNGs hold a shapes picture behind a Bayer filter; one with an embedded preview shows another
picture there, so which of the two was embedded says which path the decoder took.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from imgd.daemon.embedders import load_embedder
from imgd.daemon.ingest import imaging, raw
from imgd.daemon.protocol import Filters, Options, SearchRequest, Term
from imgd.daemon.service.library import open_library, open_searcher
from rawkit import bomb_bytes, dng_bytes, write_dng
from shapekit import shape_image


def centre(image) -> tuple[int, int, int]:
    return image.getpixel((image.width // 2, image.height // 2))


def reddest(pixel: tuple[int, int, int]) -> bool:
    return pixel[0] > 150 and pixel[0] > 2 * pixel[2]


def bluest(pixel: tuple[int, int, int]) -> bool:
    return pixel[2] > 150 and pixel[2] > 2 * pixel[0]


RED = shape_image("red", "circle", seed=3, size=(640, 480), background="light")
BLUE = shape_image("blue", "square", seed=3, size=(600, 450), background="light")


def test_a_dng_without_a_preview_is_demosaiced_upright_with_its_metadata() -> None:
    data = dng_bytes(RED, make="Testcam", model="RAW-1", taken="2024:05:17 10:30:00", orientation=6)
    image, meta = imaging.decode_with_meta("/p/IMG_1.DNG", data, 200_000_000)
    assert reddest(centre(image))
    assert image.size == (240, 320)  # half size, turned a quarter as the RAW's orientation says
    assert (meta.format, meta.width, meta.height) == ("dng", 480, 640)
    assert (meta.make, meta.model, meta.taken) == ("Testcam", "RAW-1", "2024-05-17 10:30:00")


def test_a_large_enough_embedded_preview_is_used_instead_of_demosaicing() -> None:
    data = dng_bytes(RED, preview=BLUE)
    image, meta = imaging.decode_with_meta("/p/a.dng", data, 200_000_000)
    assert bluest(centre(image)), "the preview (a blue square) is what gets embedded"
    assert (meta.width, meta.height) == (640, 480) and meta.make == "Testcam"


def test_a_preview_too_small_to_embed_well_falls_back_to_the_demosaic() -> None:
    small = BLUE.resize((raw.MIN_PREVIEW_SIDE * 4 // 3 - 40, raw.MIN_PREVIEW_SIDE - 30))
    image, _ = imaging.decode_with_meta("/p/a.dng", dng_bytes(RED, preview=small), 200_000_000)
    assert reddest(centre(image))


def test_the_header_probe_reads_a_raws_metadata_without_decoding(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "a.NEF.dng", RED, make="Nikon", model="Z 6", taken="2023:01:02 03:04:05")
    meta = imaging.probe(str(path))
    assert (meta.format, meta.make, meta.model, meta.taken) == ("dng", "Nikon", "Z 6", "2023-01-02 03:04:05")


@pytest.mark.parametrize(("suffix", "fmt"), [(".avif", "AVIF"), (".jxl", "JXL")])
def test_avif_and_jpeg_xl_decode_through_pillow(tmp_path: Path, suffix: str, fmt: str) -> None:
    path = tmp_path / f"photo{suffix}"
    RED.save(path, fmt, quality=90)
    image, meta = imaging.decode_with_meta(str(path), path.read_bytes(), 200_000_000)
    assert reddest(centre(image)) and image.size == (640, 480)
    assert (meta.format, meta.width, meta.height) == (suffix[1:], 640, 480)


def test_bad_raws_fail_with_one_line_each_and_the_run_goes_on(make_config, embedder, tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    write_dng(pics / "good.dng", RED)
    (pics / "garbage.cr2").write_bytes(b"this is no raw file " * 50)
    (pics / "empty.nef").write_bytes(b"")
    (pics / "bomb.dng").write_bytes(bomb_bytes(60000))
    (pics / "short.dng").write_bytes(bomb_bytes(12000))  # declares 144 Mpx, under the limit, holds 6 KB
    (pics / "cut.arw").write_bytes(dng_bytes(RED)[:3000])
    lib = open_library(make_config(), embedder)
    try:
        started = time.monotonic()
        summary = lib.engine.reconcile([pics])
        assert time.monotonic() - started < 30
        assert summary.added == 1 and summary.failed == 5
        failed = {Path(f.path).name: f.error for f in lib.catalog.failed_files()}
        assert failed["garbage.cr2"] == "not a RAW file LibRaw can read"
        assert failed["empty.nef"] == "empty file"
        assert failed["bomb.dng"].startswith("image too large (60000x60000 pixels")
        assert failed["short.dng"].startswith("cannot decode the RAW file")
        assert failed["cut.arw"]
        assert all("\n" not in reason for reason in failed.values())
    finally:
        lib.close()


@pytest.mark.slow
def test_the_shapes_model_finds_a_red_circle_in_a_dng_and_types_select_raws(
    make_config, shapes_model: Path, tmp_path: Path
) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    write_dng(pics / "circle.dng", shape_image("red", "circle", seed=5, size=(320, 240)))
    shape_image("blue", "square", seed=5, size=(320, 240)).save(pics / "square.avif", "AVIF")
    shape_image("green", "triangle", seed=5, size=(320, 240)).save(pics / "triangle.jxl", "JXL")
    shape_image("yellow", "star", seed=5, size=(320, 240)).save(pics / "star.jpg", "JPEG")
    embedder = load_embedder(str(shapes_model), device="cpu", batch_size=8)
    config = make_config(model=str(shapes_model))
    lib = open_library(config, embedder)
    try:
        assert lib.engine.reconcile([pics]).added == 4
        searcher = open_searcher(config, lambda name: embedder)

        def best(text: str, types: tuple[str, ...] = ()) -> list[str]:
            request = SearchRequest(terms=(Term("text", text),), options=Options(k=4, filters=Filters(types=types)))
            return [Path(row["path"]).name for row in searcher.search(request)]

        assert best("a red circle")[0] == "circle.dng"
        assert best("a blue square")[0] == "square.avif"
        assert best("a green triangle")[0] == "triangle.jxl"
        assert best("a yellow star", types=("raw",)) == ["circle.dng"]
        assert sorted(best("a yellow star", types=("avif", "jxl"))) == ["square.avif", "triangle.jxl"]
        row = searcher.search(SearchRequest(terms=(Term("text", "a red circle"),), options=Options(k=1)))[0]
        assert row["type"] == "dng" and (row["width"], row["height"]) == (320, 240) and row["camera"] == "Testcam RAW-1"
    finally:
        lib.close()


def test_a_raw_is_read_once_into_one_buffer_and_decoded_from_it(tmp_path: Path, monkeypatch) -> None:
    """A RAW is ten times a JPEG: 1 MiB reads joined wrote every byte twice (a third of a 12 Mpx RAW's cost)."""
    path = write_dng(tmp_path / "IMG_0001.DNG", RED.resize((1280, 960)), preview=BLUE)  # 2.5 MB
    reads: list[int] = []
    real_read = imaging.os.read

    def counted(fd: int, size: int) -> bytes:
        chunk = real_read(fd, size)
        reads.append(len(chunk))
        return chunk

    monkeypatch.setattr(imaging.os, "read", counted)
    data, digest = imaging.read_and_hash(str(path))
    monkeypatch.undo()

    assert data == path.read_bytes() and len(data) > 1 << 20
    assert reads == [len(data), 0]  # the whole file, then the end
    image, meta = imaging.decode_with_meta(str(path), data, 200_000_000)
    assert bluest(centre(image)) and (meta.width, meta.height) == (1280, 960)  # from the bytes: the preview
