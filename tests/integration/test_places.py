"""Places through the CLI: photos with EXIF GPS written at known cities, found by --near, --within and
--country inside the search, named in --json and the text output; a catalog kept from before places
gets them from its stored GPS, no file read; the same answers through a real daemon and directly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import IMGD, DaemonProcess, wait_until
from imgd.cli.main import cli
from imgd.daemon.service.library import open_library
from imgd.daemon.store.catalog import Catalog
from test_metadata import exif_bytes

SPOTS = {  # name -> where it was taken
    "lisbon-baixa.jpg": (38.7107, -9.1366),
    "lisbon-belem.jpg": (38.6970, -9.2063),
    "porto.jpg": (41.1579, -8.6291),  # 274 km north of Lisbon
    "null-island.jpg": (0.0, 0.0),  # a receiver without a fix
    "portland.jpg": (45.5152, -122.6784),
}
LISBON_PHOTOS = {"lisbon-baixa.jpg", "lisbon-belem.jpg"}


def dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    """Degrees as EXIF's (degrees, minutes, seconds) rationals."""
    value = abs(value)
    degrees, minutes = int(value), int(value * 60) % 60
    return (
        Fraction(degrees),
        Fraction(minutes),
        Fraction(round((value * 3600 - degrees * 3600 - minutes * 60) * 1000), 1000),
    )


def gps(lat: float, lon: float) -> tuple:
    return ("N" if lat >= 0 else "S", dms(lat), "E" if lon >= 0 else "W", dms(lon))


def make_library(root: Path) -> Path:
    for seed, (name, (lat, lon)) in enumerate(SPOTS.items()):
        write_image(root / name, seed=seed, exif=exif_bytes(gps=gps(lat, lon), make="Test"))
    write_image(root / "no-gps.jpg", seed=9)
    return root


@pytest.fixture
def base_args(state_dir: Path, tiny_model: Path) -> list[str]:
    return ["--state-dir", str(state_dir), "--model", str(tiny_model), "--device", "cpu"]


@pytest.fixture
def library(base_args: list[str], tmp_path: Path) -> Path:
    pics = make_library(tmp_path / "pics")
    result = CliRunner().invoke(cli, [*base_args, "index", str(pics)])
    assert result.exit_code == 0, result.output
    return pics


def run(base_args: list[str], *args: str, command: str = "search") -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*base_args, command, "--direct", *args])
    return result.exit_code, result.stdout, result.stderr


def found(base_args: list[str], *args: str) -> set[str]:
    code, out, err = run(base_args, "--json", "-k", "20", "a photo", *args)
    assert code in (0, 1), err
    return {Path(hit["path"]).name for hit in json.loads(out or "[]")}


def test_near_a_city_lists_its_photos_and_not_the_next_citys(base_args: list[str], library: Path) -> None:
    assert found(base_args, "--near", "Lisbon") == LISBON_PHOTOS
    assert found(base_args, "--near", "lisboa", "--within", "400") == LISBON_PHOTOS | {"porto.jpg"}
    assert found(base_args, "--near", "Lisbon", "--within", "6km") == LISBON_PHOTOS
    assert found(base_args, "--near", "Lisbon", "--within", "3") == {"lisbon-baixa.jpg"}
    assert found(base_args, "--near", "41.15,-8.61") == {"porto.jpg"}
    assert found(base_args, "--country", "Portugal") == LISBON_PHOTOS | {"porto.jpg"}
    assert found(base_args, "--country", "us") == {"portland.jpg"}
    assert found(base_args, "--country", "Portugal", "--near", "Porto") == {"porto.jpg"}
    assert found(base_args, "--near", "0,0", "--within", "100") == set()  # 0,0 is no position


