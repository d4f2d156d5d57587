"""Changing the model without losing search: new vectors beside the old, newest first, one switch,
resumable, given up by asking for the old model again. Real catalogs, indexes and models (two tiny
random CLIPs of different widths), real `imgd index` and real daemons killed midway."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import DaemonProcess, check_invariants, wait_until
from imgd.cli.main import cli
from imgd.daemon.api import client
from imgd.daemon.embedders import load_embedder
from imgd.daemon.errors import ModelMismatch
from imgd.daemon.protocol import Options, SearchRequest, Term
from imgd.daemon.search.query import SwitchLock
from imgd.daemon.service.library import open_library, open_searcher
from imgd.daemon.store.catalog import Catalog
from PIL import Image

QUERIES = ("a cat", "red", "a car on a road")


@pytest.fixture(scope="module")
def wide(wide_model: Path):
    return load_embedder(str(wide_model), device="cpu", batch_size=8)


def make_pictures(folder: Path, count: int) -> list[Path]:
    """Pictures with mtimes one minute apart, the last one newest."""
    paths = []
    for i in range(count):
        path = write_image(folder / f"p{i:02d}.png", seed=i)
        os.utime(path, ns=(1_700_000_000_000_000_000 + i * 60_000_000_000,) * 2)
        paths.append(path)
    return paths


def index_with(config, embedder, folder: Path, **kwargs) -> None:
    library = open_library(config, embedder, **kwargs)
    try:
        library.engine.reconcile([str(folder)])
        library.engine.save_index()
    finally:
        library.close()


def answers(config, embedder) -> list[list[tuple[str, float]]]:
    """Each query's top 5 (path, score) on the direct path with `embedder`."""
    searcher = open_searcher(config, lambda name: embedder)
    found = []
    for text in QUERIES:
        hits = searcher.search(SearchRequest(terms=(Term("text", text),), options=Options(k=5)))
        found.append([(hit["path"], round(hit["score"], 4)) for hit in hits])
    return found


def stored(config) -> tuple[tuple[str, int] | None, dict[int, bytes], int]:
    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        vectors = dict(catalog.conn.execute("SELECT content_id, vector FROM vectors"))
        done = catalog.conn.execute("SELECT count(*) FROM next_vectors").fetchone()[0]
        return catalog.model_info(), vectors, done
    finally:
        catalog.close()


@pytest.fixture
def library_of_a(tmp_path, make_config, embedder):
    """24 pictures indexed with the tiny model, and the fresh-index answers of the wide one to compare with."""
    pics = tmp_path / "pics"
    make_pictures(pics, 24)
    config = make_config()
    index_with(config, embedder, pics)
    return pics, config


def reference(tmp_path, make_config, wide, pics: Path):
    """What a library indexed from scratch with the wide model answers."""
    config = make_config(state_dir=tmp_path / "reference-state", model=wide.name)
    index_with(config, wide, pics)
    return answers(config, wide)


def test_searches_use_the_old_vectors_until_every_image_has_a_new_one(
    library_of_a, tmp_path, make_config, embedder, wide
):
    pics, config = library_of_a
    before = answers(config, embedder)
    model_before, vectors_before, _ = stored(config)
    changed = make_config(model=wide.name)

    library = open_library(changed, wide, previous=lambda name: embedder)
    try:
        assert library.reembedding and library.engine.embedder is embedder
        assert library.engine.reembed_step() == 8  # one batch
        # Midway the catalog, the saved index and every search are still the old model's.
        assert stored(config) == (model_before, vectors_before, 8)
        assert answers(config, embedder) == before
        while library.engine.reembed_step():
            pass
        assert stored(config)[:2] == (model_before, vectors_before)  # all 24 written, none live yet
        assert library.engine.finish_change() == []
        assert library.engine.embedder is wide and library.index.dim == wide.dim == 48
        library.engine.save_index()
    finally:
        library.close()

    model_after, vectors_after, pending = stored(config)
    assert model_after == (wide.name, 48) and pending == 0
    assert sorted(vectors_after) == sorted(vectors_before)  # same contents, same ids: nothing re-indexed
    assert {len(blob) for blob in vectors_after.values()} == {48 * 2}
    assert answers(changed, wide) == reference(tmp_path, make_config, wide, pics)


