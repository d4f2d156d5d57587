"""catalog's metadata reads: the content ids filters select, and each path's metadata for output."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.search import filters as F
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.records import FileRow, ImageMeta

DIM = 8
NS = 1_000_000_000


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def ns(moment: str) -> int:
    """A local wall-clock time as a file mtime."""
    return int(datetime.fromisoformat(moment).timestamp()) * NS


@pytest.fixture(autouse=True)
def away_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A zone off UTC, so a date compared in the wrong zone shows (POSIX form: no tz database needed)."""
    monkeypatch.setenv("TZ", "XST+05XDT,M3.2.0,M11.1.0")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog(tmp_path / "catalog.db")
    opened.ensure_model("tiny", DIM)
    yield opened
    opened.close()


def add(catalog: Catalog, seed: int, meta: ImageMeta | None, *files: tuple[str, int]) -> int:
    """One content (with its metadata, or waiting for backfill when meta is None) at each (path, mtime_ns)."""
    width, height = (meta.width, meta.height) if meta else (10, 10)
    with catalog.transaction():
        content_id = catalog.add_content(f"digest-{seed}", vector(seed), width, height, meta)
        for path, mtime_ns in files:
            catalog.set_file(path, 1000 + seed, mtime_ns, content_id)
    return content_id


@dataclass(frozen=True)
class Where:
    """Conditions as this file writes them; `selection` makes the search's filter objects of them."""

    folders: tuple[str, ...] = ()
    taken_from: datetime | None = None
    taken_until: datetime | None = None
    camera: str | None = None
    types: tuple[str, ...] = ()
    orientation: str | None = None
    min_width: int | None = None
    min_height: int | None = None
    min_side: int | None = None
    min_pixels: int | None = None


def selection(catalog: Catalog, where: Where) -> list[F.Filter]:
    chosen: list[F.Filter] = [F.InFolders(where.folders)] if where.folders else []
    if where.taken_from or where.taken_until:
        chosen.append(F.TakenBetween(where.taken_from, where.taken_until))
    if where.camera:
        chosen.append(F.Camera.among(where.camera, catalog.cameras()))
    if where.types:
        chosen.append(F.FileTypes(where.types))
    if where.orientation:
        chosen.append(F.Orientation(where.orientation))
    for measure in ("width", "height", "side", "pixels"):
        if getattr(where, f"min_{measure}"):
            chosen.append(F.AtLeast(measure, getattr(where, f"min_{measure}")))
    return chosen


def ids(catalog: Catalog, **conditions: object) -> list[int]:
    found = catalog.content_ids_matching(selection(catalog, Where(**conditions)))
    assert found.dtype == np.int64
    return found.tolist()


CANON = ImageMeta("jpeg", 6000, 4000, "2021-06-05 14:03:22", "+02:00", "Canon", "Canon EOS R5", "RF24-105mm", 48.8, 2.3)
PHONE = ImageMeta("heic", 3024, 4032, "2023-01-01 00:00:05", None, "Apple", "iPhone 15 Pro")
SCAN = ImageMeta("png", 800, 800)  # no EXIF: dated by each file's mtime


@pytest.fixture
def library(catalog: Catalog) -> dict[str, int]:
    return {
        "canon": add(catalog, 1, CANON, ("/p/2021/a.jpg", ns("2024-05-05 10:00:00"))),
        "phone": add(catalog, 2, PHONE, ("/p/phone/b.heic", ns("2023-01-02 00:00:00"))),
        "scan": add(
            catalog,
            3,
            SCAN,
            ("/p/scans/old.png", ns("2010-12-31 22:00:00")),
            ("/p/2021/copy-of-old.png", ns("2021-07-01 12:00:00")),
        ),
    }


def test_an_empty_filter_selects_every_content_with_a_live_path(catalog: Catalog, library: dict[str, int]) -> None:
    gone = add(catalog, 9, SCAN, ("/gone/x.png", 1))
    with catalog.transaction():
        catalog.mark_missing_under("/gone", now=1.0)
    assert ids(catalog) == sorted(library.values())
    assert gone not in ids(catalog)


