"""Search filters are one rule each: the catalog's SQL (clause) and the Python check (match) agree on every row."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.protocol import Filters
from imgd.daemon.search import filters as F
from imgd.daemon.search.query import path_passes
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.records import FileRow, ImageMeta

START, END = datetime(2021, 1, 1), datetime(2022, 1, 1)
FOLDERS = ["/lib/a", "/lib/a/b", "/lib/ab", "/lib/é", "/"]
CAMERAS = [("Canon", "Canon EOS R5"), ("Éclair", "ÉCLAIR 16"), (None, "iPhone 15"), ("NIKON", None), (None, None)]


def edge_rows() -> list[FileRow]:
    """Rows on each filter's edges: bounds exactly, a path equal to a folder or sharing its prefix."""
    at, before = F.epoch_ns(START), F.epoch_ns(START) - 1
    return [
        FileRow("/lib/a", at, "jpeg", 10, 10),  # a file named like the folder filtered on: not inside it
        FileRow("/lib/ab/x.jpg", at, "png", 10, 20),
        FileRow("/lib/a/b/y.jpg", before, None, 20, 10),  # metadata not read yet
        FileRow("/lib/é/z.heic", at, "heic", 30, 30, "2021-01-01 00:00:00", "Éclair", "ÉCLAIR 16"),
        FileRow("/lib/a/w.jpg", 0, "jpeg", 40, 30, "2022-01-01 00:00:00", "Canon", "Canon EOS R5"),  # end: out
        FileRow("/lib/a/v.jpg", F.epoch_ns(END), "jpeg", 40, 30),
        FileRow("/lib/a/\udcff.jpg", F.epoch_ns(END) - 1, "tiff", 1, 1, "2021-12-31 23:59:59", None, "iPhone 15"),
    ]


def random_rows(count: int, seed: int) -> list[FileRow]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        make, model = rng.choice(CAMERAS)
        taken = None if rng.random() < 0.4 else f"20{rng.randrange(19, 24)}-{rng.randrange(1, 13):02d}-01 00:00:00"
        mtime = F.epoch_ns(datetime(rng.randrange(2019, 2024), rng.randrange(1, 13), 1)) + rng.choice([-1, 0, 1])
        folder = rng.choice(FOLDERS[:-1])
        width, height = rng.choice([10, 20, 30]), rng.choice([10, 20, 30])
        kind = rng.choice(["jpeg", "png", "heic", None, "mp4"])
        duration = rng.choice([0.5, 4.0, 60.0, 3600.0]) if kind == "mp4" else None
        rows.append(FileRow(f"{folder}/{n}.jpg", mtime, kind, width, height, taken, make, model, duration=duration))
    return rows


# Each filter as it would be built against the catalog (a camera filter reads the catalog's cameras).
FILTERS: dict[str, Callable[[Catalog], F.Filter]] = {
    "in one folder": lambda c: F.InFolders(("/lib/a",)),
    "in two folders": lambda c: F.InFolders(("/lib/a/", "/lib/ab")),
    "in a non-ASCII folder": lambda c: F.InFolders(("/lib/é",)),
    "in the root": lambda c: F.InFolders(("/",)),
    "taken from": lambda c: F.TakenBetween(START, None),
    "taken until": lambda c: F.TakenBetween(None, END),
    "taken between": lambda c: F.TakenBetween(START, END),
    "camera canon": lambda c: F.Camera.among("canon", c.cameras()),
    "camera beyond ASCII": lambda c: F.Camera.among("éclair 16", c.cameras()),
    "camera across make and model": lambda c: F.Camera.among("canon canon", c.cameras()),
    "camera model only": lambda c: F.Camera.among("IPHONE", c.cameras()),
    "camera nowhere": lambda c: F.Camera.among("leica", c.cameras()),
    "types typed": lambda c: F.FileTypes(("JPG", "heif")),
    "type tiff": lambda c: F.FileTypes(("tif",)),
    "landscape": lambda c: F.Orientation("landscape"),
    "portrait": lambda c: F.Orientation("portrait"),
    "square": lambda c: F.Orientation("square"),
    "min width": lambda c: F.AtLeast("width", 20),
    "min height": lambda c: F.AtLeast("height", 30),
    "min side": lambda c: F.AtLeast("side", 20),
    "min pixels": lambda c: F.AtLeast("pixels", 400),
    "videos only": lambda c: F.Videos(True),
    "no videos": lambda c: F.Videos(False),
    "type mp4": lambda c: F.FileTypes(("MP4",)),
    "min duration": lambda c: F.Lasting(4.0, None),
    "max duration": lambda c: F.Lasting(None, 60.0),
    "duration between": lambda c: F.Lasting(1.0, 60.0),
}