def test_an_interrupted_change_goes_on_where_it_stopped(library_of_a, tmp_path, make_config, embedder, wide, caplog):
    pics, _ = library_of_a
    changed = make_config(model=wide.name)
    library = open_library(changed, wide, previous=lambda name: embedder)
    library.engine.reembed_step()
    library.engine.reembed_step()
    library.close()  # as a crash leaves it: each batch is committed

    caplog.set_level(logging.INFO, logger="imgd")
    library = open_library(changed, wide, previous=lambda name: embedder)
    try:
        change = library.engine.change
        assert change.resumed_from == 16
        steps = []
        while count := library.engine.reembed_step():
            steps.append(count)
        assert steps == [8]  # only the 8 left, not the 24
        library.engine.finish_change()
        library.engine.save_index()
    finally:
        library.close()
    assert "going on re-embedding 24 images beside the old vectors (16 done)" in caplog.text
    assert "8 images re-embedded by this run" in caplog.text and "16 before it" in caplog.text
    assert answers(changed, wide) == reference(tmp_path, make_config, wide, pics)


def test_the_newest_photos_get_their_new_vectors_first(tmp_path, make_config, embedder, wide):
    pics = tmp_path / "pics"
    paths = make_pictures(pics, 20)
    # One photo says in its EXIF that it was taken after every file's mtime: it goes first.
    jpeg = paths[3].with_suffix(".jpg")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2030:01:01 10:00:00"
    Image.open(paths[3]).convert("RGB").save(jpeg, exif=exif.tobytes())
    paths[3].unlink()
    os.utime(jpeg, ns=(1_600_000_000_000_000_000,) * 2)  # an old file holding a recent photo
    config = make_config()
    index_with(config, embedder, pics)

    library = open_library(make_config(model=wide.name), wide, previous=lambda name: embedder)
    try:
        library.engine.reembed_step()
        catalog = library.catalog
        first = catalog.conn.execute(
            "SELECT v.content_id FROM next_vectors n JOIN vectors v ON v.id = n.vector_id"
        ).fetchall()
        got = sorted(path for (cid,) in first for path in catalog.paths_for([cid])[cid])
    finally:
        library.close()
    newest = sorted([str(jpeg), *(str(p) for p in paths[-7:])])
    assert got == newest