def test_hits_carry_their_place_and_the_city_taken(base_args: list[str], library: Path) -> None:
    code, out, _ = run(base_args, "--json", "-k", "20", "a photo", "--near", "Portland", "--within", "50")
    (hit,) = json.loads(out)
    assert code == 0 and hit["place"] == {
        "city": "Portland",
        "region": "Oregon",
        "country": "United States",
        "country_code": "US",
    }
    # The most populous Portland, and --json says it is the one taken.
    assert hit["near"]["place"] == "Portland, Oregon, United States" and hit["near"]["km"] < 2
    _, out, _ = run(base_args, "--json", "-k", "20", "a photo")
    places = {Path(h["path"]).name: h.get("place") for h in json.loads(out)}
    assert places["lisbon-belem.jpg"]["city"] == "Lisbon"  # a district is named by its city
    assert places["null-island.jpg"] is None and places["no-gps.jpg"] is None
    assert all("near" not in h for h in json.loads(out))


def test_the_text_output_shows_places_when_asked_or_filtered(base_args: list[str], library: Path) -> None:
    _, plain, _ = run(base_args, "-k", "20", "a photo")
    assert "Portugal" not in plain
    _, shown, _ = run(base_args, "-k", "20", "a photo", "--places")
    lines = {Path(line.split("  ")[1]).name: line.split("  ")[2] for line in shown.splitlines()}
    assert lines["porto.jpg"] == "Porto, Portugal" and lines["no-gps.jpg"] == "-"
    assert lines["portland.jpg"] == "Portland, Oregon, United States"
    _, near, _ = run(base_args, "-k", "20", "a photo", "--near", "Lisbon")
    assert [line.rsplit("  ", 1)[1] for line in near.splitlines()] == ["Lisbon, Portugal"] * 2


def test_similar_and_dupes_take_the_place_filters(base_args: list[str], library: Path) -> None:
    code, out, _ = run(
        base_args,
        "-f",
        "-k",
        "20",
        "--near",
        "Lisbon",
        "--within",
        "400",
        str(library / "porto.jpg"),
        command="similar",
    )
    assert code == 0 and {Path(p).name for p in out.split()} == LISBON_PHOTOS  # porto itself left out
    code, _, err = run(base_args, "--country", "Narnia", command="dupes")
    assert code == 2 and "no country called 'Narnia'" in err


