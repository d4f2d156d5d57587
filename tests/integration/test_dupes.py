"""Duplicates: the pair finder, exact scores, keeper-centred groups, the daemon's tracker, real images."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import picture
from daemonkit import IMGD, DaemonProcess
from imgd.daemon.config import Config
from imgd.daemon.search import pairs as pairs_module
from imgd.daemon.search.dupes import build_bursts, build_groups, catalog_vectors, find_groups, under
from imgd.daemon.search.pairs import exact_scores, library_pairs, similar_pairs
from imgd.daemon.service.dupetracker import DupeTracker
from imgd.daemon.service.library import open_library
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.index import VectorIndex
from imgd.daemon.store.records import FileDetail
from PIL import Image, ImageEnhance


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def brute_pairs(vectors: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    v = vectors.astype(np.float64)
    sims = v @ v.T
    return {(i, j) for i in range(len(v)) for j in range(i + 1, len(v)) if sims[i, j] >= threshold}


def planted(count: int, copies: int, seed: int = 0, dim: int = 32) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Clustered unit vectors, the last `copies` of them near-copies (cosine ~0.99) of earlier ones."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    base = centres[rng.integers(0, 20, count)] + 0.6 * rng.standard_normal((count, dim))
    sources = rng.choice(count - copies, copies, replace=False)
    base[count - copies :] = base[sources] + 0.08 * np.linalg.norm(base[sources], axis=1, keepdims=True) * (
        rng.standard_normal((copies, dim)) / math.sqrt(dim)
    )
    planted_pairs = {(int(s), count - copies + i) for i, s in enumerate(sources)}
    return unit(base), planted_pairs


# -- pairs and scores -----------------------------------------------------------------------


def test_exact_pairs_match_brute_force() -> None:
    vectors, _ = planted(300, 30)
    first, second = similar_pairs(vectors, 0.9)
    assert set(zip(first.tolist(), second.tolist(), strict=True)) == brute_pairs(vectors, 0.9)


@pytest.mark.parametrize("limit", [100, 100_000], ids=["blocked", "exact"])
def test_a_stopped_pair_join_skips_the_blocks_not_yet_begun(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Issue 21: the daemon's first pass queues every block on a thread pool, and Python joins those threads
    at exit: a SIGTERM waited for the whole pass (over 15 s at 1M). Asked between blocks, it ends at once."""
    monkeypatch.setattr(pairs_module, "PAIRS_EXACT_LIMIT", limit)
    monkeypatch.setattr(pairs_module, "_PAIRS_ROWS", 64)
    vectors, planted_pairs = planted(3000, 150)
    asked: list[int] = []
    first, _ = similar_pairs(vectors, 0.97, stopped=lambda: asked.append(1) is None)
    assert len(first) == 0 and asked, "a stopped join compared nothing more"
    first, second = similar_pairs(vectors, 0.97)
    assert planted_pairs & set(zip(first.tolist(), second.tolist(), strict=True))

    tracker = DupeTracker(VectorIndex(32), lambda: (np.arange(3000), vectors), 0.97)
    tracker.stop()
    tracker.start()
    tracker.join(30)
    assert tracker.ready and tracker.pair_count() == 0 and not tracker.serves(0.97), "a stopped pass serves nothing"


def test_blocked_pairs_find_planted_near_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the exact limit the lists block the search; near-copies (0.99) sit well inside a list's reach."""
    monkeypatch.setattr(pairs_module, "PAIRS_EXACT_LIMIT", 100)
    vectors, planted_pairs = planted(3000, 150)
    first, second = similar_pairs(vectors, 0.97)
    found = set(zip(first.tolist(), second.tolist(), strict=True))
    truth = brute_pairs(vectors, 0.97)
    assert planted_pairs <= truth
    assert found <= truth  # never a false pair
    assert len(found & planted_pairs) >= 0.97 * len(planted_pairs)


