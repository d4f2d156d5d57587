"""migrations: an older catalog is upgraded in place at open, a newer one refused, a failed step undone.

Most tests start from tests/data/catalog-v1.db, written by `imgd index` of the release before
migrations existed (schema 1) over tests/data/v1-images. Each test works on a copy of both.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemonkit import DaemonProcess, check_invariants, wait_until
from imgd.cli.main import cli
from imgd.daemon.errors import CatalogError
from imgd.daemon.protocol import Options, SearchRequest, Term
from imgd.daemon.service.library import open_library, open_searcher
from imgd.daemon.store import migrations
from imgd.daemon.store.catalog import MEDIA_VERSION, SCHEMA_VERSION, Catalog

DATA = Path(__file__).parent.parent / "data"
V1_ROOT = "/tmp/imgd-v1/images"  # where the kept catalog's images were when it was made


@dataclass
class V1Copy:
    state: Path
    images: Path

    @property
    def catalog(self) -> Path:
        return self.state / "catalog.db"

    def image(self, name: str) -> str:
        return str(self.images / name)


def raw(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """Look at the file with plain sqlite3, the way no imgd code does."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.fixture
def v1(tmp_path: Path, state_dir: Path, tiny_model: Path) -> V1Copy:
    """The kept schema-1 catalog and its images, as if that library had lived at tmp_path/images.

    The paths are rewritten to this copy's folder, the model to this run's copy of the same tiny
    model, and each image gets the mtime the catalog recorded, so a reconcile finds nothing changed.
    """
    copy = V1Copy(state_dir, tmp_path / "images")
    shutil.copyfile(DATA / "catalog-v1.db", copy.catalog)
    relocate(copy.catalog, copy.images, V1_ROOT, {"model": str(tiny_model)})
    return copy


def relocate(catalog: Path, images: Path, root: str, meta: dict[str, str]) -> None:
    """Copy the kept images to `images` and point a kept catalog's paths there from `root`, each file with
    the mtime its row records (so a reconcile finds nothing changed); then set the given meta keys."""
    shutil.copytree(DATA / "v1-images", images)
    conn = sqlite3.connect(catalog)
    with conn:
        for path, mtime_ns in conn.execute("SELECT path, mtime_ns FROM files").fetchall():
            moved = os.fsencode(images) + path[len(root) :]
            conn.execute("UPDATE files SET path = ? WHERE path = ?", (moved, path))
            os.utime(moved, ns=(mtime_ns, mtime_ns))
        for key, value in meta.items():
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


def snapshot(path: Path) -> dict[str, object]:
    """What must survive an upgrade untouched: paths, contents and their vectors, generation, identity."""
    return {
        "files": raw(path, "SELECT path, content_id, size, mtime_ns, status, error FROM files ORDER BY path"),
        "contents": raw(path, contents_sql(path)),
        "meta": dict(
            raw(path, "SELECT key, value FROM meta WHERE key IN ('generation', 'catalog_id', 'model', 'dim')")
        ),
    }


def contents_sql(path: Path) -> str:
    """Each content with its vector: from contents before schema 4, from its one vectors row after."""
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "vectors" not in tables:
        return "SELECT id, hash, width, height, vector FROM contents ORDER BY id"
    return (
        "SELECT c.id, c.hash, c.width, c.height, v.vector FROM contents c JOIN vectors v ON v.content_id = c.id "
        "ORDER BY c.id"
    )


def by_image(searcher, path: str, k: int) -> list[dict]:
    return searcher.search(SearchRequest(terms=(Term("image", path),), options=Options(k=k)))


