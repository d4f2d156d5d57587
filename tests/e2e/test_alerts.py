"""Saved searches and the event stream through a real daemon with the trained shapes model.

One daemon serves the module: a saved search stored before it starts (the catch-up), others added
through it, pictures dropped in, and an `imgd events --jsonl` reader beside it all along.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import IMGD, DaemonProcess, wait_until
from imgd.daemon.api import client
from imgd.daemon.protocol import PROTOCOL_VERSION
from shapekit import shape_image

pytestmark = pytest.mark.slow

MIN = "0.4"  # the shapes model scores its own caption's pictures ~0.45, the others below 0.35

HOOK = """
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"argv": sys.argv[2:], "score": os.environ["IMGD_SCORE"], "name": os.environ["IMGD_ALERT"]}))
    out.write("\\n")
"""


class Library:
    """The module's daemon, its folders, and the events its reader has seen so far."""

    def __init__(self, tmp: Path, daemon: DaemonProcess, root: Path, events_path: Path) -> None:
        self.tmp, self.daemon, self.root, self.events_path = tmp, daemon, root, events_path
        self.inbox, self.sorted = root / "inbox", root / "sorted"
        self.direct_list = ""  # `imgd alert list --json` answered without a daemon

    def imgd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*IMGD, *args], env=self.daemon.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def events(self) -> list[dict[str, Any]]:
        lines = self.events_path.read_text().splitlines() if self.events_path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_event(self, what: str, **fields: Any) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            return next(
                (e for e in self.events() if e["event"] == what and all(e.get(k) == v for k, v in fields.items())),
                None,
            )

        return wait_until(seen, timeout=60, what=f"a {what} event {fields}")

    def log(self, name: str) -> list[dict[str, Any]]:
        return json.loads(self.imgd("alert", "log", name, "--json").stdout)


def put(path: Path, colour: str, shape: str, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape_image(colour, shape, seed).save(path.with_suffix(".part.png"))
    os.replace(path.with_suffix(".part.png"), path)  # appears whole, as a finished download does
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, shapes_model: Path) -> Iterator[Library]:
    tmp = tmp_path_factory.mktemp("alerts")
    root = tmp / "photos"
    put(root / "old" / "square.png", "blue", "square", 1)
    put(root / "old" / "triangle.png", "green", "triangle", 1)
    with DaemonProcess(tmp, shapes_model, [root], IMGD_EVENT_BUFFER="64") as daemon:
        lib = Library(tmp, daemon, root, tmp / "events.jsonl")
        assert lib.imgd("index", str(root)).returncode == 0
        # Stored without a daemon (the direct path), before the pictures it acts on arrive.
        added = lib.imgd("alert", "add", "reds", "a red circle", "--move-to", str(lib.sorted), "--min-score", MIN)
        assert added.returncode == 0, added.stderr
        put(lib.inbox / "early.png", "red", "circle", 7)  # arrives while the daemon is stopped
        lib.direct_list = lib.imgd("alert", "list", "--json").stdout
        daemon.start()
        with open(lib.events_path, "wb") as out:
            reader = subprocess.Popen([*IMGD, "events", "--jsonl"], env=daemon.env, stdout=out, stderr=subprocess.PIPE)
        try:
            daemon.wait_idle()
            yield lib
        finally:
            reader.kill()
            reader.wait()


def test_catch_up_acts_on_pictures_that_came_while_stopped(library: Library) -> None:
    wait_until(lambda: (library.sorted / "early.png").exists(), timeout=60, what="early.png moved")
    assert not (library.inbox / "early.png").exists()
    entry = library.log("reds")[0]
    assert (entry["action"], entry["outcome"]) == ("move", "ok")