def test_exact_scores_do_not_depend_on_summation_order() -> None:
    vectors, _ = planted(50, 5, dim=512)
    a, b = vectors[:25], vectors[25:]
    reference = [math.fsum(float(x) * float(y) for x, y in zip(p, q, strict=True)) for p, q in zip(a, b, strict=True)]
    assert exact_scores(a, b).tolist() == reference
    assert exact_scores(a[:, ::-1], b[:, ::-1]).tolist() == reference


def test_threshold_is_inclusive_to_the_last_bit() -> None:
    """0.9375 is exact in float16: a pair scoring exactly the threshold is in, a hair above excludes it."""
    vectors = np.array([[1.0, 0.0], [0.9375, math.sqrt(1 - 0.9375**2)]], dtype=np.float16)
    ids = np.array([7, 9])
    assert exact_scores(vectors[:1], vectors[1:])[0] == 0.9375
    assert library_pairs(ids, vectors, 0.9375) == [(7, 9, 0.9375)]
    assert library_pairs(ids, vectors, np.nextafter(0.9375, 1.0)) == []


# -- groups ---------------------------------------------------------------------------------


def detail(path: str, cid: int, pixels: tuple[int, int] = (100, 100), taken: float | None = None) -> FileDetail:
    return FileDetail(path, cid, 1000 + len(path), pixels[0], pixels[1], taken)


def test_exact_copies_form_one_group_keeper_first() -> None:
    files = {1: [detail("/p/deep/folder/a.jpg", 1), detail("/p/a.jpg", 1)], 2: [detail("/p/b.jpg", 2)]}
    (group,) = build_groups([], files, 0.95)
    assert group.kind == "exact"
    assert [m.path for m in group.members] == ["/p/a.jpg", "/p/deep/folder/a.jpg"]
    assert all(m.same_content and m.score == 1.0 for m in group.members)
    assert group.reclaimable == group.members[1].size


def test_keeper_order_pixels_then_taken_then_path_length() -> None:
    files = {
        1: [detail("/x/short.jpg", 1, (100, 100), taken=10.0)],
        2: [detail("/x/a-much-longer-name.jpg", 2, (200, 200), taken=30.0)],  # most pixels: keeper
        3: [detail("/x/c.jpg", 3, (100, 100), taken=5.0)],  # older than 1 and 4
        4: [detail("/x/no-date.jpg", 4, (100, 100))],  # no date: after the dated ones
        5: [detail("/x/e.jpg", 5, (100, 100), taken=10.0)],  # same date as 1, shorter path
    }
    pairs = [(2, other, 0.97) for other in (1, 3, 4, 5)]
    (group,) = build_groups(pairs, files, 0.95)
    assert group.kind == "near"
    assert [m.path for m in group.members] == [
        "/x/a-much-longer-name.jpg",
        "/x/c.jpg",
        "/x/e.jpg",
        "/x/short.jpg",
        "/x/no-date.jpg",
    ]
    assert [m.score for m in group.members] == [1.0, 0.97, 0.97, 0.97, 0.97]


def test_groups_do_not_chain_through_an_intermediate_image() -> None:
    """a~b and b~c but not a~c: the keeper a takes b; c, close only to b, is no copy of a."""
    files = {1: [detail("/a.jpg", 1, (300, 300))], 2: [detail("/b.jpg", 2, (200, 200))], 3: [detail("/c.jpg", 3)]}
    groups = build_groups([(1, 2, 0.96), (2, 3, 0.96), (1, 3, 0.90)], files, 0.95)
    assert [[m.path for m in g.members] for g in groups] == [["/a.jpg", "/b.jpg"]]


def test_leftovers_of_a_component_group_around_their_own_keeper() -> None:
    files = {cid: [detail(f"/{cid}.jpg", cid, (400 - cid, 100))] for cid in (1, 2, 3, 4)}
    groups = build_groups([(1, 2, 0.96), (2, 3, 0.96), (3, 4, 0.97)], files, 0.95)
    assert [[m.path for m in g.members] for g in groups] == [["/1.jpg", "/2.jpg"], ["/3.jpg", "/4.jpg"]]