class CountingEmbedder:
    """The real embedder, counting the images it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.images = 0

    def encode_images(self, images):
        self.images += len(images)
        return self.inner.encode_images(images)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


# -- the kept file ---------------------------------------------------------------------------------


def test_the_kept_catalog_really_is_schema_1(v1: V1Copy) -> None:
    tables = {r[0] for r in raw(v1.catalog, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "contents", "files", "sqlite_sequence"}
    assert raw(v1.catalog, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    assert raw(v1.catalog, "SELECT status, count(*) FROM files GROUP BY status") == [("failed", 1), ("ok", 4)]
    assert raw(v1.catalog, "SELECT count(*) FROM contents") == [(3,)]


def test_a_v1_catalog_is_upgraded_in_place_keeping_paths_vectors_and_identity(v1: V1Copy) -> None:
    before = snapshot(v1.catalog)

    catalog = Catalog(v1.catalog)
    try:
        assert catalog.schema_version == SCHEMA_VERSION == 11
        assert snapshot(v1.catalog) == before
        # Every content has its metadata row, sized from what v1 stored, waiting for its header to be read.
        assert raw(v1.catalog, "SELECT content_id, version, width, height FROM media ORDER BY content_id") == [
            (cid, 0, w, h) for cid, _, w, h, _ in before["contents"]
        ]
        assert catalog.media_backlog_count() == 3
        applied = raw(v1.catalog, "SELECT version, name, applied_at FROM migrations ORDER BY version")
        assert [(v, n) for v, n, _ in applied] == [(m.version, m.name) for m in migrations.MIGRATIONS]
        assert applied[0][2] is None  # run by the old release, before steps were recorded
        assert isinstance(applied[1][2], float)
    finally:
        catalog.close()

    again = Catalog(v1.catalog)  # a second open has nothing to do
    again.close()
    assert len(raw(v1.catalog, "SELECT * FROM migrations")) == SCHEMA_VERSION


def test_a_reader_searches_an_unmigrated_catalog_and_says_why_filters_wait(v1: V1Copy, make_config, embedder) -> None:
    reader = Catalog(v1.catalog, readonly=True)
    try:
        assert reader.schema_version == 1
        assert reader.counts() == {"files": 4, "failed": 1, "missing": 0, "contents": 3}
        assert reader.media_backlog_count() is None
        with pytest.raises(CatalogError, match=r"older imgd \(schema 1\).*`imgd index DIR` or start `imgd run`"):
            reader.media_for([v1.image("paris.jpg")])
    finally:
        reader.close()

    searcher = open_searcher(make_config(state_dir=v1.state), lambda name: embedder)
    try:
        hits = by_image(searcher, v1.image("rotated.jpg"), 4)
        assert hits[0]["path"] == v1.image("rotated.jpg") and hits[0]["score"] == pytest.approx(1.0, abs=1e-2)
    finally:
        searcher.catalog.close()
    assert raw(v1.catalog, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]


# -- refusing and failing --------------------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_a_catalog_from_a_newer_imgd_is_refused_and_left_alone(v1: V1Copy, readonly: bool) -> None:
    conn = sqlite3.connect(v1.catalog)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    before = v1.catalog.read_bytes()

    with pytest.raises(CatalogError) as caught:
        Catalog(v1.catalog, readonly=readonly)

    message = str(caught.value)
    assert f"newer imgd (schema {SCHEMA_VERSION + 1}" in message and "upgrade imgd" in message
    assert "\n" not in message
    assert v1.catalog.read_bytes() == before


def test_imgd_refuses_a_newer_catalog_in_one_sentence(v1: V1Copy, tiny_model: Path) -> None:
    conn = sqlite3.connect(v1.catalog)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    args = ["--state-dir", str(v1.state), "--model", str(tiny_model), "--device", "cpu"]
    for command in (["status"], ["index", str(v1.images)]):
        result = CliRunner().invoke(cli, [*args, *command])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and "newer imgd (schema 99" in result.stderr, result.stderr
        assert "Traceback" not in result.output


def test_a_step_that_fails_midway_leaves_the_catalog_at_the_previous_version(
    v1: V1Copy, monkeypatch: pytest.MonkeyPatch, make_config, embedder
) -> None:
    real = migrations.MIGRATIONS[1]

    def half_then_crash(conn: sqlite3.Connection) -> None:
        real.apply(conn)  # the table is created and filled ...
        raise RuntimeError("injected failure")  # ... and then the step dies

    failing = [migrations.MIGRATIONS[0], migrations.Migration(2, real.name, half_then_crash)]
    monkeypatch.setattr(migrations, "MIGRATIONS", failing)
    before = snapshot(v1.catalog)

    with pytest.raises(CatalogError, match="left unchanged at schema 1") as caught:
        Catalog(v1.catalog)
    assert "injected failure" in str(caught.value)

    tables = {r[0] for r in raw(v1.catalog, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "media" not in tables and "migrations" not in tables
    assert raw(v1.catalog, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    assert snapshot(v1.catalog) == before
    searcher = open_searcher(make_config(state_dir=v1.state), lambda name: embedder)  # still usable
    try:
        assert by_image(searcher, v1.image("plain.png"), 1)[0]["path"] == v1.image("plain.png")
    finally:
        searcher.catalog.close()

    monkeypatch.undo()
    catalog = Catalog(v1.catalog)  # the fixed release upgrades it
    try:
        assert catalog.schema_version == SCHEMA_VERSION
        assert snapshot(v1.catalog) == before
    finally:
        catalog.close()


@pytest.mark.slow
def test_a_process_killed_during_a_step_leaves_the_previous_version(v1: V1Copy, tmp_path: Path) -> None:
    """SIGKILL, not an exception: nothing gets to roll back, SQLite's journal must."""
    started = tmp_path / "started"
    script = textwrap.dedent(
        f"""
        import os, time
        from imgd.daemon.store import migrations
        from imgd.daemon.store.catalog import Catalog

        real = migrations.MIGRATIONS[1]

        def slow(conn):
            real.apply(conn)
            conn.execute("INSERT INTO media(content_id, width, height) VALUES (999, 1, 1)")
            open({str(started)!r}, "w").close()
            time.sleep(60)

        migrations.MIGRATIONS[1] = migrations.Migration(2, real.name, slow)
        Catalog({str(v1.catalog)!r})
        """
    )
    before = snapshot(v1.catalog)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = 60
        while not started.exists() and deadline > 0 and child.poll() is None:
            subprocess.run(["sleep", "0.1"])
            deadline -= 0.1
        assert started.exists(), "the child never reached the middle of the step"
    finally:
        child.kill()
        child.wait()

    assert snapshot(v1.catalog) == before
    catalog = Catalog(v1.catalog)
    try:
        assert catalog.schema_version == SCHEMA_VERSION
        assert raw(v1.catalog, "SELECT count(*) FROM media") == [(3,)]
    finally:
        catalog.close()