def test_folders_mean_inside_not_sharing_a_prefix(catalog: Catalog, library: dict[str, int]) -> None:
    add(catalog, 4, SCAN, ("/p/2021-other/z.png", 1))
    assert ids(catalog, folders=("/p/2021",)) == sorted([library["canon"], library["scan"]])
    assert ids(catalog, folders=("/p/phone/", "/p/scans")) == sorted([library["phone"], library["scan"]])
    assert ids(catalog, folders=("/elsewhere",)) == []


def test_the_date_is_exif_else_each_files_own_mtime(catalog: Catalog, library: dict[str, int]) -> None:
    # canon's file is from 2024, but its EXIF says 2021: EXIF wins.
    in_2021 = {"taken_from": datetime(2021, 1, 1), "taken_until": datetime(2022, 1, 1)}
    assert ids(catalog, **in_2021) == sorted([library["canon"], library["scan"]])  # scan: via its 2021 copy
    # via the original, late on 31 December 2010 here (already 2011 in UTC)
    assert ids(catalog, taken_until=datetime(2011, 1, 1)) == [library["scan"]]
    assert ids(catalog, taken_from=datetime(2023, 1, 1, 0, 0, 5)) == [library["phone"]]  # inclusive
    assert ids(catalog, taken_until=datetime(2023, 1, 1, 0, 0, 5), taken_from=datetime(2022, 1, 1)) == []  # exclusive


def test_per_file_conditions_must_hold_on_the_same_file(catalog: Catalog, library: dict[str, int]) -> None:
    # The 2010 scan lies in /p/scans, its 2021 copy in /p/2021: no single file is in /p/scans and from 2021.
    assert ids(catalog, folders=("/p/scans",), taken_from=datetime(2021, 1, 1)) == []
    assert ids(catalog, folders=("/p/2021",), taken_from=datetime(2021, 7, 1)) == [library["scan"]]


def test_camera_is_a_case_insensitive_substring_of_make_and_model(catalog: Catalog, library: dict[str, int]) -> None:
    eclair = add(catalog, 5, ImageMeta("jpeg", 10, 10, make="Éclair", model="ÉCLAIR 16"), ("/p/e.jpg", 1))
    assert ids(catalog, camera="canon eos") == [library["canon"]]
    assert ids(catalog, camera="IPHONE") == [library["phone"]]
    assert ids(catalog, camera="apple iphone") == [library["phone"]]  # across make and model
    assert ids(catalog, camera="éclair 16") == [eclair]  # beyond ASCII
    assert ids(catalog, camera="nikon") == []


def test_types_orientation_and_minimum_size(catalog: Catalog, library: dict[str, int]) -> None:
    assert ids(catalog, types=("jpeg", "png")) == sorted([library["canon"], library["scan"]])
    assert ids(catalog, orientation="landscape") == [library["canon"]]
    assert ids(catalog, orientation="portrait") == [library["phone"]]
    assert ids(catalog, orientation="square") == [library["scan"]]
    assert ids(catalog, min_width=3000) == sorted([library["canon"], library["phone"]])
    assert ids(catalog, min_width=3000, min_height=4001) == [library["phone"]]
    assert ids(catalog, types=("heic",), orientation="landscape") == []
    assert ids(catalog, types=("JPG", "heif")) == sorted([library["canon"], library["phone"]])
    assert ids(catalog, min_side=3024) == sorted([library["canon"], library["phone"]])
    assert ids(catalog, min_side=3025) == [library["canon"]]
    assert ids(catalog, min_pixels=12_192_768) == sorted([library["canon"], library["phone"]])
    assert ids(catalog, min_pixels=12_192_769) == [library["canon"]]


def test_contents_waiting_for_backfill_are_dated_by_mtime_and_match_no_camera(catalog: Catalog) -> None:
    unread = add(catalog, 6, None, ("/p/old.jpg", ns("2015-05-05 05:05:05")))
    assert ids(catalog, taken_from=datetime(2015, 1, 1), taken_until=datetime(2016, 1, 1)) == [unread]
    assert ids(catalog, camera="a") == [] and ids(catalog, types=("jpeg",)) == []
    assert catalog.media_backlog_count() == 1
    assert [cid for cid, _ in catalog.media_backlog(0, 10)] == [unread]