def test_a_saved_search_moves_a_red_circle_not_a_blue_square_and_keeps_its_vector(library: Library) -> None:
    wait_until(lambda: (library.sorted / "early.png").exists(), timeout=60, what="the catch-up")
    # A reader started after the catch-up sees this whole sequence.
    red = put(library.inbox / "red.png", "red", "circle", 1)
    blue = put(library.inbox / "blue.png", "blue", "square", 2)
    moved_to = library.sorted / "red.png"
    wait_until(lambda: moved_to.exists() and not red.exists(), timeout=60, what="red.png moved")
    indexed = library.wait_event("indexed", path=str(red))
    assert indexed["embedded"] is True
    library.wait_event("matched", name="reds", path=str(red))
    library.wait_event("moved", path=str(moved_to), source=str(red))
    library.daemon.wait_idle()
    assert blue.exists()
    assert not [e for e in library.events() if e["event"] == "matched" and e["path"] == str(blue)]
    # The move is a move: the same content and vector at the new place, never embedded again.
    assert not [e for e in library.events() if e["event"] == "indexed" and e["path"] == str(moved_to)]
    catalog = library.daemon.catalog()
    try:
        record = catalog.get_file(str(moved_to))
        assert record is not None and record.content_id == indexed["id"]
        assert catalog.get_file(str(red)) is None
    finally:
        catalog.close()
    hits = client.search(library.daemon.socket, 1, text="a red circle")
    assert hits[0]["path"] in {str(moved_to), str(library.sorted / "early.png")}
    assert any(h["path"] == str(moved_to) for h in client.search(library.daemon.socket, 3, text="a red circle"))
    # A removal reaches the stream too.
    blue.unlink()
    library.wait_event("removed", path=str(blue))
    # A second red circle of the same name gets a numbered name: nothing is overwritten.
    put(library.inbox / "red.png", "red", "circle", 2)
    wait_until(lambda: (library.sorted / "red-1.png").exists(), timeout=60, what="red-1.png")
    assert moved_to.exists()


def test_exec_hooks_get_path_and_score_and_a_hanging_or_failing_one_is_logged(library: Library) -> None:
    hook, out = library.tmp / "hook.py", library.tmp / "hook.jsonl"
    hook.write_text(HOOK)
    blue_hook = f"{sys.executable} {hook} {out}"
    for args in (
        ("blues", "a blue circle", "--exec", blue_hook),
        ("hangs", "a green star", "--exec", "sh -c 'sleep 60; true'", "--timeout", "1"),
        ("fails", "a yellow cross", "--exec", "false"),
    ):
        added = library.imgd("alert", "add", *args, "--min-score", MIN)
        assert added.returncode == 0, added.stderr
    blue = put(library.inbox / "bluec.png", "blue", "circle", 3)
    started = time.monotonic()
    put(library.inbox / "star.png", "green", "star", 3)
    put(library.inbox / "cross.png", "yellow", "cross", 3)
    wait_until(out.exists, timeout=60, what="the hook's record")
    record = json.loads(out.read_text().splitlines()[0])
    assert record["argv"] == [str(blue)] and record["name"] == "blues"
    assert float(record["score"]) >= float(MIN)
    killed = wait_until(lambda: library.log("hangs"), timeout=60, what="the hanging hook's log")[0]
    assert killed["outcome"] == "killed" and "killed after 1s" in killed["detail"]
    assert time.monotonic() - started < 30  # killed at its limit, not after sleep's 60 s
    failed = wait_until(lambda: library.log("fails"), timeout=60, what="the failing hook's log")[0]
    assert failed["outcome"] == "failed" and "exit 1" in failed["detail"]
    time.sleep(1.5)
    assert len(library.log("fails")) == 1  # never retried
    assert blue.exists()  # a hook acts on nothing else


