"""The first hour of a new user (issue 25): start-up checks, quiet options, and listings that agree."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner
from conftest import write_image
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


def test_a_second_imgd_run_on_a_socket_another_daemon_answers_is_refused_before_the_model(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "shared.sock"
    server = QueryServer(sock, lambda request: {"status": {}, "state_dir": str(tmp_path / "other")})
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
