"""Saved searches' parts on their own: the event bus, the matcher, file actions and hooks, the stored rows."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.alertprotocol import AlertAddRequest, AlertLogRequest, alert_name
from imgd.daemon.protocol import Filters, RequestError, SearchRequest, Term
from imgd.daemon.search.filters import from_request
from imgd.daemon.service import actions
from imgd.daemon.service.alerts import Matcher
from imgd.daemon.service.events import EventBus
from imgd.daemon.store import alerts as rows
from imgd.daemon.store.catalog import Catalog
from imgd.daemon.store.records import ImageMeta

DATA = Path(__file__).resolve().parent.parent / "data"
QUERY = SearchRequest(terms=(Term("text", "a red circle"),))


# -- the event bus ---------------------------------------------------------------------------------


def test_a_reader_that_keeps_up_gets_every_event_in_order() -> None:
    bus = EventBus(buffer=4)
    sub = bus.subscribe()
    got = []
    for i in range(20):
        bus.publish("indexed", path=f"/p{i}")
        got.append(sub.get(timeout=1))
    assert [e["path"] for e in got] == [f"/p{i}" for i in range(20)]
    assert sub.get(timeout=0.01) is None


def test_a_stalled_reader_is_told_how_many_it_missed_and_never_slows_the_publisher() -> None:
    bus = EventBus(buffer=3)
    stalled, keeping_up = bus.subscribe(), bus.subscribe(buffer=100)
    started = time.monotonic()
    for i in range(10):
        bus.publish("moved", path=f"/p{i}")
    assert time.monotonic() - started < 0.5
    first = stalled.get(timeout=1)
    assert first is not None and first["event"] == "dropped" and first["count"] == 7
    assert [stalled.get(timeout=1)["path"] for _ in range(3)] == ["/p0", "/p1", "/p2"]
    assert stalled.get(timeout=0.01) is None
    assert len([keeping_up.get(timeout=1) for _ in range(10)]) == 10
    stalled.close()
    bus.publish("removed", path="/gone")
    assert stalled.get(timeout=0.01) is None  # unsubscribed: nothing more arrives


# -- matching --------------------------------------------------------------------------------------


def test_the_matcher_scores_every_saved_search_at_once_and_a_video_at_its_best_frame() -> None:
    axes = np.eye(4, dtype=np.float32)
    matcher = Matcher(["a", "b", "c"], axes[:3], np.array([0.5, 0.5, 0.99]))
    frames = np.array([[0.1, 0.9, 0, 0], [0.8, 0.2, 0, 0]], dtype=np.float32)  # a video: two frames
    assert matcher.matches(frames) == [("a", pytest.approx(0.8)), ("b", pytest.approx(0.9))]
    assert matcher.matches(frames[:1]) == [("b", pytest.approx(0.9))]  # a photo: its one vector
    assert Matcher([], np.zeros((0, 4)), np.zeros(0)).matches(frames) == []


def test_filters_are_checked_on_the_one_files_row(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.ensure_model("m", 4)
    wide = ImageMeta(format="png", width=200, height=100, make="Canon", model="EOS")
    content_id, _ = catalog.add_photo("a" * 64, np.eye(4, dtype=np.float32)[0], 200, 100, wide)
    catalog.set_file("/photos/in/a.png", 10, 1, content_id)
    catalog.set_file("/photos/out/a.png", 10, 1, content_id)

    def passes(path: str, **given: object) -> bool:
        chosen = from_request(Filters(**given), lambda: rows.camera_of(catalog, content_id))
        return rows.path_passes(catalog, path, [f.clause() for f in chosen])

    assert passes("/photos/in/a.png", folders=("/photos/in",), orientation="landscape", camera="canon")
    assert not passes("/photos/out/a.png", folders=("/photos/in",))  # its copy elsewhere does not count
    assert not passes("/photos/in/a.png", orientation="portrait")
    assert not passes("/photos/in/a.png", camera="nikon")
    assert not passes("/photos/in/missing.png")
    catalog.close()


# -- stored rows -----------------------------------------------------------------------------------


def test_saved_searches_and_their_log_round_trip_and_the_log_stays_short(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    request = AlertAddRequest(name="reds", query=QUERY, file_action="move", folder="/sorted")
    rows.save(catalog, "reds", request.query.to_message(), {"folder": "/sorted", "file_action": "move"})
    (row,) = rows.saved(catalog)
    assert row.name == "reds" and row.query["terms"][0]["value"] == "a red circle"
    for i in range(rows.LOG_KEEP + 5):
        rows.log_action(catalog, "reds", f"/p{i}", 0.5, "move", "ok")
    log = rows.action_log(catalog, "reds", limit=500)
    assert len(log) == rows.LOG_KEEP and log[-1]["path"] == f"/p{rows.LOG_KEEP + 4}"
    assert catalog.conn.execute("SELECT count(*) FROM alert_log").fetchone()[0] == rows.LOG_KEEP  # trimmed
    assert rows.remove(catalog, "reds") and not rows.saved(catalog) and not rows.remove(catalog, "reds")
    catalog.close()


def test_an_older_catalog_opened_read_only_has_no_saved_searches(tmp_path: Path) -> None:
    shutil.copy(DATA / "catalog-v3.db", tmp_path / "catalog.db")
    catalog = Catalog(tmp_path / "catalog.db", readonly=True)
    assert catalog.schema_version < 5
    assert rows.saved(catalog) == [] and rows.action_log(catalog) == []
    catalog.close()


# -- requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {"name": "bad name"},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "ok", "file_action": "move"},  # no folder
        {"name": "ok", "folder": "/x"},  # no action
        {"name": "ok", "file_action": "shred", "folder": "/x"},
        {"name": "ok", "file_action": "copy", "folder": "relative"},
        {"name": "ok", "timeout": 0},
        {"name": "ok", "command": "rm -rf /"},  # a string is no argv: it would need a shell
        {"name": "ok", "query": {"terms": []}},
    ],
)
def test_a_bad_saved_search_is_refused_in_one_sentence(given: dict[str, object]) -> None:
    with pytest.raises(RequestError) as raised:
        AlertAddRequest(**{"query": QUERY, **given})  # type: ignore[arg-type]
    assert str(raised.value).endswith(".") and "\n" not in str(raised.value)


def test_a_saved_search_request_survives_the_socket() -> None:
    from imgd.daemon.protocol import parse

    request = AlertAddRequest(name="r-1.x", query=QUERY, command=("notify-send", "hi"), timeout=5)
    import json

    again = parse(json.loads(json.dumps(request.to_message())))
    assert again == request
    with pytest.raises(RequestError):
        AlertLogRequest(limit=0)
    assert alert_name("a_b.c-9") == "a_b.c-9"


# -- actions ---------------------------------------------------------------------------------------


def test_file_actions_never_overwrite_and_a_move_is_a_rename(tmp_path: Path) -> None:
    src, folder = tmp_path / "in" / "photo.jpg", tmp_path / "out"
    src.parent.mkdir()
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"someone else's")
    src.write_bytes(b"mine")
    inode = src.stat().st_ino
    copied = actions.place("copy", str(src), str(folder))
    assert copied.outcome == "ok" and copied.path == str(folder / "photo-1.jpg")
    linked = actions.place("link", str(src), str(folder))
    assert linked.path == str(folder / "photo-2.jpg") and os.readlink(linked.path) == str(src)
    moved = actions.place("move", str(src), str(folder))
    assert moved.path == str(folder / "photo-3.jpg") and not src.exists()
    assert os.stat(moved.path).st_ino == inode  # renamed, not copied: the watcher sees a move
    assert (folder / "photo.jpg").read_bytes() == b"someone else's"
    assert (folder / "photo-1.jpg").read_bytes() == b"mine"
    gone = actions.place("move", str(src), str(folder))
    assert gone.outcome == "failed" and "could not move" in gone.detail


def test_a_hook_gets_the_path_and_score_and_a_hanging_one_is_killed_at_its_limit(tmp_path: Path) -> None:
    script = "import os, sys; print(sys.argv[1], os.environ['IMGD_SCORE'], os.environ['IMGD_ALERT'])"
    done = actions.run_hook((sys.executable, "-c", script), "/p/x y.jpg", 0.31234, "reds", 30)
    assert done.outcome == "ok" and done.detail == "output: /p/x y.jpg 0.3123 reds"
    started = time.monotonic()
    child = tmp_path / "child-alive"
    hang = f"sleep 30 & echo $! > {child}; wait"
    killed = actions.run_hook(("sh", "-c", hang), "/p", 0.5, "hangs", 0.5)
    assert killed.outcome == "killed" and time.monotonic() - started < 10
    pid = int(child.read_text())

    def dead() -> bool:  # gone, or a zombie its new parent has not reaped yet
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 5
    while not dead() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dead()  # its children went with it
    failed = actions.run_hook(("sh", "-c", "echo oops; exit 3"), "/p", 0.5, "fails", 5)
    assert failed.outcome == "failed" and failed.detail == "exit 3; output: oops"
    missing = actions.run_hook(("/no/such/program",), "/p", 0.5, "x", 5)
    assert missing.outcome == "failed" and "could not run /no/such/program" in missing.detail


def test_hooks_run_in_parallel_threads_safely() -> None:
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(actions.run_hook(("true",), "/p", 0.1, "t", 5).outcome))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 4