def test_new_files_during_a_change_are_searchable_at_once_and_after_the_switch(
    library_of_a, tmp_path, make_config, embedder, wide
):
    pics, config = library_of_a
    changed = make_config(model=wide.name)
    library = open_library(changed, wide, previous=lambda name: embedder)
    try:
        library.engine.reembed_step()
        arrived = write_image(pics / "arrived.png", seed=500)
        assert library.engine.upsert([str(arrived)]).added == 1
        # Embedded by both: found by its own picture now (old model), and already beside the new vectors.
        searcher = open_searcher(config, lambda name: embedder)
        image_hit = searcher.search(SearchRequest(terms=(Term("image", str(arrived)),), options=Options(k=1)))
        assert image_hit[0]["path"] == str(arrived) and image_hit[0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert stored(config)[2] == 8 + 1
        while library.engine.reembed_step():
            pass
        library.engine.finish_change()
        library.engine.save_index()
    finally:
        library.close()
    assert answers(changed, wide) == reference(tmp_path, make_config, wide, pics)
    check_invariants(config.state_dir, [pics], Path(wide.name))


def test_an_image_unreadable_at_the_switch_is_dropped_and_its_file_looked_at_again(
    library_of_a, make_config, embedder, wide
):
    pics, config = library_of_a
    spoiled = pics / "p00.png"  # the oldest: re-embedded last
    changed = make_config(model=wide.name)
    library = open_library(changed, wide, previous=lambda name: embedder)
    try:
        library.engine.reembed_step()
        spoiled.write_bytes(b"not an image any more")  # unseen: no watcher here
        while library.engine.reembed_step():
            pass
        assert len(library.engine.change.failed) == 1
        dropped = library.engine.finish_change()
        assert len(dropped) == 1
        record = library.catalog.get_file(str(spoiled))
        assert record.content_id is None and record.size == -1  # kept, to be looked at anew
        summary = library.engine.reconcile([str(pics)])
        assert summary.failed == 1 and summary.unchanged == 23
        library.engine.save_index()
    finally:
        library.close()
    check_invariants(config.state_dir, [pics], Path(wide.name), failed=[spoiled])


def test_asking_for_the_old_model_again_gives_the_change_up(library_of_a, make_config, embedder, wide, caplog):
    _, config = library_of_a
    library = open_library(make_config(model=wide.name), wide, previous=lambda name: embedder)
    library.engine.reembed_step()
    library.close()
    model, vectors, _ = stored(config)

    caplog.set_level(logging.WARNING, logger="imgd")
    library = open_library(config, embedder)
    try:
        assert not library.reembedding and library.engine.change is None
        assert library.catalog.model_change() is None
    finally:
        library.close()
    assert stored(config) == (model, vectors, 0)
    assert "gave up the change to model" in caplog.text and "8 images re-embedded" in caplog.text


def test_a_change_to_a_third_model_starts_over(library_of_a, tmp_path, make_config, embedder, wide):
    from clipkit import build_clip

    _, config = library_of_a
    library = open_library(make_config(model=wide.name), wide, previous=lambda name: embedder)
    library.engine.reembed_step()
    library.close()
    third = load_embedder(str(build_clip(tmp_path / "third", seed=3)), device="cpu", batch_size=8)
    library = open_library(make_config(model=third.name), third, previous=lambda name: embedder)
    try:
        assert library.engine.change.resumed_from == 0
        assert library.catalog.model_change()[0] == third.name
        assert stored(config)[2] == 0
    finally:
        library.close()


def test_a_changed_model_is_refused_without_a_way_to_change(library_of_a, make_config, wide):
    with pytest.raises(ModelMismatch, match=r"imgd index --reembed DIR\.\.\..*start `imgd run` with the new model"):
        open_library(make_config(model=wide.name), wide)


def test_the_daemon_refuses_a_change_when_the_old_model_cannot_be_loaded(library_of_a, make_config, wide):
    from imgd.daemon.errors import ModelUnavailable

    def gone(name: str):
        raise ModelUnavailable(f"{name}: no such folder")

    _, config = library_of_a
    with pytest.raises(ModelMismatch) as caught:
        open_library(make_config(model=wide.name), wide, previous=gone)
    message = str(caught.value)
    assert "cannot be loaded (" in message and "no such folder" in message and "imgd index --reembed" in message
    assert stored(config)[2] == 0  # nothing started


def test_an_index_file_saved_before_the_switch_is_rebuilt_not_patched(library_of_a, tmp_path, make_config, embedder):
    """A crash between the switch's commit and the next save leaves an index file of the old vectors
    under the same content ids; with a model of the same width only the catalog's new identity tells."""
    from clipkit import build_clip

    pics, config = library_of_a
    third = load_embedder(str(build_clip(tmp_path / "third", seed=3)), device="cpu", batch_size=8)
    assert third.dim == embedder.dim
    changed = make_config(model=third.name)
    library = open_library(changed, third, previous=lambda name: embedder)
    try:
        while library.engine.reembed_step():
            pass
        library.engine.finish_change()  # and no save: the daemon was killed right here
    finally:
        library.index.dirty = False
        library.close()

    expected = make_config(state_dir=tmp_path / "reference-state", model=third.name)
    index_with(expected, third, pics)
    assert answers(changed, third) == answers(expected, third)


def test_searches_wait_for_the_switch_then_use_the_new_model(library_of_a, tmp_path, embedder):
    from clipkit import build_clip

    _, config = library_of_a
    third = load_embedder(str(build_clip(tmp_path / "third", seed=3)), device="cpu", batch_size=8)
    searcher = open_searcher(config, lambda name: embedder)
    request = SearchRequest(terms=(Term("text", "a cat"),), options=Options(k=3))
    searcher.search(request)
    assert np.allclose(searcher.text_vector("a cat"), embedder.encode_texts(["a cat"])[0])
    answered = threading.Event()

    def search() -> None:
        searcher.search(request)
        answered.set()

    with searcher.switching(third):
        waiting = threading.Thread(target=search)
        waiting.start()
        assert not answered.wait(0.3)  # held off while catalog and index change
    waiting.join(10)
    assert answered.is_set()
    # The cached query vector of the old model is gone: the same words now go through the new one.
    assert np.allclose(searcher.text_vector("a cat"), third.encode_texts(["a cat"])[0])


def test_status_pace_counts_the_wall_clock_so_pauses_lengthen_the_time_left(library_of_a, make_config, wide):
    from concurrent.futures import ThreadPoolExecutor

    from imgd.daemon.ingest.modelchange import ModelChange
    from imgd.daemon.store.catalog import Catalog

    _, config = library_of_a
    now = [100.0]
    catalog = Catalog(config.catalog_path)
    try:
        with ThreadPoolExecutor(2) as pool:
            change = ModelChange(catalog, wide, pool, config.max_image_pixels, monotonic=lambda: now[0])
            assert change.pace(0, 24) == {"failed": 0, "rate": 0.0, "eta_s": None}
            change.step(8)
            now[0] += 2.0  # a batch, then a rest (reembed_pause) or other work
            change.step(8)
            now[0] += 2.0
            assert change.pace(16, 24) == {"failed": 0, "rate": 4.0, "eta_s": 2.0}  # 16 in 4 s; 8 left
    finally:
        catalog.close()


def test_the_worker_rests_reembed_pause_between_batches_then_switches(library_of_a, make_config, embedder, wide):
    import queue

    from imgd.daemon.ingest.worker import Worker

    _, config = library_of_a
    now = [0.0]
    library = open_library(make_config(model=wide.name), wide, previous=lambda name: embedder)
    worker = Worker(library.engine, [], queue.Queue(), settle_seconds=0.0, monotonic=lambda: now[0], reembed_pause=60.0)
    worker.start(initial_reconcile=False)
    try:
        wait_until(lambda: stored(config)[2] == 8, timeout=30, what="the first batch")
        time.sleep(0.5)
        assert stored(config)[2] == 8  # resting: the clock has not moved on by reembed_pause
        assert worker.stats.busy == "changing model" and not worker.idle.is_set()
        for done in (16, 24):
            now[0] += 61
            wait_until(lambda done=done: stored(config)[2] == done, timeout=30, what=f"{done} re-embedded")
        assert library.engine.change is not None  # every image has its vector; the switch waits for the next turn
        now[0] += 61
        assert worker.idle.wait(30)
        assert library.engine.change is None and stored(config)[0] == (wide.name, 48)
    finally:
        worker.stop()
        library.close()


def test_a_search_never_overlaps_a_switch():
    lock = SwitchLock()
    events: list[str] = []
    searching = threading.Event()
    release = threading.Event()

    def search() -> None:
        with lock.shared():
            events.append("search start")
            searching.set()
            release.wait(5)
            events.append("search end")

    def switch() -> None:
        with lock.exclusive():
            events.append("switch")

    first = threading.Thread(target=search)
    first.start()
    searching.wait(5)
    switcher = threading.Thread(target=switch)
    switcher.start()
    time.sleep(0.2)
    assert events == ["search start"]  # the switch waits for the search in flight
    searching.clear()
    late = threading.Thread(target=search)
    late.start()
    time.sleep(0.2)
    assert events == ["search start"]  # and a search arriving meanwhile waits for the switch
    release.set()
    for thread in (first, switcher, late):
        thread.join(5)
    assert events == ["search start", "search end", "switch", "search start", "search end"]


# -- the command line ------------------------------------------------------------------------------


def test_imgd_index_reembed_changes_the_model_and_a_rerun_finishes_an_interrupted_change(
    library_of_a, tmp_path, make_config, embedder, wide
):
    pics, config = library_of_a
    state = ["--state-dir", str(config.state_dir)]
    library = open_library(make_config(model=wide.name), wide, reembed=True)
    library.engine.reembed_step()
    library.close()  # an `imgd --model WIDE index --reembed` stopped by Ctrl-C after one batch

    runner = CliRunner()
    status = runner.invoke(cli, [*state, "status"])
    assert status.exit_code == 0, status.output
    assert f"model change: to {wide.name}, 8 of 24 images re-embedded (33%)" in status.stdout
    as_json = json.loads(runner.invoke(cli, [*state, "status", "--json"]).stdout)
    assert as_json["model"]["change"] == {"to": wide.name, "dim": 48, "done": 8, "total": 24}

    # No --model: the rerun goes on with the change under way rather than the catalog's model.
    result = runner.invoke(cli, [*state, "index", str(pics)])
    assert result.exit_code == 0, result.output
    assert f"switched to model {wide.name}: 24 images re-embedded" in result.stderr
    assert "24 unchanged" in result.stderr
    search = runner.invoke(cli, [*state, "search", "--direct", "--json", "-k", "5", "a cat"])
    assert search.exit_code == 0, search.output
    expected = reference(tmp_path, make_config, wide, pics)[0]
    assert [(hit["path"], round(hit["score"], 4)) for hit in json.loads(search.stdout)] == expected


# -- the daemon ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_changes_models_in_the_background_and_survives_sigkill(
    tmp_path, tiny_model, wide_model, make_config, wide
):
    pics = tmp_path / "pics"
    make_pictures(pics, 60)
    with DaemonProcess(tmp_path, tiny_model, [pics]) as first:
        first.start()
        first.wait_idle()
        old_answer = first_hits(first)
        assert first.stop() == 0

    # The same state folder, now with the wide model: slow batches, so there is a midway to kill it in.
    with DaemonProcess(tmp_path, wide_model, [pics], IMGD_BATCH_SIZE="4", IMGD_REEMBED_PAUSE="0.3") as changing:
        changing.start()
        status = wait_until(lambda: midway(changing), timeout=60, what="the change to be under way")
        assert status["model"]["name"] == str(tiny_model)  # searches go on with the old model
        assert status["daemon"]["state"] == "changing model"
        assert first_hits(changing) == old_answer
        arrived = write_image(pics / "arrived.png", seed=900)
        wait_until(lambda: changing.catalog_paths().get(str(arrived)), timeout=30, what="the new file to be indexed")
        hits = changing.search_image(arrived)
        assert hits[0]["path"] == str(arrived)  # searchable at once, with the old model
        done = changing.status()["model"]["change"]["done"]
        changing.stop(signal.SIGKILL)  # midway through the change: the daemon below must resume it
    assert 0 < done < 61

    with DaemonProcess(tmp_path, wide_model, [pics], IMGD_BATCH_SIZE="4") as resumed:
        resumed.start()
        wait_until(lambda: "switched to model" in resumed.log(), timeout=120, what="the switch")
        status = resumed.wait_idle()
        assert status["model"]["name"] == str(wide_model) and status["model"]["dim"] == 48
        assert "change" not in status["model"]
        new_answer = first_hits(resumed)
        assert resumed.stop() == 0
    log = resumed.log()
    assert "going on re-embedding 61 images beside the old vectors" in log
    assert "before it" in log  # resumed, not started over
    check_invariants(tmp_path / "state", [pics], wide_model)

    config = make_config(state_dir=tmp_path / "reference-state", model=str(wide_model))
    index_with(config, wide, pics)
    assert new_answer == [(hit[0], round(hit[1], 4)) for hit in answers(config, wide)[0]]


