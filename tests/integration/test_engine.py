"""Engine: reconcile keeps the catalog equal to the disk; search finds what is on disk, only that."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from conftest import picture, write_image
from imgd.daemon.protocol import Options, SearchRequest, Term
from imgd.daemon.service.library import Library, open_library, open_searcher
from PIL import Image


@pytest.fixture
def library(make_config, embedder):
    lib = open_library(make_config(), embedder)
    yield lib
    lib.close()


class searcher_for:  # noqa: N801 - reads as a function in the tests
    """The direct path's searcher over a library, asked one text or image at a time."""

    def __init__(self, lib: Library, embedder) -> None:
        self.searcher = open_searcher(lib.config, lambda name: embedder)

    def query(self, k: int, text: str | None = None, image: str | None = None) -> list[dict]:
        term = Term("image", image) if image else Term("text", text or "")
        return self.searcher.search(SearchRequest(terms=(term,), options=Options(k=k)))


def jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    picture(seed).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def catalog_paths(lib: Library) -> set[str]:
    return {r.path for r in lib.catalog.all_files() if r.status == "ok"}


def test_first_index_adds_every_image_and_records_failures(library, tmp_path):
    pics = tmp_path / "pics"
    for i in range(6):
        write_image(pics / f"img{i}.jpg", seed=i)
    write_image(pics / "nested" / "deep" / "x.PNG", seed=99)
    (pics / "broken.jpg").write_bytes(b"not an image at all")
    (pics / "notes.txt").write_text("ignored: not an image name")

    summary = library.engine.reconcile([pics])

    assert (summary.added, summary.failed, summary.removed) == (7, 1, 0)
    assert catalog_paths(library) == {str(p) for p in pics.rglob("*") if p.suffix.lower() in (".jpg", ".png")} - {
        str(pics / "broken.jpg")
    }
    failed = library.catalog.failed_files()
    assert [f.path for f in failed] == [str(pics / "broken.jpg")]
    assert "not a recognised image format" in (failed[0].error or "")
    assert len(library.index) == library.catalog.count_contents() == 7


