"""The first hour of a new user (issue 25): start-up checks, quiet options, and listings that agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import wait_until
from imgd.cli.main import cli
from imgd.daemon.config import load
from imgd.daemon.service.library import RUN, WriterLock
from imgd.daemon.service.server import QueryServer


def invoke(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args), env=env)


# -- start-up: the lock and the socket before the model; a starting daemon is said so -------------


def test_a_second_imgd_run_is_refused_by_the_lock_before_it_loads_the_model(tmp_path: Path) -> None:
    state, pics = tmp_path / "state", tmp_path / "pics"
    pics.mkdir()
    lock = WriterLock(load(None, {"state_dir": state}, env={}).lock_path, RUN)
    state.mkdir()
    lock.acquire()  # what a running daemon holds
    try:
        # A model that cannot load: had it been loaded first, its error would be the one shown.
        result = invoke("--state-dir", str(state), "--model", str(tmp_path / "no-model"), "run", str(pics))
    finally:
        lock.release()
    assert result.exit_code == 2, result.output
    assert f"an imgd daemon (pid {os.getpid()}) already serves the state folder {state}" in result.stderr
    assert "imgd index" not in result.stderr and "model" not in result.stderr


class OtherLibrary:
    """A handler-table context for another state folder: what another library's daemon answers as."""

    dupes = None

    def __init__(self, state_dir: Path) -> None:
        self.config = SimpleNamespace(state_dir=state_dir)

    def status(self, duplicates: bool = False) -> dict[str, object]:
        return {}