def test_exact_copies_inside_a_near_group_keep_their_score() -> None:
    files = {1: [detail("/big.jpg", 1, (400, 300))], 2: [detail("/small.jpg", 2), detail("/small-copy.jpg", 2)]}
    (group,) = build_groups([(1, 2, 0.98)], files, 0.95)
    assert [(m.path, m.score, m.same_content) for m in group.members] == [
        ("/big.jpg", 1.0, True),
        ("/small.jpg", 0.98, False),
        ("/small-copy.jpg", 0.98, False),
    ]


def shot(cid: int, taken: str | None, camera: str | None = "Canon EOS", pixels: int = 100) -> FileDetail:
    return FileDetail(f"/shots/IMG_{cid:04d}.jpg", cid, 5000, pixels, 100, taken, camera)


def test_a_burst_is_consecutive_alike_shots_of_one_camera() -> None:
    rng = np.random.default_rng(0)
    scene, other = unit(rng.standard_normal((2, 16)))
    near = {i: unit((scene + 0.05 * rng.standard_normal(16))[None])[0] for i in range(1, 5)}
    files = {
        1: [shot(1, "2024-05-01 10:00:00")],
        2: [shot(2, "2024-05-01 10:00:01")],
        3: [shot(3, "2024-05-01 10:00:03.500000", pixels=120)],  # most pixels: the keeper
        4: [shot(4, "2024-05-01 10:00:07")],  # 3.5 s after the previous one: a new run
        5: [shot(5, "2024-05-01 10:00:01", camera="Nikon")],  # another camera at the same time
        6: [shot(6, "2024-05-01 10:00:08")],  # 1 s after 4, but another scene
        7: [shot(7, None)],  # no capture time: never in a burst
    }
    vectors = {**near, 5: scene, 6: other, 7: scene}
    (burst,) = build_bursts(files, vectors, gap=3.0, threshold=0.9)
    assert burst.kind == "burst"
    assert [m.path for m in burst.members] == ["/shots/IMG_0003.jpg", "/shots/IMG_0001.jpg", "/shots/IMG_0002.jpg"]
    assert burst.members[1].score == float(exact_scores(near[3], near[1])[0])
    assert build_bursts(files, vectors, gap=0.5, threshold=0.9) == []


# -- the daemon's tracker -----------------------------------------------------------------------