def test_alert_test_acts_on_nothing(library: Library) -> None:
    wait_until(lambda: (library.sorted / "early.png").exists(), timeout=60, what="the catch-up")
    library.daemon.wait_idle()
    put(library.root / "old" / "kept.png", "red", "circle", 9)  # matched, acted on: moved away
    wait_until(lambda: (library.sorted / "kept.png").exists(), timeout=60, what="kept.png moved")
    library.daemon.wait_idle()
    before = sorted(os.listdir(library.sorted)), len(library.log("reds"))
    tested = library.imgd("alert", "test", "reds", "-f")
    assert tested.returncode == 0, tested.stderr
    assert str(library.sorted / "kept.png") in tested.stdout.splitlines()
    assert "nothing was moved" in tested.stderr
    assert (sorted(os.listdir(library.sorted)), len(library.log("reds"))) == before
    listed = json.loads(library.imgd("alert", "list", "--json").stdout)
    assert "reds" in {item["name"] for item in listed}
    # Without --min-score the threshold is where --auto ends the query over the library: what `search --auto`
    # finds, all of it red circles (every one of them sorted by `reds` by now).
    assert library.imgd("alert", "add", "autoreds", "a red circle").returncode == 0
    auto = library.imgd("alert", "test", "autoreds", "-f")
    assert auto.returncode == 0 and "threshold" in auto.stderr, auto.stderr
    searched = library.imgd("search", "a red circle", "--auto", "-f").stdout.splitlines()
    assert set(auto.stdout.splitlines()) == set(searched)
    assert searched and set(searched) <= {str(p) for p in library.sorted.iterdir()}
    assert library.imgd("alert", "remove", "autoreds").returncode == 0
    # The daemon and the direct path (before it started) describe a saved search alike.
    (direct,) = json.loads(library.direct_list)
    assert direct == next(item for item in listed if item["name"] == "reds")


@pytest.mark.parametrize(
    "args",
    [
        ("alert", "show", "nosuch"),
        ("alert", "remove", "nosuch"),
        ("alert", "test", "nosuch"),
        ("alert", "add", "bad name!", "a red circle"),
        ("alert", "add", "reds", "a red circle"),  # the name is taken
        ("alert", "add", "ghost", "--like", "/nonexistent/picture.png"),
        ("alert", "add", "two", "a red circle", "--move-to", "/tmp/a", "--copy-to", "/tmp/b"),
        ("alert", "add", "quote", "a red circle", "--exec", "echo 'unclosed"),
    ],
)
def test_bad_requests_are_one_sentence_and_exit_2(library: Library, args: tuple[str, ...]) -> None:
    done = library.imgd(*args)
    assert done.returncode == 2, done
    # One sentence (click adds its usage lines above a usage error's).
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith("Error: "), done.stderr
    assert done.stderr.strip().splitlines()[-1].count(". ") == 0


def test_events_without_a_daemon_is_one_sentence(tmp_path: Path) -> None:
    env = {**os.environ, "IMGD_STATE_DIR": str(tmp_path / "state"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    done = subprocess.run([*IMGD, "events"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no imgd daemon runs" in done.stderr and done.stderr.count("\n") == 1


def test_a_stalled_reader_is_told_how_many_it_missed(library: Library) -> None:
    library.daemon.wait_idle()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(library.daemon.socket))
        sock.sendall(json.dumps({"v": PROTOCOL_VERSION, "op": "events"}).encode() + b"\n")
        reader = sock.makefile("rb")
        assert json.loads(reader.readline())["ok"] is True
        # Stall while well over the buffer's 64 events go by: renames, each a `moved` event.
        folder = library.root / "spin"
        folder.mkdir()
        paths = [put(folder / f"s{i}.png", "purple", "triangle", i) for i in range(4)]
        library.daemon.wait_idle()
        for turn in range(60):
            for i, path in enumerate(paths):
                paths[i] = path.rename(folder / f"s{i}-{turn}.png")
            time.sleep(0.02)
        library.daemon.wait_idle()
        sock.settimeout(10)
        seen = []
        while not any(e["event"] == "dropped" for e in seen):
            seen.append(json.loads(reader.readline()))
        dropped = next(e for e in seen if e["event"] == "dropped")
        assert dropped["count"] > 0
    # The reader that kept up lost nothing: every rename is in its stream.
    moved = [e for e in library.events() if e["event"] == "moved" and "/spin/" in e["path"]]
    assert len(moved) == 240