BAD = [
    (
        ["--near", "Qwxyzville"],
        "no city called 'Qwxyzville' is known; give a city of at least 15,000 people, or LAT,LON.",
    ),
    (["--near", "Lisbon", "--within", "far"], "--within: 'far' is not a distance; write kilometres above 0."),
    (["--near", "Lisbon", "--within", "-5"], "--within: '-5' is not a distance; write kilometres above 0."),
    (["--near", "95,10"], "--near: '95,10' is not a position; write LAT,LON in degrees"),
    (["--near", "38.7,-9.1,3"], "--near: '38.7,-9.1,3' is not a position"),
    (["--within", "10"], "--within is a distance from --near; give both."),
    (["--country", "Narnia"], "no country called 'Narnia' is known"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_places_are_one_sentence_and_exit_2(
    base_args: list[str], library: Path, args: list[str], message: str
) -> None:
    code, out, err = run(base_args, "a photo", *args)
    assert code == 2 and out == "" and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def unplace(catalog: Path) -> None:
    """Make a catalog as the release before places wrote it: schema 6, no place columns."""
    conn = sqlite3.connect(catalog)
    with conn:
        conn.execute("DROP TABLE dupe_pairs")  # schema 11, after places
        conn.execute("DROP TABLE dupe_pass")
        conn.execute("DROP INDEX media_unplaced")  # schema 10, after places
        conn.execute("DROP INDEX media_position")
        conn.execute("DROP INDEX media_country")
        for column in ("city", "region", "country", "duration"):  # duration: schema 8, after places
            conn.execute(f"ALTER TABLE media DROP COLUMN {column}")
        conn.execute("DROP TABLE words")  # schema 9, after places: made again by the upgrade
        conn.execute("DROP TABLE words_fts")
        conn.execute("DELETE FROM migrations WHERE version >= 7")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    conn.close()


def at_sea(catalog: Path, name: str) -> None:
    """Give a photo a stored position in the mid-Atlantic, 1,000 km from any city."""
    conn = sqlite3.connect(catalog)
    with conn:
        conn.execute(
            "UPDATE media SET latitude = 30.0, longitude = -40.0 WHERE content_id = "
            "(SELECT content_id FROM files WHERE CAST(path AS TEXT) LIKE ?)",
            (f"%/{name}",),
        )
    conn.close()


def test_an_existing_catalog_gets_places_from_its_stored_gps_without_reading_files(
    base_args: list[str], library: Path, state_dir: Path
) -> None:
    catalog = state_dir / "catalog.db"
    unplace(catalog)
    at_sea(catalog, "null-island.jpg")
    # Every file's bytes replaced (size and time kept): a place read from a file would be lost.
    for path in library.iterdir():
        info = path.stat()
        path.write_bytes(b"\0" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    # A reader may not upgrade: it answers as before, with no places yet.
    assert found(base_args) == set(SPOTS) | {"no-gps.jpg"}
    assert found(base_args, "--country", "Portugal") == set()
    upgraded = Catalog(catalog)  # a writer: the upgrade adds the columns and names no place (the pass does)
    assert upgraded.schema_version == 11 and upgraded.places_backlog_count() == len(SPOTS)
    upgraded.close()
    status = CliRunner().invoke(cli, [*base_args, "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout)["metadata"]["places_pending"] == len(SPOTS)
    assert found(base_args, "--near", "Lisbon") == LISBON_PHOTOS  # the stored positions serve meanwhile
    # `imgd index` runs the places pass (the daemon runs it in the background): nothing re-read.
    indexed = CliRunner().invoke(cli, [*base_args, "index", str(library)])
    assert indexed.exit_code == 0, indexed.output
    assert found(base_args, "--country", "Portugal") == LISBON_PHOTOS | {"porto.jpg"}
    assert found(base_args, "--near", "Lisbon") == LISBON_PHOTOS
    status = CliRunner().invoke(cli, [*base_args, "status", "--json"])
    assert "places_pending" not in json.loads(status.stdout)["metadata"]
    # The open sea names no place and is not waiting for one: '' tells it from a position not yet placed.
    conn = sqlite3.connect(catalog)
    assert conn.execute("SELECT count(*) FROM media WHERE city = ''").fetchone()[0] == 1
    conn.close()


def test_the_places_pass_goes_on_where_it_stopped(make_config, embedder, library: Path, state_dir: Path) -> None:
    unplace(state_dir / "catalog.db")
    at_sea(state_dir / "catalog.db", "null-island.jpg")
    first = open_library(make_config(), embedder)
    try:
        assert first.catalog.places_backlog_count() == len(SPOTS)
        assert first.engine.place_batch(limit=2) == 2  # then the process stops
    finally:
        first.close()
    again = open_library(make_config(), embedder)  # a new process: nothing in memory says where it was
    try:
        assert again.catalog.places_backlog_count() == len(SPOTS) - 2
        assert again.engine.place_all() == len(SPOTS) - 2  # only the rest, not from zero
        assert again.catalog.places_backlog_count() == 0 and again.engine.place_batch() == 0
    finally:
        again.close()


# -- through a real daemon and directly ------------------------------------------------------------


def imgd(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMGD, *args], env=daemon.env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_the_daemon_answers_places_as_the_direct_path_does(tmp_path: Path, tiny_model: Path) -> None:
    pics = make_library(tmp_path / "pics")
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        daemon.wait_idle()
        asks = [  # each direct answer loads the model in a new process: a few cover every form
            ["search", "a photo", "--near", "Lisbon", "--within", "400", "--json"],
            ["similar", str(pics / "porto.jpg"), "--country", "Portugal", "--places"],
            ["search", "a photo", "--near", "Qwxyzville"],
        ]
        for ask in asks:
            through = imgd(daemon, *ask)
            direct = imgd(daemon, *ask, "--direct")
            assert (through.returncode, through.stdout, through.stderr) == (
                direct.returncode,
                direct.stdout,
                direct.stderr,
            ), ask
        lisbon = imgd(daemon, "search", "a photo", "--near", "Lisbon", "-f")
        assert {Path(p).name for p in lisbon.stdout.split()} == LISBON_PHOTOS
        assert imgd(daemon, "search", "a photo", "--near", "91,0").returncode == 2


def add_unplaced(catalog: Path, count: int) -> None:
    """Rows of a big library kept from before places: positions stored, no place named yet (no files:
    only the places pass reads them)."""
    conn = sqlite3.connect(catalog)
    with conn:
        conn.executemany(
            "INSERT INTO media(content_id, version, width, height, latitude, longitude) VALUES (?, 1, 4, 3, ?, ?)",
            ((10_000_000 + i, 38.7 + (i % 1000) / 5000, -9.1 - (i % 777) / 5000) for i in range(count)),
        )
    conn.close()


def unplaced_rows(catalog: Path) -> int:
    conn = sqlite3.connect(catalog, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM media WHERE latitude IS NOT NULL AND city IS NULL").fetchone()[0]
    finally:
        conn.close()


def searchable_after(daemon: DaemonProcess, new: Path) -> float:
    """Seconds from a file's copy until a search finds it (0.5 s of it settling)."""
    started = time.monotonic()
    wait_until(lambda: daemon.search_image(new)[0]["path"] == str(new), timeout=60, interval=0.1)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(900)  # three daemon starts: a minute each on a loaded machine
def test_the_daemon_names_places_in_the_background_yielding_to_new_files_and_resuming(
    tmp_path: Path, tiny_model: Path
) -> None:
    pics = make_library(tmp_path / "pics")
    with DaemonProcess(tmp_path, tiny_model, [pics], IMGD_WORDS_ENABLED="0") as daemon:
        daemon.start()
        daemon.wait_idle()
        assert daemon.stop() == 0
        catalog = daemon.state_dir / "catalog.db"
        backlog = 250_000
        add_unplaced(catalog, backlog)
        daemon.start(wait=False)
        # Killed mid-pass: what was named is kept ...
        wait_until(
            lambda: unplaced_rows(catalog) < backlog - 20_000, timeout=120, interval=0.05, what="the pass to begin"
        )
        daemon.stop(signal.SIGKILL)
        left = unplaced_rows(catalog)
        assert 0 < left < backlog
        daemon.start()
        # ... and, once the start's own work is done and the pass runs again, a new file is embedded as
        # quickly as on an idle daemon: the pass gives way between batches.
        # (Past its first batch: the city table's load, once per process, is not what is measured.)
        wait_until(lambda: unplaced_rows(catalog) < left - 2_000, timeout=120, interval=0.05, what="the pass again")
        latency = searchable_after(daemon, write_image(pics / "new.jpg", seed=77))
        assert unplaced_rows(catalog) > 0, "the pass ended before the file came: no test of yielding"
        wait_until(lambda: "places_pending" not in daemon.status()["metadata"], timeout=300, what="the pass to end")
        assert daemon.status()["metadata"]["schema"] == 11
        idle_latency = searchable_after(daemon, write_image(pics / "last.jpg", seed=78))  # this machine's pace
        # The whole backlog in one go takes 10-30 s here; a batch, a few tens of milliseconds.
        assert latency < idle_latency + 1.5, f"searchable {latency:.1f}s after the copy ({idle_latency:.1f}s idle)"
    conn = sqlite3.connect(catalog)
    assert conn.execute("SELECT count(DISTINCT city) FROM media WHERE content_id >= 10000000").fetchone()[0] >= 1
    conn.close()