def tracked_index(vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
    index = VectorIndex(vectors.shape[1])
    index.add(ids, vectors.astype(np.float32))
    return index


def test_tracker_matches_the_whole_library_answer_through_adds_and_removals() -> None:
    vectors, _ = planted(400, 60)
    ids = np.arange(1, 401, dtype=np.int64)
    index = tracked_index(vectors[:300], ids[:300])
    tracker = DupeTracker(index, lambda: (ids[:300], vectors[:300]), floor=0.95)
    tracker.on_added(ids[300:350], vectors[300:350])  # before the first answer: queued, applied after it
    index.add(ids[300:350], vectors[300:350].astype(np.float32))
    tracker.build()
    index.add(ids[350:], vectors[350:].astype(np.float32))
    tracker.on_added(ids[350:], vectors[350:])
    gone = ids[::7]
    index.remove(gone)
    tracker.on_removed(gone.tolist())
    left = np.setdiff1d(np.arange(400), gone - 1)
    assert sorted(tracker.pairs(0.95)) == sorted(library_pairs(ids[left], vectors[left], 0.95))
    assert tracker.pairs(0.97) == [p for p in tracker.pairs(0.95) if p[2] >= 0.97]
    with pytest.raises(ValueError):
        tracker.pairs(0.9)


def test_tracker_over_an_ivf_index_finds_a_new_near_copy_with_its_exact_score() -> None:
    """Past exact_limit the daemon's index is IVF; a near copy lies well inside the probed lists."""
    vectors, _ = planted(3000, 0)
    index = VectorIndex(vectors.shape[1])
    index.exact_limit = 2000
    ids = np.arange(1, 3001, dtype=np.int64)
    index.add(ids, vectors.astype(np.float32))
    index.rebuild_if_due()
    assert index.kind == "ivf"
    # Its lists hold 8-bit codes; exact scores come from the catalog's vectors, as the daemon looks them up.
    stored = dict(zip(ids.tolist(), vectors.astype(np.float32), strict=True))
    index.exact_vectors = lambda wanted: np.vstack([stored[i] for i in np.asarray(wanted).tolist()])
    tracker = DupeTracker(index, lambda: (ids, vectors), floor=0.97)
    tracker.build()
    before = set(tracker.pairs(0.97))
    rng = np.random.default_rng(3)
    copy = unit(vectors[[42]].astype(np.float64) + 0.01 * rng.standard_normal((1, vectors.shape[1])))
    index.listeners.append(tracker)
    stored[5000] = copy.astype(np.float32)[0]
    index.add(np.array([5000]), copy.astype(np.float32))
    added = set(tracker.pairs(0.97)) - before
    assert (43, 5000, float(exact_scores(vectors[[42]], copy)[0])) in added  # row 42 is content 43
    index.remove(np.array([43]))
    assert all(43 not in (a, b) for a, b, _ in tracker.pairs(0.97))


# -- real images through the engine -----------------------------------------------------------

# The tiny random-weight model sees a 32-pixel thumbnail; the test pictures are flat colour grids, which
# every transformation below leaves nearly intact there (cosine >= 0.9995 to the original, measured),
# while unrelated grids of these seeds stay below 0.999. The threshold sits between the two. The trained
# shapes model and the random ViT-B/32 are measured on photo-like copies in benchmarks/bench_dupes.py.
TINY_THRESHOLD = 0.9993


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def original(seed: int) -> Image.Image:
    return picture(seed, (480, 320))


TRANSFORMS: dict[str, Callable[[Image.Image], tuple[str, bytes]]] = {
    "jpeg-quality": lambda im: ("the-copy.jpg", encoded(im, "JPEG", quality=60)),
    "half-size": lambda im: ("the-copy.jpg", encoded(im.resize((im.width // 2, im.height // 2)), "JPEG", quality=92)),
    "crop": lambda im: (
        "copy.jpg",
        encoded(im.crop((10, 6, im.width - 10, im.height - 6)), "JPEG", quality=92),  # ~4% off each side
    ),
    "exif-rotated": lambda im: ("the-copy.jpg", rotated_jpeg(im)),
    "png": lambda im: ("the-copy.png", encoded(im, "PNG")),
    "brightened": lambda im: ("the-copy.jpg", encoded(ImageEnhance.Brightness(im).enhance(1.02), "JPEG", quality=92)),
}


def rotated_jpeg(image: Image.Image) -> bytes:
    """Stored turned 90 degrees with orientation 6, the way a camera writes it; upright once read."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif.tobytes())


def index_folder(config: Config, embedder: object, folder: Path) -> None:
    library = open_library(config, embedder)  # type: ignore[arg-type]
    try:
        library.engine.reconcile([str(folder)])
    finally:
        library.close()


def groups_of(config: Config, threshold: float = TINY_THRESHOLD, **options: object) -> list[list[str]]:
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        found = find_groups(catalog, threshold, **options)  # type: ignore[arg-type]
    finally:
        catalog.close()
    return [[os.path.basename(m.path) for m in g.members] for g in found]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_transformation_groups_with_its_original(
    name: str, tmp_path: Path, make_config: Callable[..., Config], embedder: object
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "orig.jpg").write_bytes(encoded(original(1), "JPEG", quality=92))
    for seed in (2, 3, 4):
        (folder / f"other{seed}.jpg").write_bytes(encoded(original(seed), "JPEG", quality=92))
    copy_name, data = TRANSFORMS[name](original(1))
    (folder / copy_name).write_bytes(data)
    config = make_config()
    index_folder(config, embedder, folder)
    groups = groups_of(config)
    assert groups == [["orig.jpg", copy_name]]


@pytest.mark.slow
def test_exact_copies_and_folder_scopes(tmp_path: Path, make_config: Callable[..., Config], embedder: object) -> None:
    photos, downloads = tmp_path / "photos", tmp_path / "downloads"
    photos.mkdir()
    downloads.mkdir()
    data = encoded(original(1), "JPEG", quality=92)
    (photos / "a.jpg").write_bytes(data)
    (downloads / "a.jpg").write_bytes(data)
    (photos / "b.jpg").write_bytes(encoded(original(2), "JPEG", quality=92))
    (downloads / "b-small.jpg").write_bytes(encoded(original(2).resize((240, 160)), "JPEG", quality=92))
    (photos / "c.jpg").write_bytes(encoded(original(3), "JPEG", quality=92))
    config = make_config()
    index_folder(config, embedder, tmp_path)
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        everything = find_groups(catalog, TINY_THRESHOLD)
        assert [[m.path for m in g.members] for g in everything] == [
            [str(photos / "a.jpg"), str(downloads / "a.jpg")],  # exact: same size, the shorter path first
            [str(photos / "b.jpg"), str(downloads / "b-small.jpg")],  # near: the larger one is the keeper
        ]
        assert [g.kind for g in everything] == ["exact", "near"]
        inside = catalog.content_ids_under(str(photos))
        only_photos = find_groups(catalog, TINY_THRESHOLD, allowed=inside, keep_path=lambda p: under(p, [str(photos)]))
        assert only_photos == []  # one of each pair is outside
        touching = find_groups(catalog, TINY_THRESHOLD, within=[str(downloads)])
        assert touching == everything
        assert find_groups(catalog, 0.99999999) == everything[:1]  # only the exact copies remain
        ids, vectors = catalog_vectors(catalog)
        assert len(ids) == 4 and vectors.dtype == np.float16
    finally:
        catalog.close()


# -- the command, through the daemon and directly ------------------------------------------------


def imgd(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMGD, *args], env=daemon.env, capture_output=True, text=True, timeout=120, check=False)


def both_ways(daemon: DaemonProcess, *args: str) -> str:
    """The command's stdout through the daemon, checked to be identical when computed directly."""
    through = imgd(daemon, "dupes", *args)
    direct = imgd(daemon, "dupes", "--direct", *args)
    assert (through.stdout, through.returncode) == (direct.stdout, direct.returncode), through.stderr + direct.stderr
    return through.stdout


@pytest.mark.slow
def test_daemon_keeps_groups_current_and_answers_like_the_direct_path(tmp_path: Path, tiny_model: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    data = encoded(original(1), "JPEG", quality=92)
    (photos / "a.jpg").write_bytes(data)
    (photos / "sub" / "a-copy.jpg").write_bytes(data)
    (photos / "b.jpg").write_bytes(encoded(original(2), "JPEG", quality=92))
    (photos / "b-small.jpg").write_bytes(encoded(original(2).resize((240, 160)), "JPEG", quality=92))
    (photos / "c.jpg").write_bytes(encoded(original(3), "JPEG", quality=92))
    with DaemonProcess(tmp_path, tiny_model, [photos], IMGD_DUPES_THRESHOLD=str(TINY_THRESHOLD)) as daemon:
        daemon.start()
        daemon.wait_idle()
        groups = json.loads(both_ways(daemon, "--json"))
        assert [[m["path"] for m in g["members"]] for g in groups] == [
            [str(photos / "a.jpg"), str(photos / "sub" / "a-copy.jpg")],
            [str(photos / "b.jpg"), str(photos / "b-small.jpg")],
        ]
        assert groups[1]["members"][1]["width"] == 240 and groups[1]["members"][1]["score"] >= TINY_THRESHOLD
        text = both_ways(daemon)
        assert "keep  1.0000  480x320" in text and "b-small.jpg" in text
        assert both_ways(daemon, "-f", "--not-keeper").splitlines() == [
            str(photos / "sub" / "a-copy.jpg"),
            str(photos / "b-small.jpg"),
        ]
        assert both_ways(daemon, "-0", "--in", str(photos / "sub"), "--not-keeper") == f"{photos}/sub/a-copy.jpg\0"
        assert len(both_ways(daemon, "--jsonl").splitlines()) == 2
        assert "dupes" not in daemon.status()  # the cheap status a poll asks for
        status = daemon.status(duplicates=True)["dupes"]
        assert status == {"threshold": TINY_THRESHOLD, "groups": 2, "reclaimable": len(data) + groups[1]["reclaimable"]}

        # A moved member: its group follows it. A new near copy joins at once (one range search).
        os.rename(photos / "b-small.jpg", photos / "sub" / "b-moved.jpg")
        (photos / "c-half.jpg").write_bytes(encoded(original(3).resize((240, 160)), "JPEG", quality=92))
        daemon.wait_idle()
        paths = both_ways(daemon, "-f")
        assert str(photos / "sub" / "b-moved.jpg") in paths and "b-small.jpg" not in paths
        assert str(photos / "c-half.jpg") in paths

        # A deleted member: its group is gone, through the daemon and directly alike.
        (photos / "sub" / "b-moved.jpg").unlink()
        daemon.wait_idle()
        assert [g["keeper"] for g in json.loads(both_ways(daemon, "--json"))] == [
            str(photos / "a.jpg"),
            str(photos / "c.jpg"),
        ]
        assert "duplicates: 2 groups" in imgd(daemon, "status").stdout
        # Below the daemon's floor the answer is computed on request: still the same as the direct one.
        assert len(json.loads(both_ways(daemon, "--json", "--threshold", "0.5"))) >= 1
        assert daemon.stop() == 0


def test_a_bad_threshold_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from imgd.cli.main import cli

    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "dupes", "--threshold", "1.5"])
    assert result.exit_code == 2
    assert "--threshold is a cosine similarity above 0 and at most 1, not 1.5." in result.output


def exif_jpeg(image: Image.Image, taken: str, make: str = "Canon", model: str = "EOS R6") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif.get_ifd(0x8769)[0x9003] = taken
    return encoded(image, "JPEG", quality=92, exif=exif.tobytes())


@pytest.mark.slow
def test_bursts_and_the_taken_date_in_keeper_order(
    tmp_path: Path, make_config: Callable[..., Config], embedder: object
) -> None:
    """Three shots a second apart (slightly different frames) are a burst; a fourth a minute later is not.
    Two same-size near copies: the one taken earlier is the keeper, whatever its path."""
    shots = tmp_path / "shots"
    shots.mkdir()
    frames = [ImageEnhance.Brightness(original(5)).enhance(1.0 + 0.06 * i) for i in range(4)]
    for i, when in enumerate(("10:00:00", "10:00:01", "10:00:02", "10:01:00")):
        (shots / f"IMG_{i}.jpg").write_bytes(exif_jpeg(frames[i], f"2024:05:01 {when}"))
    (shots / "z-first.jpg").write_bytes(exif_jpeg(original(6), "2020:01:01 08:00:00"))
    (shots / "a-later.jpg").write_bytes(exif_jpeg(original(6), "2021:01:01 08:00:00", model="EOS R7"))
    config = make_config()
    index_folder(config, embedder, shots)
    from click.testing import CliRunner
    from imgd.cli.main import cli

    base = ["--state-dir", str(config.state_dir), "--model", str(config.model), "dupes", "--direct"]
    result = CliRunner().invoke(cli, [*base, "--threshold", str(TINY_THRESHOLD), "--bursts", "--json"])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)
    assert [(g["kind"], [os.path.basename(m["path"]) for m in g["members"]]) for g in groups] == [
        ("near", ["z-first.jpg", "a-later.jpg"]),  # same pixels: the older capture is kept
        ("burst", ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"]),  # IMG_3 came a minute later
    ]
    assert groups[0]["members"][0]["taken"] == "2020-01-01T08:00:00"  # ISO 8601, as every listing gives it
    # A shorter gap leaves no burst; without --bursts none is listed.
    narrow = CliRunner().invoke(
        cli, [*base, "--threshold", str(TINY_THRESHOLD), "--bursts", "--burst-gap", "0.5", "-f"]
    )
    assert "IMG_0.jpg" not in narrow.stdout
    assert "IMG_0.jpg" not in CliRunner().invoke(cli, [*base, "--threshold", str(TINY_THRESHOLD), "-f"]).stdout


@pytest.mark.slow
def test_the_default_threshold_with_the_trained_model(
    tmp_path: Path, make_config: Callable[..., Config], shapes_model: Path
) -> None:
    """With a model that knows its pictures, the default (0.975) groups a 10% brighter and a half-size copy
    with their original, and leaves other red circles (same colour and shape, ~0.86) and a blue square apart."""
    from imgd.daemon.embedders import load_embedder
    from shapekit import shape_image

    folder = tmp_path / "shapes"
    folder.mkdir()
    base = shape_image("red", "circle", 1, (480, 320))
    (folder / "orig.jpg").write_bytes(encoded(base, "JPEG", quality=92))
    (folder / "orig-brighter.jpg").write_bytes(encoded(ImageEnhance.Brightness(base).enhance(1.1), "JPEG", quality=92))
    (folder / "orig-half.jpg").write_bytes(encoded(base.resize((240, 160)), "JPEG", quality=92))
    for seed in (2, 3, 4):
        (folder / f"circle{seed}.jpg").write_bytes(encoded(shape_image("red", "circle", seed, (480, 320)), "JPEG"))
    (folder / "square.jpg").write_bytes(encoded(shape_image("blue", "square", 1, (480, 320)), "JPEG"))
    config = make_config(model=str(shapes_model))
    index_folder(config, load_embedder(str(shapes_model), device="cpu", batch_size=8), folder)
    assert config.dupes_threshold == 0.975
    assert groups_of(config, config.dupes_threshold) == [["orig.jpg", "orig-brighter.jpg", "orig-half.jpg"]]


def test_a_clump_of_near_identical_frames_keeps_few_pairs_and_still_groups_as_one() -> None:
    """300 frames of one still scene: 44,850 pairs unbounded, at most 64 nearest per frame kept; the
    keeper's group is completed by exact scoring, so the groups are those of every pair."""
    rng = np.random.default_rng(3)
    scene = unit(rng.normal(size=(1, 64)))[0]
    frames = unit(scene + rng.normal(scale=0.01, size=(300, 64))).astype(np.float16)
    ids = np.arange(1, 301, dtype=np.int64) * 10
    every = library_pairs(ids, frames, 0.975, limit=10**9)
    bounded = library_pairs(ids, frames, 0.975)
    assert len(every) == 300 * 299 // 2
    assert len(bounded) <= 300 * pairs_module.PAIR_LIMIT and set(bounded) <= set(every)
    vector_of = dict(zip(ids.tolist(), frames, strict=True))

    def score(keeper: int, others: list[int]) -> list[float]:
        return [float(exact_scores(vector_of[keeper], vector_of[other])[0]) for other in others]

    files = {int(cid): [detail(f"/clip/frame{cid:05d}.jpg", int(cid))] for cid in ids}
    (group,) = build_groups(bounded, files, 0.975, score=score)
    assert len(group.members) == 300
    assert build_groups(bounded, files, 0.975, score=score) == build_groups(every, files, 0.975)


def test_the_first_duplicates_pass_gives_way_while_new_files_wait() -> None:
    """Its blocks ask whether files wait (the daemon passes worker.files_waiting) and wait while they do,
    then go on once none waits."""
    rng = np.random.default_rng(5)
    vectors = unit(rng.normal(size=(6000, 32))).astype(np.float16)
    ids = np.arange(6000, dtype=np.int64)
    asked: list[float] = []

    def files_waiting() -> bool:  # files wait for the first 20 asks (50 ms waits, two blocks at once)
        asked.append(time.monotonic())
        return len(asked) <= 20

    tracker = DupeTracker(None, lambda: (ids, vectors), 0.975, busy=files_waiting)  # type: ignore[arg-type]
    started = time.monotonic()
    tracker.start()
    try:
        assert tracker.wait_ready(120) and tracker.error is None
    finally:
        tracker.stop()
        tracker.join(30)
    assert len(asked) > 20, "the pass never asked whether files wait"
    assert asked[20] - started >= 0.4, "the pass did not wait while files waited"  # two blocks wait at once