def test_a_second_imgd_run_on_a_socket_another_daemon_answers_is_refused_before_the_model(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "shared.sock"
    server = QueryServer(sock, OtherLibrary(tmp_path / "other"))
    server.start()
    try:
        result = invoke(
            "--state-dir",
            str(tmp_path / "state"),
            "--model",
            str(tmp_path / "no-model"),
            "run",
            str(tmp_path),
            env={"IMGD_SOCKET": str(sock)},
        )
    finally:
        server.stop()
    assert result.exit_code == 2, result.output
    assert f"another imgd daemon, serving {tmp_path / 'other'}, already answers on {sock}" in result.stderr
    assert "IMGD_SOCKET unset" in result.stderr


def test_status_says_a_daemon_is_starting_while_it_holds_the_state_folder_and_does_not_answer_yet(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lock = WriterLock(state / "writer.lock", RUN)
    lock.acquire()
    try:
        text = invoke("--state-dir", str(state), "status")
        as_json = invoke("--state-dir", str(state), "status", "--json")
    finally:
        lock.release()
    assert f"daemon: starting (preparing the model, pid {os.getpid()})" in text.stdout
    assert json.loads(as_json.stdout)["daemon"] == {"running": False, "starting": True, "pid": os.getpid()}
    after = invoke("--state-dir", str(state), "status")
    assert "daemon: not running" in after.stdout


def test_imgd_index_refused_by_a_running_daemon_is_told_to_stop_it(tmp_path: Path, tiny_model: Path) -> None:
    state, pics = tmp_path / "state", tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    state.mkdir()
    lock = WriterLock(state / "writer.lock", RUN)
    lock.acquire()
    try:
        result = invoke("--state-dir", str(state), "--model", str(tiny_model), "index", str(pics))
    finally:
        lock.release()
    assert result.exit_code == 2
    assert "the daemon, which indexes its folders itself; stop it first to run `imgd index` by hand" in result.stderr


# -- Ctrl-C while the model loads: exit 130 in one line, always ------------------------------------

# `imgd index` as the console script runs it, with the model's loading first dropping an object whose
# __del__ receives a real SIGINT: what the regex module's __del__ did once in five tries. Python prints
# "Exception ignored" for an exception raised in a __del__ and goes on, so the index ran to the end.
INTERRUPTED_IN_A_DEL = """
import os, signal, sys, time
import imgd.daemon.embedders as embedders

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the KeyboardInterrupt is raised here, inside __del__
            pass

real = embedders.load_embedder

def load_embedder(*args, **kwargs):
    Finalised()  # dropped at once
    return real(*args, **kwargs)

embedders.load_embedder = load_embedder
sys.argv = ["imgd", *sys.argv[1:]]
from imgd.cli.main import main
main()
"""


def interrupt_env(tmp_path: Path, model: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "IMGD_STATE_DIR": str(tmp_path / "state"),
        "IMGD_MODEL": str(model),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.mark.slow
def test_ctrl_c_landing_in_a_finaliser_while_the_model_loads_still_ends_imgd_index(
    tmp_path: Path, tiny_model: Path
) -> None:
    write_image(tmp_path / "pics" / "a.jpg", seed=1)
    script = tmp_path / "imgd_interrupted.py"
    script.write_text(INTERRUPTED_IN_A_DEL)

    done = subprocess.run(
        [sys.executable, str(script), "index", str(tmp_path / "pics")],
        env=interrupt_env(tmp_path, tiny_model),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert (done.returncode, done.stderr) == (130, "imgd: interrupted\n"), done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_ctrl_c_during_the_first_export_ends_imgd_index_in_one_line(tmp_path: Path, tiny_model: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: imgd and the child exporting the model."""
    write_image(tmp_path / "pics" / "a.jpg", seed=1)
    env = {**interrupt_env(tmp_path, tiny_model), "IMGD_BACKEND": "onnx"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgd.cli.main", "index", str(tmp_path / "pics")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # The export's child imports torch for seconds: interrupt once it has started.
        wait_until(lambda: any(psutil_children(proc.pid)), timeout=60, what="the export's child")
        os.killpg(proc.pid, signal.SIGINT)
        interrupted = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, stderr, stdout) == (130, "imgd: interrupted\n", ""), stderr
    assert time.monotonic() - interrupted < 10 and started
    assert not psutil_children(proc.pid), "the export's child ends with imgd"


def psutil_children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


# -- options that did the wrong thing quietly -------------------------------------------------


def indexed_library(tmp_path: Path, model: Path) -> tuple[list[str], Path]:
    """A state folder with four pictures, one copied: (the global options that name it, the pictures folder)."""
    state, pics = tmp_path / "state", tmp_path / "pics"
    for i in range(3):
        write_image(pics / f"img{i}.jpg", seed=i)
    (pics / "copy.jpg").write_bytes((pics / "img0.jpg").read_bytes())
    args = ["--state-dir", str(state), "--model", str(model), "--device", "cpu"]
    assert invoke(*args, "index", str(pics)).exit_code == 0
    return args, pics


def test_a_folder_that_is_not_there_is_an_error_not_a_search_that_finds_nothing(
    tmp_path: Path, tiny_model: Path
) -> None:
    args, pics = indexed_library(tmp_path, tiny_model)
    missing = tmp_path / "nonexistent"
    for command in (
        ["search", "red", "--in", str(missing), "--direct"],
        ["similar", str(pics / "img1.jpg"), "--in", str(missing), "--direct"],
        ["dupes", str(missing), "--direct"],
        ["dupes", "--in", str(missing), "--direct"],
    ):
        result = invoke(*args, *command)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr == f"Error: {missing}: no such folder; give a folder that holds your images.\n"
    assert invoke(*args, "search", "red", "--in", str(pics), "--direct", "-f").exit_code == 0


def test_a_relative_model_path_is_a_folder_not_a_hub_name(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from imgd.daemon.paths import looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics").mkdir()
    result = invoke("--state-dir", "state", "--model", "./nomodel", "index", "pics", env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 2
    assert "model folder './nomodel' does not exist" in result.stderr and "hub" not in result.stderr
    paths = ["./m", "../m", "~/m", "/m", "a/b/c", "models/", ".m", "my models/clip"]
    assert [looks_like_path(name) for name in paths] == [True] * len(paths)
    hub = ["clip-ViT-B-32", "openai/clip-vit-base-patch32", "sentence-transformers/clip-ViT-B-32"]
    assert [looks_like_path(name) for name in hub] == [False] * len(hub)


def test_quiet_dupes_prints_its_groups_and_no_summary(tmp_path: Path, tiny_model: Path) -> None:
    args, pics = indexed_library(tmp_path, tiny_model)
    loud = invoke(*args, "dupes", "--direct")
    quiet = invoke(*args, "-q", "dupes", "--direct")
    assert loud.exit_code == quiet.exit_code == 0
    assert "1 group" in loud.stderr and quiet.stderr == ""
    assert quiet.stdout == loud.stdout and str(pics / "copy.jpg") in quiet.stdout


def test_imgd_config_shows_the_model_in_effect_the_catalogs(tmp_path: Path, tiny_model: Path) -> None:
    args, _ = indexed_library(tmp_path, tiny_model)
    state = args[:2]
    shown = invoke(*state, "config").stdout
    assert f'name = "{tiny_model}"' in shown and "clip-ViT-B-32" not in shown.split("[model]")[1].split("\n")[1]
    named = invoke(*state, "--model", "other-model", "config").stdout
    assert 'name = "other-model"' in named  # one named on the command line wins, as for every command
    assert 'name = "clip-ViT-B-32"' in invoke(*state, "config", "--defaults").stdout


def test_imgd_version_prints_the_version() -> None:
    from importlib.metadata import version

    result = invoke("--version")
    assert (result.exit_code, result.stdout) == (0, f"imgd {version('imgd')}\n")


# -- listings that agree ---------------------------------------------------------------------------


def test_dupes_rows_give_taken_as_search_does_iso_8601_with_the_file_time_fallback(
    tmp_path: Path, tiny_model: Path
) -> None:
    args, pics = indexed_library(tmp_path, tiny_model)
    hits = invoke(*args, "search", "x", "--direct", "-k", "4", "--jsonl").stdout.splitlines()
    searched = {row["path"]: row for row in map(json.loads, hits)}
    groups = json.loads(invoke(*args, "dupes", "--direct", "--json").stdout)
    members = [member for group in groups for member in group["members"]]
    assert {str(pics / "img0.jpg"), str(pics / "copy.jpg")} <= {m["path"] for m in members}
    for member in members:
        found = searched[member["path"]]
        assert (member["taken"], member["taken_source"]) == (found["taken"], found["taken_source"])
        assert member["taken"] is not None and "T" in member["taken"] and member["taken_source"] == "mtime"


def test_dupes_text_lines_up_its_columns_and_counts_in_words() -> None:
    from imgd.cli import render

    def member(path: str, score: float, width: int, height: int, size: int) -> dict:
        return {"path": path, "score": score, "width": width, "height": height, "size": size, "same_content": False}

    groups = [
        {
            "kind": "near",
            "reclaimable": 300,
            "members": [member("/a/keep.jpg", 1.0, 4000, 3000, 5_000_000), member("/a/b.jpg", -0.25, 80, 80, 300)],
        }
    ]
    lines = render.dupes_lines(groups)
    assert lines[0] == "near (2 images, 300 B in the others)"
    assert lines[1].index("/a/keep.jpg") == lines[2].index("/a/b.jpg")
    assert lines[1].index("4000x3000") == lines[2].index("80x80") and "-0.2500" in lines[2]
    assert (
        render.dupes_summary(groups, 0.975)
        == "imgd: 1 group, 1 image besides the keepers, 300 B in them (threshold 0.975)"
    )
    hits = render.hits_lines([{"score": 0.5, "path": "/a/x.jpg"}, {"score": -0.125, "path": "/a/y.jpg"}])
    assert hits == [" 0.5000  /a/x.jpg", "-0.1250  /a/y.jpg"]