@pytest.fixture(autouse=True, scope="module")
def away_from_utc() -> Iterator[None]:
    """A zone off UTC, so an mtime bound taken in the wrong zone shows (POSIX form: no tz database needed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "XST+05XDT,M3.2.0,M11.1.0")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture(scope="module", params=["all live", "some missing"])
def table(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A catalog of one content per row, each at one file; with "some missing", a sixth of the files are
    missing (the catalog then checks for a live file per content, and a missing file passes no filter)."""
    catalog = Catalog(tmp_path_factory.mktemp("filters") / "catalog.db")
    catalog.ensure_model("tiny", 4)
    rows = edge_rows() + random_rows(240, seed=11)
    live = []
    with catalog.transaction():
        for n, row in enumerate(rows):
            meta = ImageMeta(row.format, row.width, row.height, row.taken, None, row.make, row.model)
            vector = np.ones(4, dtype=np.float32) / 2
            content_id = catalog.add_content(f"d{n}", vector, row.width, row.height, meta)
            catalog.set_file(row.path, 1, row.mtime_ns, content_id)
            catalog.conn.execute("UPDATE media SET duration = ? WHERE content_id = ?", (row.duration, content_id))
            live.append((content_id, row))
        if request.param == "some missing":
            for content_id, _ in live[5::6]:
                catalog.conn.execute("UPDATE files SET status = 'missing' WHERE content_id = ?", (content_id,))
            live = [pair for n, pair in enumerate(live) if n % 6 != 5]
    yield catalog, live
    catalog.close()


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("shape", ["by content", "walking a folder"])
def test_clause_and_match_agree(table: tuple, name: str, shape: str) -> None:
    """The contents the SQL selects are exactly those with a live row that match() passes; in both shapes
    of the query: over the contents, and walking the files of a folder first (with a filter on "/")."""
    catalog, live = table
    chosen = [FILTERS[name](catalog)]
    if shape == "walking a folder":
        chosen.append(F.InFolders(("/",)))
    expected = sorted(content_id for content_id, row in live if all(f.match(row) for f in chosen))
    assert catalog.content_ids_matching(chosen).tolist() == expected
    assert 0 < len(expected) < len(live) or name in ("camera nowhere", "in the root"), "the table tests nothing"


def test_a_request_becomes_the_filters_it_names(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.ensure_model("tiny", 4)
    catalog.add_content("d", np.ones(4, dtype=np.float32) / 2, 10, 10, ImageMeta("jpeg", 10, 10, None, None, "Canon"))
    request = Filters(folders=("/p",), after="2021", camera="canon", types=("jpg",), orientation="square", min_side=5)
    made = F.from_request(request, catalog.cameras)
    assert made == [
        F.InFolders(("/p",)),
        F.TakenBetween(datetime(2021, 1, 1), None),
        F.Camera("canon", (("Canon", None),)),
        F.FileTypes(("jpeg",)),
        F.Orientation("square"),
        F.AtLeast("side", 5),
    ]
    asked: list[int] = []
    assert F.from_request(Filters(), lambda: asked.append(1) or []) == [] and not asked  # cameras read only if needed
    catalog.close()


def test_a_path_passes_the_folder_filter_by_match() -> None:
    filters = Filters(folders=("/p/a",), orientation="portrait")  # only the path's part is checked on a path
    assert path_passes(filters, "/p/a/x.jpg") and path_passes(filters, "/p/a/b/y.jpg")
    assert not path_passes(filters, "/p/ab/x.jpg") and not path_passes(filters, "/p/a")
    assert path_passes(Filters(camera="x"), "/anywhere.jpg")