def test_media_for_gives_each_path_its_metadata(catalog: Catalog, library: dict[str, int]) -> None:
    found = catalog.media_for(["/p/2021/a.jpg", "/p/scans/old.png", "/p/2021/copy-of-old.png", "/nowhere.jpg"])
    assert set(found) == {"/p/2021/a.jpg", "/p/scans/old.png", "/p/2021/copy-of-old.png"}
    a = found["/p/2021/a.jpg"]
    assert a.as_dict() == {
        "path": "/p/2021/a.jpg",
        "size": 1001,
        "taken": "2021-06-05T14:03:22+02:00",
        "taken_source": "exif",
        "width": 6000,
        "height": 4000,
        "type": "jpeg",
        "make": "Canon",
        "model": "Canon EOS R5",
        "lens": "RF24-105mm",
        "gps": [48.8, 2.3],
    }
    old, copy = found["/p/scans/old.png"], found["/p/2021/copy-of-old.png"]
    assert (old.taken_source, copy.taken_source) == ("mtime", "mtime")
    assert old.taken == datetime.fromtimestamp(ns("2010-12-31 22:00:00") / NS).astimezone().isoformat()
    assert copy.taken.startswith("2021-07-01T12:00:00")
    assert catalog.media_for(["/p/phone/b.heic"])["/p/phone/b.heic"].taken == "2023-01-01T00:00:05"  # no offset known
    assert catalog.content_media([library["phone"]]) == {library["phone"]: PHONE}


def test_deleted_contents_take_their_metadata_with_them(catalog: Catalog, library: dict[str, int]) -> None:
    with catalog.transaction():
        catalog.remove_file("/p/phone/b.heic")
        catalog.delete_orphans()
    assert catalog.content_media([library["phone"]]) == {}
    assert catalog.conn.execute("SELECT count(*) FROM media").fetchone()[0] == catalog.count_contents() == 2
    catalog.ensure_model("bigger", 16, reembed=True)
    assert catalog.conn.execute("SELECT count(*) FROM media").fetchone()[0] == 0


# -- against a reference: random libraries, random filters ------------------------------------------


@dataclass
class Row:
    content_id: int
    meta: ImageMeta
    files: list[tuple[str, int, str]]  # path, mtime_ns, status


