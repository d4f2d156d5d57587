"""Pairs: a RAW beside its JPEG and a live photo's video beside its still are one photo, listed once.

Real files (DNGs from pidng, JPEGs and HEICs from Pillow), the real engine, catalog and index; the
events the daemon's worker would hand over are the engine calls made here (upsert, forget, move).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import picture, write_image
from imgd.daemon.ingest import companions
from imgd.daemon.protocol import Options, SearchRequest, Term
from imgd.daemon.service.library import Library, open_library, open_searcher
from rawkit import write_dng


@pytest.fixture
def library(make_config, embedder):
    lib = open_library(make_config(), embedder)
    yield lib
    lib.close()


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    path = tmp_path / "pics"
    path.mkdir()
    return path


def listed(lib: Library, embedder, image: Path, k: int = 10) -> list[dict]:
    """What a search by image lists (the direct path's searcher): every row, in order."""
    searcher = open_searcher(lib.config, lambda name: embedder)
    return searcher.search(SearchRequest(terms=(Term("image", str(image)),), options=Options(k=k)))


def indexed(lib: Library) -> set[str]:
    return {Path(r.path).name for r in lib.catalog.all_files() if r.status == "ok"}


def raw_and_jpeg(
    folder: Path, stem: str, seed: int, raw_suffix: str = ".CR2", jpeg_suffix: str = ".JPG"
) -> tuple[Path, Path]:
    """A camera's RAW+JPEG pair of one picture (the RAW a DNG under the camera's extension)."""
    jpeg = write_image(folder / f"{stem}{jpeg_suffix}", seed=seed, fmt="JPEG")
    raw = write_dng(folder / f"{stem}{raw_suffix}", picture(seed))
    return raw, jpeg


def test_the_pairing_rule(tmp_path: Path) -> None:
    folder = str(tmp_path)

    def at(*names: str) -> list[str]:
        return [os.path.join(folder, name) for name in names]

    pairs = companions.pair_up(
        at("IMG_1.CR2", "img_1.jpg", "IMG_2.heic", "IMG_2.MOV", "IMG_3.NEF", "IMG_4.mp4", "x.png")
    )
    assert pairs == {at("IMG_1.CR2")[0]: at("img_1.jpg")[0], at("IMG_2.MOV")[0]: at("IMG_2.heic")[0]}
    # A JPEG is preferred to a HEIC of the same stem; both RAW and video are its companions.
    three = companions.pair_up(at("a.heic", "a.jpg", "a.dng", "a.mov"))
    assert set(three.values()) == {at("a.jpg")[0]} and set(three) == set(at("a.dng", "a.mov"))
    # A still that failed to decode is no primary: another still of the group is, else none.
    assert companions.pair_up(at("a.heic", "a.jpg", "a.dng"), failed=at("a.jpg")) == {at("a.dng")[0]: at("a.heic")[0]}
    assert companions.pair_up(at("a.jpg", "a.dng", "a.mov"), failed=at("a.jpg")) == {}
    # Another folder, another stem, or a PNG: no pair.
    assert companions.pair_up([*at("b.dng"), str(tmp_path / "sub" / "b.jpg"), *at("bb.jpg", "c.png", "c.dng")]) == {}


def test_companion_of_looks_at_the_disk_in_any_case(pics: Path) -> None:
    raw, jpeg = raw_and_jpeg(pics, "IMG_0001", seed=1, raw_suffix=".cr2", jpeg_suffix=".JPG")
    (pics / "IMG_0002.MOV").write_bytes(b"not decoded here")
    write_image(pics / "img_0002.jpg", seed=2, fmt="JPEG")
    assert companions.companion_of(str(raw)) == str(jpeg)
    assert companions.companion_of(str(pics / "IMG_0002.MOV")) == str(pics / "img_0002.jpg")
    assert companions.companion_of(str(jpeg)) is None  # a still is a primary, never a companion
    os.remove(jpeg)
    assert companions.companion_of(str(raw)) is None


def test_a_raw_and_jpeg_pair_is_one_photo_listed_once_through_the_jpeg(library, embedder, pics: Path) -> None:
    raw, jpeg = raw_and_jpeg(pics, "IMG_0001", seed=1)
    write_image(pics / "other.jpg", seed=2)

    summary = library.engine.reconcile([pics])

    assert summary.added == 2 and summary.failed == 0
    assert indexed(library) == {"IMG_0001.JPG", "other.jpg"}  # the RAW is not embedded while paired
    assert library.catalog.counts()["files"] == 2 and library.catalog.count_contents() == 2
    rows = listed(library, embedder, jpeg)
    assert [row["path"] for row in rows] == [str(jpeg), str(pics / "other.jpg")]
    assert rows[0]["sibling"] == str(raw) and "sibling" not in rows[1]
    assert list(rows[0])[:4] == ["rank", "score", "path", "sibling"]
    assert library.catalog.shared_contents() == []  # never duplicates of each other


def test_a_live_photo_is_its_still_with_the_video_as_sibling(library, embedder, pics: Path) -> None:
    still = pics / "IMG_0002.HEIC"
    picture(3).save(still, "HEIF")
    video = pics / "IMG_0002.MOV"
    video.write_bytes(b"\x00\x00\x00\x14ftypqt  a video the video branch decodes")
    lone = pics / "lone.mp4"
    lone.write_bytes(b"a video with no still: a video of its own, tried (and failing) as one")

    summary = library.engine.reconcile([pics])

    assert (summary.added, summary.failed) == (1, 1)
    assert indexed(library) == {"IMG_0002.HEIC"}
    rows = listed(library, embedder, still)
    assert [(row["path"], row.get("sibling")) for row in rows] == [(str(still), str(video))]
    assert [r.path for r in library.catalog.failed_files()] == [str(lone)], "the MOV is a companion, never tried"


def test_a_still_with_both_a_raw_and_a_live_video_lists_every_sibling(library, embedder, pics: Path) -> None:
    still = pics / "IMG_0011.HEIC"
    picture(12).save(still, "HEIF")
    raw = write_dng(pics / "IMG_0011.DNG", picture(13))
    video = pics / "IMG_0011.MOV"
    video.write_bytes(b"\x00\x00\x00\x14ftypqt  the live video half")

    library.engine.reconcile([pics])

    rows = listed(library, embedder, still)
    assert [(row["path"], row["sibling"], row["siblings"]) for row in rows] == [
        (str(still), str(raw), [str(raw), str(video)])  # `sibling` names the first, as it always did
    ]
    assert list(rows[0])[:5] == ["rank", "score", "path", "sibling", "siblings"]


def test_deleting_the_jpeg_makes_the_raw_a_lone_photo_that_is_embedded(library, embedder, pics: Path) -> None:
    raw, jpeg = raw_and_jpeg(pics, "IMG_0003", seed=4)
    library.engine.reconcile([pics])
    embedded = library.catalog.count_vectors()

    os.remove(jpeg)
    library.engine.forget([str(jpeg)])

    assert indexed(library) == {"IMG_0003.CR2"}
    assert library.catalog.count_vectors() == embedded  # the JPEG's vector went, the RAW's came
    rows = listed(library, embedder, raw)
    assert [(row["path"], row.get("sibling"), row["type"]) for row in rows] == [(str(raw), None, "cr2")]


def test_deleting_the_raw_keeps_the_jpeg_and_drops_the_sibling(library, embedder, pics: Path) -> None:
    raw, jpeg = raw_and_jpeg(pics, "IMG_0004", seed=5)
    library.engine.reconcile([pics])

    os.remove(raw)
    library.engine.forget([str(raw)])

    assert indexed(library) == {"IMG_0004.JPG"}
    assert [(row["path"], row.get("sibling")) for row in listed(library, embedder, jpeg)] == [(str(jpeg), None)]
    assert library.catalog.count_siblings() == 0


def test_a_jpeg_arriving_beside_an_indexed_raw_takes_it_over(library, embedder, pics: Path) -> None:
    raw = write_dng(pics / "IMG_0005.NEF", picture(6))
    library.engine.reconcile([pics])
    assert indexed(library) == {"IMG_0005.NEF"}

    jpeg = write_image(pics / "IMG_0005.jpg", seed=6, fmt="JPEG")
    library.engine.upsert([str(jpeg)])

    assert indexed(library) == {"IMG_0005.jpg"}
    assert library.catalog.count_contents() == 1  # the RAW's content went with its row
    assert [row.get("sibling") for row in listed(library, embedder, jpeg)] == [str(raw)]
    # The RAW's own event (it may come after the JPEG's) changes nothing.
    library.engine.upsert([str(raw)])
    assert indexed(library) == {"IMG_0005.jpg"} and library.catalog.count_siblings() == 1


def test_a_pair_made_while_nobody_watched_is_found_by_the_next_reconcile(library, embedder, pics: Path) -> None:
    raw = write_dng(pics / "IMG_0006.ARW", picture(7))
    library.engine.reconcile([pics])
    jpeg = write_image(pics / "IMG_0006.JPG", seed=7, fmt="JPEG")

    library.engine.reconcile([pics])

    assert indexed(library) == {"IMG_0006.JPG"}
    assert [row.get("sibling") for row in listed(library, embedder, jpeg)] == [str(raw)]
    os.remove(jpeg)
    library.engine.reconcile([pics])
    assert indexed(library) == {"IMG_0006.ARW"} and library.catalog.count_siblings() == 0


def test_renames_make_and_break_pairs(library, embedder, pics: Path) -> None:
    raw, jpeg = raw_and_jpeg(pics, "IMG_0007", seed=8)
    library.engine.reconcile([pics])

    renamed = pics / "holiday.jpg"
    os.rename(jpeg, renamed)
    library.engine.move(str(jpeg), str(renamed), is_dir=False)
    assert indexed(library) == {"holiday.jpg", "IMG_0007.CR2"}  # the RAW stands alone: embedded

    os.rename(renamed, jpeg)
    library.engine.move(str(renamed), str(jpeg), is_dir=False)
    assert indexed(library) == {"IMG_0007.JPG"}
    assert [row.get("sibling") for row in listed(library, embedder, jpeg)] == [str(raw)]

    moved = pics.parent / "moved"
    os.rename(pics, moved)
    library.engine.move(str(pics), str(moved), is_dir=True)
    assert library.catalog.siblings_for([str(moved / "IMG_0007.JPG")]) == {
        str(moved / "IMG_0007.JPG"): [str(moved / "IMG_0007.CR2")]
    }
    library.engine.forget([str(moved)], folder=True)
    assert library.catalog.count_siblings() == 0


def corrupt_jpeg(path: Path, seed: int) -> Path:
    """A JPEG cut off halfway: its header reads, its pixels never decode."""
    write_image(path, seed=seed, fmt="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_still_that_fails_to_decode_hides_no_companion(library, embedder, pics: Path) -> None:
    jpeg = corrupt_jpeg(pics / "IMG_0008.JPG", seed=9)
    raw = write_dng(pics / "IMG_0008.DNG", picture(10))

    summary = library.engine.reconcile([pics])

    assert (summary.added, summary.failed) == (1, 1)
    assert indexed(library) == {"IMG_0008.DNG"}  # the RAW is searchable on its own
    assert [r.path for r in library.catalog.failed_files()] == [str(jpeg)]
    assert library.catalog.count_siblings() == 0
    rows = listed(library, embedder, raw)
    assert [(row["path"], row.get("sibling")) for row in rows] == [(str(raw), None)]
    # The next reconcile (a daemon start) keeps it so while the JPEG is as broken as it was.
    again = library.engine.reconcile([pics])
    assert (again.added, again.failed, again.removed) == (0, 0, 0)
    assert indexed(library) == {"IMG_0008.DNG"} and library.catalog.count_siblings() == 0
    # An event on the broken JPEG tries it again, and leaves the RAW standing when it fails again.
    library.engine.upsert([str(jpeg)])
    assert indexed(library) == {"IMG_0008.DNG"} and library.catalog.count_siblings() == 0
    # Repaired, the JPEG takes its RAW over again.
    write_image(jpeg, seed=9, fmt="JPEG")
    library.engine.upsert([str(jpeg)])
    assert indexed(library) == {"IMG_0008.JPG"}
    assert [row.get("sibling") for row in listed(library, embedder, jpeg)] == [str(raw)]


def test_a_broken_still_arriving_beside_an_indexed_raw_leaves_it_searchable(library, embedder, pics: Path) -> None:
    raw = write_dng(pics / "IMG_0009.NEF", picture(11))
    library.engine.reconcile([pics])

    jpeg = corrupt_jpeg(pics / "IMG_0009.jpg", seed=11)
    library.engine.upsert([str(jpeg)])

    assert indexed(library) == {"IMG_0009.NEF"}
    assert [r.path for r in library.catalog.failed_files()] == [str(jpeg)]
    assert [(row["path"], row.get("sibling")) for row in listed(library, embedder, raw)] == [(str(raw), None)]
    library.engine.upsert([str(raw)])  # the RAW's own event changes nothing
    assert indexed(library) == {"IMG_0009.NEF"} and library.catalog.count_siblings() == 0
