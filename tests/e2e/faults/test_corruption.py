"""A damaged index file is rebuilt; a damaged or foreign catalog stops imgd with one clear line.

The catalog is the user's data: imgd never starts an empty library over it. `imgd index --rebuild`
is the documented way out: it sets the damaged file aside (kept, byte for byte) and indexes anew.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemonkit import IMGD, check_invariants
from faultkit import FaultDaemon, png_bytes
from imgd.cli.main import cli

pytestmark = pytest.mark.slow


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A folder of 60 images indexed once by `imgd index`, its catalog checkpointed into one file."""
    tmp = tmp_path_factory.mktemp("corruption")
    pics = tmp / "pics"
    pics.mkdir()
    for i in range(60):
        (pics / f"p{i:02d}.png").write_bytes(png_bytes(6000 + i))
    state = tmp / "pristine"
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "--model", str(tiny_model), "index", str(pics)])
    assert result.exit_code == 0, (result.output, result.exception)
    with sqlite3.connect(state / "catalog.db") as conn:  # the WAL's pages into the main file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{state / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    return tmp


def copy_state(library: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("catalog.db", "index.faiss"):
        (dest / name).write_bytes((library / "pristine" / name).read_bytes())
    return dest


# -- the index file --------------------------------------------------------------------------


def damage_index(path: Path, kind: str) -> None:
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "flipped":
        for offset in random.Random(1).sample(range(200, len(data)), 16):
            data[offset] ^= 0xFF
    elif kind == "garbage":
        data = bytearray(random.Random(2).randbytes(len(data)))
    elif kind == "empty":
        data = bytearray()
    elif kind == "header":
        data[8:40] = b"{" * 32
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["truncated", "flipped", "garbage", "empty", "header"])
def test_a_damaged_index_file_is_ignored_by_direct_search(library, tmp_path, tiny_model, kind):
    state = copy_state(library, tmp_path / "state")
    damage_index(state / "index.faiss", kind)
    target = library / "pics" / "p17.png"
    result = CliRunner().invoke(
        cli,
        ["--state-dir", str(state), "--model", str(tiny_model), "--device", "cpu"]
        + ["search", "--direct", "--json", "-k", "1", "--image", str(target)],
    )
    assert result.exit_code == 0, result.output
    assert f'"path": "{target}"' in result.output


def test_a_damaged_index_file_is_rebuilt_when_the_daemon_starts(library, tmp_path, tiny_model):
    state = copy_state(library, tmp_path / "state")
    with FaultDaemon(tmp_path, tiny_model, [library / "pics"], IMGD_STATE_DIR=str(state)) as daemon:
        daemon.state_dir = state
        for kind in ("flipped",):  # every kind is covered by the direct-search test above
            damage_index(state / "index.faiss", kind)
            mark = daemon.mark()
            daemon.start()
            assert "rebuilding the index from the catalog" in daemon.log_since(mark)
            assert daemon.search_image(library / "pics" / "p33.png")[0]["path"] == str(library / "pics" / "p33.png")
            daemon.settle_and_check()


# -- the catalog -----------------------------------------------------------------------------


def damage_catalog(path: Path, kind: str) -> None:
    data = bytearray(path.read_bytes())
    if kind == "header":
        data[:64] = b"\0garbage" * 8
    elif kind == "pages":  # a few pages in the middle overwritten, as a failing disk or a bad copy does
        data[4096 * 3 : 4096 * 6] = b"\xff" * (4096 * 3)
    elif kind == "truncated":
        data = data[: len(data) // 3]
    elif kind == "random":
        data = bytearray(random.Random(3).randbytes(len(data)))
    elif kind == "foreign":
        path.unlink()
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            conn.execute("INSERT INTO notes(body) VALUES ('my own data')")
        conn.close()
        return
    path.write_bytes(bytes(data))


CATALOG_DAMAGE = ["header", "pages", "truncated", "random", "foreign"]


def one_clear_line(output: str, catalog: Path) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert str(catalog) in errors[0] and "imgd index --rebuild" in errors[0], errors[0]


@pytest.mark.parametrize("kind", CATALOG_DAMAGE)
def test_a_damaged_or_foreign_catalog_stops_index_and_direct_search_with_one_line(library, tmp_path, tiny_model, kind):
    state = copy_state(library, tmp_path / "state")
    catalog = state / "catalog.db"
    damage_catalog(catalog, kind)
    before = sha(catalog)
    base = ["--state-dir", str(state), "--model", str(tiny_model), "--device", "cpu"]
    runner = CliRunner()
    for args in (["index", str(library / "pics")], ["search", "--direct", "a photo"]):
        result = runner.invoke(cli, base + args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        one_clear_line(result.output, catalog)
        assert sha(catalog) == before, "the user's catalog must never be replaced or repaired silently"


@pytest.mark.parametrize("kind", ["pages", "foreign"])
def test_imgd_run_refuses_a_damaged_or_foreign_catalog(library, tmp_path, tiny_model, kind):
    state = copy_state(library, tmp_path / "state")
    catalog = state / "catalog.db"
    damage_catalog(catalog, kind)
    before = sha(catalog)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    command = [*IMGD, "--state-dir", str(state), "--model", str(tiny_model), "--device", "cpu", "run"]
    result = subprocess.run([*command, str(library / "pics")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    one_clear_line(result.stderr, catalog)
    assert sha(catalog) == before


@pytest.mark.parametrize("kind", ["pages", "foreign"])
def test_index_rebuild_sets_the_damaged_catalog_aside_and_indexes_anew(library, tmp_path, tiny_model, kind):
    state = copy_state(library, tmp_path / "state")
    catalog = state / "catalog.db"
    damage_catalog(catalog, kind)
    damaged = catalog.read_bytes()
    pics = library / "pics"
    base = ["--state-dir", str(state), "--model", str(tiny_model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*base, "index", "--rebuild", str(pics)])
    assert result.exit_code == 0, (result.output, result.exception)
    aside = list(state.glob("catalog.db.broken-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))], list(state.iterdir())
    kept = next(p for p in aside if p.name.startswith("catalog.db.broken-"))
    assert kept.read_bytes() == damaged, "the damaged catalog is kept, byte for byte, for the user"
    check_invariants(state, [pics], tiny_model)