def reference(rows: list[Row], where: Where) -> list[int]:
    """The filter's meaning, written plainly in Python."""
    selected = []
    for row in rows:
        m = row.meta
        camera = f"{m.make or ''} {m.model or ''}".casefold()
        if where.camera and where.camera.casefold() not in camera:
            continue
        if where.types and m.format not in where.types:
            continue
        shape = "landscape" if m.width > m.height else "portrait" if m.width < m.height else "square"
        if where.orientation and shape != where.orientation:
            continue
        if where.min_width and m.width < where.min_width or where.min_height and m.height < where.min_height:
            continue
        if where.min_side and min(m.width, m.height) < where.min_side:
            continue
        if where.min_pixels and m.width * m.height < where.min_pixels:
            continue
        for path, mtime_ns, status in row.files:
            taken = datetime.fromisoformat(m.taken) if m.taken else datetime.fromtimestamp(mtime_ns // NS)
            if status != "ok":
                continue
            if where.folders and not any(path.startswith(f.rstrip("/") + "/") for f in where.folders):
                continue
            if where.taken_from and taken < where.taken_from or where.taken_until and taken >= where.taken_until:
                continue
            selected.append(row.content_id)
            break
    return sorted(selected)


def by_match(rows: list[Row], chosen: list[F.Filter]) -> list[int]:
    """The contents with a live file that every filter's match() passes."""
    selected = []
    for row in rows:
        m = row.meta
        files = [
            FileRow(p, t, m.format, m.width, m.height, m.taken, m.make, m.model) for p, t, s in row.files if s == "ok"
        ]
        if any(all(f.match(file) for f in chosen) for file in files):
            selected.append(row.content_id)
    return sorted(selected)


def test_random_filters_select_what_the_reference_selects(catalog: Catalog) -> None:
    rng = random.Random(7)
    folders = ["/lib/a", "/lib/a/b", "/lib/ab", "/lib/c"]
    cameras = [("Canon", "EOS R5"), ("NIKON", "Z 6"), ("Apple", "iPhone 12"), (None, None)]
    rows: list[Row] = []
    with catalog.transaction():
        for n in range(300):
            make, model = rng.choice(cameras)
            taken = None if rng.random() < 0.4 else f"20{rng.randrange(10, 24)}-0{rng.randrange(1, 10)}-15 12:00:00"
            meta = ImageMeta(rng.choice(["jpeg", "png", "heic"]), rng.choice([10, 20, 30]), rng.choice([10, 20, 30]))
            meta = ImageMeta(meta.format, meta.width, meta.height, taken, None, make, model)
            content_id = catalog.add_content(f"r{n}", vector(n), meta.width, meta.height, meta)
            files = []
            for k in range(rng.choice([1, 1, 2, 3])):
                path = f"{rng.choice(folders)}/{n}-{k}.jpg"
                mtime = ns(f"20{rng.randrange(10, 24)}-0{rng.randrange(1, 10)}-01 22:00:00")
                status = rng.choice(["ok", "ok", "ok", "missing"])
                catalog.set_file(path, 1, mtime, content_id)
                if status == "missing":
                    catalog.conn.execute("UPDATE files SET status = 'missing' WHERE path = ?", (path.encode(),))
                files.append((path, mtime, status))
            rows.append(Row(content_id, meta, files))
    for n in range(400):
        if n == 200:  # the missing files come back: selecting no longer needs a live-path lookup per content
            with catalog.transaction():
                catalog.conn.execute("UPDATE files SET status = 'ok' WHERE status = 'missing'")
            rows = [Row(r.content_id, r.meta, [(p, m, "ok") for p, m, _ in r.files]) for r in rows]
        start = datetime(rng.randrange(2010, 2024), rng.randrange(1, 13), rng.choice([1, 2]))
        where = Where(
            folders=tuple(rng.sample(folders, rng.choice([0, 0, 1, 2]))),
            taken_from=start if rng.random() < 0.3 else None,
            taken_until=start.replace(year=start.year + rng.randrange(1, 5)) if rng.random() < 0.3 else None,
            camera=rng.choice([None, None, "canon", "z 6", "APPLE IPHONE", "x"]),
            types=tuple(rng.sample(["jpeg", "png", "heic"], rng.choice([0, 0, 1, 2]))),
            orientation=rng.choice([None, None, "landscape", "portrait", "square"]),
            min_width=rng.choice([None, None, 20]),
            min_height=rng.choice([None, None, 30]),
            min_side=rng.choice([None, None, None, 20]),
            min_pixels=rng.choice([None, None, None, 400]),
        )
        chosen = selection(catalog, where)
        assert catalog.content_ids_matching(chosen).tolist() == reference(rows, where), where
        assert by_match(rows, chosen) == reference(rows, where), where  # match() is the same rule


def test_a_folder_filter_walks_that_folder_not_the_library(catalog: Catalog) -> None:
    with catalog.transaction():
        for n in range(10000):
            content_id = catalog.add_content(f"bulk-{n}", vector(n % 50), 10, 10, SCAN)
            catalog.set_file(f"/lib/{n // 100:03d}/{n:06d}.png", 1, 1, content_id)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    catalog.conn.set_progress_handler(count, 100)
    found = catalog.content_ids_matching([F.InFolders(("/lib/007",)), F.FileTypes(("png",))])
    catalog.conn.set_progress_handler(None, 0)
    assert len(found) == 100
    assert steps < 200, f"{steps * 100} SQLite instructions for 100 files: the query scans the library"