def test_second_run_changes_nothing_and_does_not_retry_failures(library, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    (pics / "bad.jpg").write_bytes(b"garbage")
    library.engine.reconcile([pics])
    generation = library.catalog.generation

    again = library.engine.reconcile([pics])

    assert (again.added, again.updated, again.failed, again.unchanged) == (0, 0, 0, 2)
    assert library.catalog.generation == generation

    write_image(pics / "bad.jpg", seed=5)  # fixed by the user: retried because it changed
    fixed = library.engine.reconcile([pics])
    assert fixed.failed == 0 and fixed.added == 1
    assert library.catalog.failed_files() == []


def test_move_reuses_the_vector_and_duplicates_share_one_content(library, tmp_path, monkeypatch):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    write_image(pics / "b.jpg", seed=2)
    library.engine.reconcile([pics])
    content_of_a = library.catalog.get_file(str(pics / "a.jpg")).content_id

    (pics / "album").mkdir()
    os.rename(pics / "a.jpg", pics / "album" / "renamed.jpg")
    shutil.copy(pics / "b.jpg", pics / "copy-of-b.jpg")
    encoded = []
    original = library.engine.embedder.encode_images
    monkeypatch.setattr(
        library.engine.embedder, "encode_images", lambda imgs: encoded.append(len(imgs)) or original(imgs)
    )

    summary = library.engine.reconcile([pics])

    assert summary.moved == 1 and summary.added == 1 and summary.removed == 0
    assert encoded == [], "a move or a copy must never re-embed"
    assert library.catalog.get_file(str(pics / "album" / "renamed.jpg")).content_id == content_of_a
    assert library.catalog.get_file(str(pics / "a.jpg")) is None
    copies = library.catalog.paths_for([library.catalog.get_file(str(pics / "b.jpg")).content_id])
    assert sorted(next(iter(copies.values()))) == [str(pics / "b.jpg"), str(pics / "copy-of-b.jpg")]
    assert library.catalog.count_contents() == len(library.index) == 2


def test_changed_file_is_re_embedded_and_deleted_file_dropped(library, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    write_image(pics / "b.jpg", seed=2)
    library.engine.reconcile([pics])
    old_content = library.catalog.get_file(str(pics / "a.jpg")).content_id

    write_image(pics / "a.jpg", seed=3)
    os.utime(pics / "a.jpg", ns=(1, 10**18))  # a different mtime, whatever the clock granularity
    (pics / "b.jpg").unlink()
    summary = library.engine.reconcile([pics])

    assert (summary.updated, summary.removed) == (1, 1)
    assert library.catalog.get_file(str(pics / "a.jpg")).content_id != old_content
    assert catalog_paths(library) == {str(pics / "a.jpg")}
    assert sorted(library.index.ids().tolist()) == sorted(library.catalog.vector_ids().tolist())
    assert library.catalog.count_contents() == 1


def test_touched_file_with_same_bytes_is_not_re_embedded(library, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    library.engine.reconcile([pics])
    os.utime(pics / "a.jpg", ns=(1, 10**18))

    summary = library.engine.reconcile([pics])

    assert (summary.updated, summary.added, summary.unchanged) == (0, 0, 1)


def test_image_searched_by_itself_comes_first_with_score_one(library, tmp_path, embedder):
    pics = tmp_path / "pics"
    for i in range(12):
        write_image(pics / f"img{i}.png", seed=i)
    library.engine.reconcile([pics])
    library.engine.save_index()
    searcher = searcher_for(library, embedder)

    for i in (0, 5, 11):
        hits = searcher.query(3, image=str(pics / f"img{i}.png"))
        assert hits[0]["path"] == str(pics / f"img{i}.png")
        assert hits[0]["score"] == pytest.approx(1.0, abs=2e-3)
        assert [h["rank"] for h in hits] == [1, 2, 3]


def test_reencoded_copy_ranks_its_original_first(library, tmp_path, embedder):
    pics = tmp_path / "pics"
    for i in range(12):
        write_image(pics / f"img{i}.png", seed=i)
    library.engine.reconcile([pics])
    reference = tmp_path / "outside" / "copy.jpg"
    reference.parent.mkdir()
    Image.open(pics / "img7.png").convert("RGB").save(reference, quality=70)

    hits = searcher_for(library, embedder).query(1, image=str(reference))

    assert hits[0]["path"] == str(pics / "img7.png")


def test_exif_rotated_file_embeds_like_its_upright_twin(library, tmp_path, embedder):
    pics = tmp_path / "pics"
    for i in range(10):
        write_image(pics / f"img{i}.png", seed=i, size=(120, 60))
    upright = picture(4, (120, 60))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif.tobytes())
    rotated = tmp_path / "rotated.png"
    rotated.write_bytes(buffer.getvalue())
    library.engine.reconcile([pics])

    hits = searcher_for(library, embedder).query(1, image=str(rotated))
    twin = library.catalog.get_file(str(pics / "img4.png")).content_id
    sideways = embedder.encode_images([embedder.prepare(stored)])[0]
    sideways_score = float(np.dot(sideways, library.catalog.vector(twin)))

    assert hits[0]["path"] == str(pics / "img4.png")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    # The random tiny model is nearly blind to layout, so the margin is small but real: the
    # sideways pixels (EXIF ignored) match the twin measurably worse than the upright ones.
    assert hits[0]["score"] > sideways_score + 5e-4


def test_deleted_files_never_come_back_even_before_reconcile(library, tmp_path, embedder):
    pics = tmp_path / "pics"
    for i in range(5):
        write_image(pics / f"img{i}.png", seed=i)
    library.engine.reconcile([pics])
    library.engine.save_index()
    (pics / "img2.png").unlink()

    hits = searcher_for(library, embedder).query(10, text="anything")

    assert str(pics / "img2.png") not in {h["path"] for h in hits}
    assert len(hits) == 4


def test_unmounted_folder_is_kept_as_missing_until_the_grace_period(make_config, embedder, tmp_path):
    clock = [1_000_000.0]
    config = make_config(missing_grace=3600.0)
    lib = open_library(config, embedder, clock=lambda: clock[0])
    try:
        drive = tmp_path / "drive"
        for i in range(3):
            write_image(drive / f"img{i}.png", seed=i)
        lib.engine.reconcile([drive])
        shutil.move(drive, tmp_path / "elsewhere")  # the drive is unplugged

        unplugged = lib.engine.reconcile([drive])
        assert unplugged.missing == 3 and unplugged.removed == 0
        assert lib.catalog.counts()["missing"] == 3
        assert lib.catalog.count_contents() == 3, "vectors are kept while the drive is away"

        shutil.move(tmp_path / "elsewhere", drive)  # plugged back in
        back = lib.engine.reconcile([drive])
        assert back.added == 0 and back.unchanged == 3
        assert lib.catalog.counts()["missing"] == 0

        shutil.move(drive, tmp_path / "elsewhere")
        lib.engine.reconcile([drive])
        clock[0] += 7200.0  # past the grace period
        expired = lib.engine.reconcile([drive])
        assert expired.removed == 3
        assert lib.catalog.counts() == {"files": 0, "failed": 0, "missing": 0, "contents": 0}
        assert len(lib.index) == 0
    finally:
        lib.close()


def test_empty_mountpoint_is_treated_as_missing_not_as_mass_deletion(library, tmp_path):
    mount = tmp_path / "mnt"
    for i in range(2):
        write_image(mount / f"img{i}.png", seed=i)
    library.engine.reconcile([mount])
    for p in mount.iterdir():
        p.unlink()

    summary = library.engine.reconcile([mount])

    assert summary.removed == 0 and summary.missing == 2


def test_excluded_and_temporary_names_are_ignored(library, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "keep.jpg", seed=1)
    write_image(pics / "x.jpg.crdownload", seed=2, fmt="JPEG")
    write_image(pics / "y.jpg.part", seed=3, fmt="JPEG")
    write_image(pics / ".hidden.jpg", seed=4)
    write_image(pics / ".thumbnails" / "t.jpg", seed=5)
    write_image(pics / "@eaDir" / "t.jpg", seed=6)
    write_image(pics / ".keep.jpg.Ab12Cd", seed=7, fmt="JPEG")  # rsync temp name
    # Exclude globs match names case-insensitively (README): as a Windows or macOS share spells them.
    write_image(pics / "SHOUT.JPG.PART", seed=8, fmt="JPEG")
    write_image(pics / "Photo.jpg.CrDownload", seed=9, fmt="JPEG")
    write_image(pics / "@EADIR" / "t.jpg", seed=10)
    write_image(pics / "$Recycle.Bin" / "r.jpg", seed=11)

    library.engine.reconcile([pics])

    assert catalog_paths(library) == {str(pics / "keep.jpg")}


def test_symlinks_are_not_followed_by_default(library, tmp_path):
    pics = tmp_path / "pics"
    outside = tmp_path / "outside"
    write_image(outside / "secret.jpg", seed=1)
    write_image(pics / "own.jpg", seed=2)
    pics.joinpath("link.jpg").symlink_to(outside / "secret.jpg")
    pics.joinpath("linkdir").symlink_to(outside, target_is_directory=True)
    pics.joinpath("loop").symlink_to(pics, target_is_directory=True)

    library.engine.reconcile([pics])

    assert catalog_paths(library) == {str(pics / "own.jpg")}


def test_follow_symlinks_indexes_linked_files_and_folders_once_despite_loops(make_config, embedder, tmp_path):
    pics = tmp_path / "pics"
    outside = tmp_path / "outside"
    write_image(outside / "linked.jpg", seed=1)
    write_image(pics / "own.jpg", seed=2)
    pics.joinpath("link.jpg").symlink_to(outside / "linked.jpg")
    pics.joinpath("linkdir").symlink_to(outside, target_is_directory=True)
    pics.joinpath("loop").symlink_to(pics, target_is_directory=True)  # would recurse for ever
    lib = open_library(make_config(follow_symlinks=True), embedder)
    try:
        summary = lib.engine.reconcile([pics])
        linked = {str(pics / "link.jpg"), str(pics / "linkdir" / "linked.jpg")}
        assert catalog_paths(lib) == {str(pics / "own.jpg"), *linked}
        assert summary.added == 3 and lib.catalog.count_contents() == 2  # the two links share one content
    finally:
        lib.close()


def test_catalog_of_another_model_is_refused_with_the_way_out(library, tmp_path, make_config):
    from imgd.daemon.errors import ModelMismatch

    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    library.engine.reconcile([pics])
    with pytest.raises(ModelMismatch, match="imgd index --reembed"):
        library.catalog.ensure_model("some-other-model", 512)


def test_embedder_shrinks_large_images_in_the_decode_thread_to_the_processor_side(embedder):
    # The tiny model's processor resizes to a shortest edge of 32, like ViT-B/32's 224: doing it
    # early keeps the main thread free for inference (a transformers upgrade once broke this).
    assert embedder.prepare(picture(1, (400, 200))).size == (64, 32)
    assert embedder.prepare(picture(1, (30, 20))).size == (30, 20)
    large = picture(2, (400, 200))
    direct, early = embedder.encode_images([large, embedder.prepare(large)])
    assert float(np.dot(direct, early)) == pytest.approx(1.0, abs=1e-3)


def test_a_forgotten_content_is_held_for_the_grace_so_a_move_seen_as_delete_and_create_reuses_it(
    library, tmp_path, monkeypatch
):
    pics, other = tmp_path / "pics", tmp_path / "other"
    write_image(pics / "a.jpg", seed=1)
    library.engine.reconcile([pics])
    content = library.catalog.get_file(str(pics / "a.jpg")).content_id
    encoded = []
    original = library.engine.embedder.encode_images
    monkeypatch.setattr(
        library.engine.embedder, "encode_images", lambda imgs: encoded.append(len(imgs)) or original(imgs)
    )
    now = [100.0]
    library.engine.monotonic = lambda: now[0]
    library.engine.orphan_grace = 5.0

    # A move between two watched folders arrives as a delete here, then a create there.
    other.mkdir()
    os.rename(pics / "a.jpg", other / "a.jpg")
    library.engine.forget([str(pics / "a.jpg")])
    held_vectors = library.catalog.vector_ids_of([content]).tolist()
    assert library.engine.held_contents == 1 and set(held_vectors) <= set(library.index.ids().tolist())
    now[0] += 4.0
    assert library.engine.release_orphans() == 1, "held until the grace runs out"
    summary = library.engine.upsert([str(other / "a.jpg")])

    assert (summary.moved, summary.added) == (1, 0) and encoded == []
    assert library.catalog.get_file(str(other / "a.jpg")).content_id == content
    assert library.engine.release_orphans() == 0, "referenced again: nothing is held"

    # Deleted for good: dropped from catalog and index once the grace has passed, not before.
    (other / "a.jpg").unlink()
    library.engine.forget([str(other / "a.jpg")])
    assert library.catalog.count_contents() == 1
    now[0] += 5.0
    assert library.engine.release_orphans() == 0
    assert library.catalog.count_contents() == len(library.index) == 0


def test_a_recheck_hashes_a_file_whose_size_and_mtime_match_its_row(library, tmp_path):
    pics = tmp_path / "pics"
    first, second = jpeg_bytes(1), jpeg_bytes(2)
    size = max(len(first), len(second))  # bytes after the JPEG's end marker are ignored by decoders
    (pics).mkdir()
    (pics / "a.jpg").write_bytes(first.ljust(size, b"\0"))
    os.utime(pics / "a.jpg", ns=(1, 10**18))
    library.engine.reconcile([pics])
    old = library.catalog.get_file(str(pics / "a.jpg")).content_id

    # Renamed over it from a hidden temp name: same size, same mtime (cp -p), other bytes.
    (pics / ".a.jpg").write_bytes(second.ljust(size, b"\0"))
    os.utime(pics / ".a.jpg", ns=(1, 10**18))
    os.rename(pics / ".a.jpg", pics / "a.jpg")

    assert library.engine.upsert([str(pics / "a.jpg")]).updated == 0, "size and mtime alone cannot tell"
    assert library.engine.upsert([str(pics / "a.jpg")], recheck={str(pics / "a.jpg")}).updated == 1
    assert library.catalog.get_file(str(pics / "a.jpg")).content_id != old
    assert library.catalog.count_contents() == len(library.index) == 1


def test_a_failed_file_waits_for_a_change_or_an_event_then_is_tried_again(library, tmp_path):
    """A broken file is not read by every reconcile; an event on it (chmod, chown: size and mtime stay) is
    reason enough to try again."""
    pics = tmp_path / "pics"
    pics.mkdir()
    good = jpeg_bytes(1)
    path = pics / "a.jpg"
    path.write_bytes(b"x" * len(good))
    os.utime(path, ns=(1, 10**18))
    assert library.engine.reconcile([pics]).failed == 1

    path.write_bytes(good)  # readable now, and no different by size or mtime
    os.utime(path, ns=(1, 10**18))
    again = library.engine.reconcile([pics])
    assert (again.unchanged, again.added, again.failed) == (1, 0, 0), "a reconcile keeps the row's verdict"

    assert library.engine.upsert([str(path)]).added == 1, "an event on a failed file tries it again"
    assert catalog_paths(library) == {str(path)}
    assert library.engine.upsert([str(path)]).added == 0, "an indexed file that is unchanged is left alone"


def test_changed_names_the_new_and_changed_wanted_files_below_a_folder(make_config, embedder, tmp_path):
    """What the worker asks when a folder appears or moves in, and after a rename about its source."""
    pics = tmp_path / "pics"
    write_image(pics / "album" / "known.jpg", seed=1)
    write_image(pics / "album" / "edited.jpg", seed=2)
    (pics / "album" / "broken.jpg").write_bytes(b"garbage")
    lib = open_library(make_config(extra_exclude=("album/private/*",)), embedder)
    try:
        lib.engine.reconcile([pics])
        album = pics / "album"
        write_image(album / "edited.jpg", seed=3)
        os.utime(album / "edited.jpg", ns=(1, 10**18))
        write_image(album / "new.jpg", seed=4)
        write_image(album / "new.jpg.part", seed=5, fmt="JPEG")  # an excluded name
        write_image(album / "private" / "p.jpg", seed=6)  # excluded by a pattern relative to the root, not album
        (album / "notes.txt").write_text("not an image")
        album.joinpath("elsewhere").symlink_to(tmp_path / "outside", target_is_directory=True)
        write_image(tmp_path / "outside" / "o.jpg", seed=7)
        roots = [str(pics)]

        found = {stat.path for stat in lib.engine.changed([str(album)], roots)}

        assert found == {str(album / "edited.jpg"), str(album / "new.jpg")}, "a failed row stands while unchanged"
        assert [s.path for s in lib.engine.changed([str(album / "new.jpg")], roots)] == [str(album / "new.jpg")]
        assert lib.engine.changed([str(album / "known.jpg")], roots) == []
        assert lib.engine.changed([str(album / "new.jpg.part"), str(album / "private")], roots) == []
        assert lib.engine.changed([str(album / "elsewhere"), str(album / "gone.jpg")], roots) == []
        assert lib.engine.changed([str(tmp_path / "outside")], roots) == [], "outside the roots"
    finally:
        lib.close()


def test_a_missing_root_is_named_for_paths_in_it_until_it_is_back(library, tmp_path):
    pics, other = tmp_path / "pics", tmp_path / "other"
    write_image(pics / "a.jpg", seed=1)
    other.mkdir()
    roots = [str(pics), str(other)]
    library.engine.reconcile(roots)
    shutil.rmtree(pics)
    pics.mkdir()  # an empty mountpoint: its entries are kept as missing
    library.engine.reconcile(roots)

    assert library.engine.missing_root(str(pics / "b.jpg"), roots) == str(pics)
    assert library.engine.missing_root(str(other / "b.jpg"), roots) is None
    write_image(pics / "a.jpg", seed=1)
    library.engine.reconcile(roots)
    assert library.engine.missing_root(str(pics / "b.jpg"), roots) is None


def test_single_changes_look_only_at_the_contents_they_release_never_the_whole_library(library, tmp_path, monkeypatch):
    """Issue 21: a removal, a move over a file, an edit and the grace's end each cost what they released.

    The whole-library orphan scan (0.7-1.0 s at 1M contents) ran once per event, so deleting a 10k-file
    folder took over an hour there; only reconcile, which walks the library anyway, may run it now.
    """
    pics = tmp_path / "pics"
    for seed in range(6):
        write_image(pics / f"{seed}.jpg", seed=seed)
    library.engine.reconcile([pics])
    catalog = library.catalog
    kinds = {
        "a": catalog.get_file(str(pics / "0.jpg")).content_id,
        "b": catalog.get_file(str(pics / "1.jpg")).content_id,
    }
    edited_before = catalog.get_file(str(pics / "2.jpg")).content_id

    def no_scan() -> list[int]:
        raise AssertionError("a single change scanned every content for orphans")

    monkeypatch.setattr(catalog, "orphan_ids", no_scan)
    (pics / "0.jpg").unlink()
    library.engine.forget([str(pics / "0.jpg")])  # a removal
    os.replace(pics / "3.jpg", pics / "1.jpg")  # a rename over another file
    library.engine.move(str(pics / "3.jpg"), str(pics / "1.jpg"), is_dir=False)
    write_image(pics / "2.jpg", seed=99)  # an edit: new bytes, new content
    library.engine.upsert([str(pics / "2.jpg")])
    assert library.engine.release_orphans() == 0  # no grace in this fixture: gone at once

    left = set(catalog.content_ids().tolist())
    assert not {kinds["a"], kinds["b"], edited_before} & left, "a released content was kept"
    assert len(left) == 4 and len(library.index) == catalog.count_vectors() == 4


def test_removals_in_a_row_look_only_at_what_each_released_and_drop_their_contents_together(
    library, tmp_path, monkeypatch
):
    """Issue 21: `rm -rf` of a 10k-file folder is 10k events. Each re-checked every content still held from
    the ones before (quadratic in the folder), and each content dropped cost one index removal, which scans
    every stored id (the library's size, per event)."""
    pics = tmp_path / "pics"
    for seed in range(9):
        write_image(pics / f"{seed}.jpg", seed=seed)
    catalog, engine = library.catalog, library.engine
    now = [100.0]
    engine.monotonic = lambda: now[0]
    engine.reconcile([pics])
    contents = [catalog.get_file(str(pics / f"{seed}.jpg")).content_id for seed in range(9)]
    engine.orphan_grace = 2.0
    looked: list[list[int]] = []
    real_among = catalog.orphans_among
    monkeypatch.setattr(catalog, "orphans_among", lambda ids: looked.append(sorted(set(ids))) or real_among(ids))
    removals: list[list[int]] = []
    real_remove = library.index.remove
    monkeypatch.setattr(
        library.index, "remove", lambda ids, generation=None: removals.append(list(ids)) or real_remove(ids, generation)
    )

    for seed in range(9):  # one removal every half second, over twice the grace
        (pics / f"{seed}.jpg").unlink()
        first = len(looked)
        engine.forget([str(pics / f"{seed}.jpg")])
        assert looked[first] == [contents[seed]], "a removal looked at the contents held before it"
        now[0] += 0.5

    assert 1 <= len(removals) <= 2, f"dropped in {len(removals)} index removals, not together"
    dropped = sum(len(ids) for ids in removals)
    assert engine.held_contents == 9 - dropped and catalog.count_contents() == 9 - dropped
    now[0] += 2.0
    assert engine.release_orphans() == 0
    assert catalog.count_contents() == len(library.index) == 0


def test_a_held_content_found_again_beside_a_removal_is_kept(library, tmp_path):
    """A batch that finds a held content's bytes at a new path and removes another file: the removal may
    expire the held ones without looking at them all, so it checks those it drops are still unreferenced."""
    pics, other = tmp_path / "pics", tmp_path / "other"
    write_image(pics / "a.jpg", seed=1)
    write_image(pics / "b.jpg", seed=2)
    engine, catalog = library.engine, library.catalog
    now = [100.0]
    engine.monotonic = lambda: now[0]
    engine.reconcile([pics])
    moved = catalog.get_file(str(pics / "a.jpg")).content_id
    engine.orphan_grace = 2.0
    other.mkdir()
    os.rename(pics / "a.jpg", other / "a.jpg")
    engine.forget([str(pics / "a.jpg")])  # held from 100
    now[0] += 3.0
    (pics / "b.jpg").unlink()

    summary = engine.upsert([str(other / "a.jpg"), str(pics / "b.jpg")])

    assert (summary.moved, summary.removed) == (1, 1)
    assert catalog.get_file(str(other / "a.jpg")).content_id == moved
    assert moved in catalog.content_ids().tolist(), "the moved file's content was dropped"
    assert set(catalog.vector_ids_of([moved]).tolist()) <= set(library.index.ids().tolist())
