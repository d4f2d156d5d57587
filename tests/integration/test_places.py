"""Places through the CLI: photos with EXIF GPS written at known cities, found by --near, --within and
--country inside the search, named in --json and the text output; a catalog kept from before places
gets them from its stored GPS, no file read; the same answers through a real daemon and directly."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import IMGD, DaemonProcess
from imgd.cli.main import cli
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
        conn.execute("DROP INDEX media_position")
        conn.execute("DROP INDEX media_country")
        for column in ("city", "region", "country", "duration"):  # duration: schema 8, after places
            conn.execute(f"ALTER TABLE media DROP COLUMN {column}")
        conn.execute("DROP TABLE words")  # schema 9, after places: made again by the upgrade
        conn.execute("DROP TABLE words_fts")
        conn.execute("DELETE FROM migrations WHERE version >= 7")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    conn.close()


def test_an_existing_catalog_gets_places_from_its_stored_gps_without_reading_files(
    base_args: list[str], library: Path, state_dir: Path
) -> None:
    catalog = state_dir / "catalog.db"
    unplace(catalog)
    # Every file's bytes replaced (size and time kept): a place read from a file would be lost.
    for path in library.iterdir():
        info = path.stat()
        path.write_bytes(b"\0" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    # A reader may not upgrade: it answers as before, with no places yet.
    assert found(base_args) == set(SPOTS) | {"no-gps.jpg"}
    assert found(base_args, "--country", "Portugal") == set()
    upgraded = Catalog(catalog)  # a writer: the migration names the places from the stored GPS
    assert upgraded.schema_version == 9
    upgraded.close()
    assert found(base_args, "--country", "Portugal") == LISBON_PHOTOS | {"porto.jpg"}
    assert found(base_args, "--near", "Lisbon") == LISBON_PHOTOS


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