def midway(daemon: DaemonProcess) -> dict | None:
    status = daemon.status()
    change = (status.get("model") or {}).get("change")
    return status if change and 0 < change["done"] < change["total"] else None


def first_hits(daemon: DaemonProcess) -> list[tuple[str, float]]:
    return [(hit["path"], round(hit["score"], 4)) for hit in client.search(daemon.socket, 5, text=QUERIES[0])]


@pytest.mark.slow
def test_on_onnx_the_old_model_frees_its_image_session_during_a_change_and_takes_new_files(
    tmp_path, tiny_model, wide_model, exported_models
):
    """The old model only embeds new files while the library is re-embedded: it idles like a daemon does."""
    import shutil

    pics = tmp_path / "pics"
    make_pictures(pics, 60)
    onnx = {"IMGD_BACKEND": "onnx", "IMGD_IDLE_UNLOAD": "1"}
    with DaemonProcess(tmp_path, tiny_model, [pics], **onnx) as first:
        shutil.copytree(exported_models, first.state_dir / "models")
        first.start()
        first.wait_idle()
        assert first.stop() == 0

    with DaemonProcess(tmp_path, wide_model, [pics], IMGD_BATCH_SIZE="2", IMGD_REEMBED_PAUSE="0.3", **onnx) as changing:
        changing.start()
        # The image model opens with the first picture to embed, so during the change it is closed ...
        wait_until(
            lambda: (model := changing.status()["model"]).get("change") and not model["image_loaded"],
            timeout=60,
            what="the change under way with the old model's image session closed",
        )
        arrived = write_image(pics / "arrived.png", seed=900)
        wait_until(lambda: changing.catalog_paths().get(str(arrived)), timeout=30, what="the new file indexed")
        assert "switched to model" not in changing.log()  # it arrived during the change
        # ... opened for a new file, and freed again once idle: still during the change.
        logged = wait_until(
            lambda: next((text for text in [changing.log()] if "freed the image model after" in text), None),
            timeout=60,
            what="the old model's image session freed during the change",
        )
        assert "switched to model" not in logged.split("freed the image model after")[0]
        assert changing.search_image(arrived)[0]["path"] == str(arrived)
        wait_until(lambda: "switched to model" in changing.log(), timeout=120, what="the switch")
        changing.wait_idle()
        assert changing.stop() == 0
    check_invariants(tmp_path / "state", [pics], wide_model)