def test_a_new_catalog_runs_every_step_and_records_it(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    try:
        assert catalog.schema_version == SCHEMA_VERSION
        assert catalog.generation == 0 and len(catalog.catalog_id or "") == 32
        applied = raw(catalog.path, "SELECT version, applied_at FROM migrations ORDER BY version")
        assert [v for v, _ in applied] == list(range(1, SCHEMA_VERSION + 1))
        assert all(isinstance(at, float) for _, at in applied)
    finally:
        catalog.close()


def test_steps_are_numbered_without_gaps() -> None:
    assert [m.version for m in migrations.MIGRATIONS] == list(range(1, migrations.LATEST + 1))
    assert len({m.name for m in migrations.MIGRATIONS}) == len(migrations.MIGRATIONS)


# -- upgrading through the writers: open_library and `imgd index` ------------------------------


def expected_media(v1: V1Copy) -> dict[str, tuple]:
    return {
        v1.image("paris.jpg"): ("exif", "2021-06-05T14:03:22+02:00", 96, 64, "jpeg", "Canon", "Canon EOS R5"),
        v1.image("album/paris-copy.jpg"): (
            "exif",
            "2021-06-05T14:03:22+02:00",
            96,
            64,
            "jpeg",
            "Canon",
            "Canon EOS R5",
        ),
        v1.image("rotated.jpg"): ("exif", "2019-12-31T23:59:59", 64, 96, "jpeg", "Apple", "iPhone 12"),
        v1.image("plain.png"): ("mtime", None, 80, 80, "png", None, None),
    }


def check_backfilled(catalog: Catalog, v1: V1Copy) -> None:
    assert catalog.media_backlog_count() == 0
    found = catalog.media_for([*expected_media(v1), v1.image("broken.jpg")])
    assert set(found) == set(expected_media(v1))  # the failed file has no metadata
    for path, (source, taken, width, height, kind, make, model) in expected_media(v1).items():
        meta = found[path]
        assert (meta.taken_source, meta.width, meta.height, meta.file_type, meta.make, meta.model) == (
            source,
            width,
            height,
            kind,
            make,
            model,
        ), path
        if taken is not None:
            assert meta.taken == taken
    paris = found[v1.image("paris.jpg")]
    assert paris.lens == "RF24-105mm F4 L IS USM"
    assert (paris.latitude, paris.longitude) == (pytest.approx(48.858222, abs=1e-5), pytest.approx(2.2945, abs=1e-5))
    rotated = found[v1.image("rotated.jpg")]
    assert (rotated.latitude, rotated.longitude) == (
        pytest.approx(40.689167, abs=1e-5),
        pytest.approx(-74.044444, abs=1e-5),
    )
    plain = found[v1.image("plain.png")]
    mtime = os.stat(v1.image("plain.png")).st_mtime
    assert plain.taken is not None and plain.taken.startswith(
        __import__("datetime").datetime.fromtimestamp(mtime).strftime("%Y-%m-%dT%H:%M:%S")
    )


def test_open_library_upgrades_and_backfill_reads_headers_without_embedding(v1: V1Copy, make_config, embedder) -> None:
    before = snapshot(v1.catalog)
    counting = CountingEmbedder(embedder)
    lib = open_library(make_config(state_dir=v1.state), counting)
    try:
        summary = lib.engine.reconcile([v1.images])
        assert (summary.added, summary.updated, summary.failed, summary.unchanged) == (0, 0, 0, 5)
        assert lib.engine.backfill_all_media() == 3
        check_backfilled(lib.catalog, v1)
        assert lib.engine.backfill_all_media() == 0
    finally:
        lib.close()
    assert counting.images == 0
    assert snapshot(v1.catalog) == before  # paths, vectors, generation and identity as they were
    assert raw(v1.catalog, "SELECT DISTINCT version FROM media") == [(MEDIA_VERSION,)]


def test_imgd_index_upgrades_and_backfills_without_embedding(
    v1: V1Copy, tiny_model: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgd.cli.runtime as runtime

    counting = CountingEmbedder(embedder)
    monkeypatch.setattr(runtime, "load_embedder", lambda config, name=None: counting)
    before = snapshot(v1.catalog)
    args = ["--state-dir", str(v1.state), "--model", str(tiny_model), "--device", "cpu"]

    result = CliRunner().invoke(cli, [*args, "index", str(v1.images)])

    assert result.exit_code == 0, result.output
    assert "0 added, 0 updated, 0 moved, 0 removed, 0 failed, 5 unchanged" in result.stderr
    assert counting.images == 0
    assert snapshot(v1.catalog) == before
    catalog = Catalog(v1.catalog, readonly=True)
    try:
        check_backfilled(catalog, v1)
    finally:
        catalog.close()


def test_a_file_that_cannot_be_read_for_backfill_keeps_its_row(v1: V1Copy, make_config, embedder) -> None:
    lib = open_library(make_config(state_dir=v1.state), embedder)
    try:
        os.utime(v1.image("plain.png"), ns=(1, 1))  # changed since indexed: its header may be other bytes
        os.unlink(v1.image("rotated.jpg"))  # gone, its event not seen yet
        os.utime(v1.image("album/paris-copy.jpg"), ns=(1, 1))  # tried first; paris.jpg has the same bytes
        assert lib.engine.backfill_all_media() == 3

        assert lib.catalog.media_backlog_count() == 2  # tried again by the next run
        assert lib.catalog.content_media([lib.catalog.get_file(v1.image("paris.jpg")).content_id]).popitem()[
            1
        ].make == ("Canon")
        for name in ("plain.png", "rotated.jpg"):
            record = lib.catalog.get_file(v1.image(name))
            assert record is not None and record.status == "ok" and record.content_id is not None
            assert lib.catalog.vector(record.content_id) is not None
    finally:
        lib.close()


@pytest.mark.slow
def test_the_daemon_upgrades_and_backfills_in_the_background_without_embedding(
    v1: V1Copy, tmp_path: Path, tiny_model: Path
) -> None:
    before = snapshot(v1.catalog)
    with DaemonProcess(tmp_path, tiny_model, [v1.images]) as daemon:
        daemon.start()
        wait_until(
            lambda: daemon.status()["metadata"]["pending"] == 0, timeout=60, what="the metadata to be backfilled"
        )
        status = daemon.wait_idle()
        assert status["metadata"] == {"pending": 0, "schema": SCHEMA_VERSION}
        assert status["counts"] == {"files": 4, "failed": 1, "missing": 0, "contents": 3}
        assert daemon.stop() == 0
    assert snapshot(v1.catalog) == before  # nothing re-embedded: same contents, vectors and generation
    assert "indexed " not in daemon.log()
    assert "upgraded the catalog to schema 2" in daemon.log()
    catalog = Catalog(v1.catalog, readonly=True)
    try:
        check_backfilled(catalog, v1)
    finally:
        catalog.close()
    check_invariants(v1.state, [v1.images], tiny_model, failed=[v1.image("broken.jpg")])


def test_status_says_how_many_images_wait_for_their_metadata(v1: V1Copy) -> None:
    Catalog(v1.catalog).close()  # upgraded, not yet backfilled: as a daemon leaves it right after start
    result = CliRunner().invoke(cli, ["--state-dir", str(v1.state), "status"])
    assert result.exit_code == 0, result.output
    assert "metadata: 3 images indexed before imgd kept it, waiting for their headers to be read" in result.stdout
    as_json = CliRunner().invoke(cli, ["--state-dir", str(v1.state), "status", "--json"])
    assert '"pending": 3' in as_json.stdout


def test_the_saved_index_of_a_v1_catalog_is_still_served_after_the_upgrade(
    v1: V1Copy, make_config, embedder, caplog: pytest.LogCaptureFixture
) -> None:
    """The upgrade changes neither the catalog's identity nor its generation, so the index file stays valid."""
    shutil.copyfile(DATA / "index-v1.faiss", v1.state / "index.faiss")
    caplog.set_level(logging.INFO, logger="imgd")
    lib = open_library(make_config(state_dir=v1.state), embedder)
    try:
        assert len(lib.index) == 3
        assert "upgraded the catalog to schema 2" in caplog.text
        assert "rebuilding the index" not in caplog.text and "brought the saved index" not in caplog.text
    finally:
        lib.close()
