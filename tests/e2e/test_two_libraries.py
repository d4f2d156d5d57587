"""Two libraries, two daemons: each command asks only the daemon of its own state folder."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import DaemonProcess
from imgd.cli.main import cli

pytestmark = pytest.mark.slow


def imgd(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process with the daemons' runtime folder and model; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_each_state_folder_is_answered_by_its_own_daemon_and_a_mismatch_answers_directly(
    tmp_path: Path, tiny_model: Path
) -> None:
    runtime = tmp_path / "run"  # one login session: both daemons put their sockets in the same folder
    libraries: dict[str, DaemonProcess] = {}
    for name, seed in (("a", 1), ("b", 2)):
        pics = tmp_path / name / "pics"
        write_image(pics / f"only-in-{name}.jpg", seed=seed)
        libraries[name] = DaemonProcess(tmp_path / name, tiny_model, [pics], XDG_RUNTIME_DIR=str(runtime))
        libraries[name].runtime = runtime
    env = {"XDG_RUNTIME_DIR": str(runtime), "IMGD_MODEL": str(tiny_model), "IMGD_DEVICE": "cpu"}
    try:
        for daemon in libraries.values():
            daemon.start()  # the second beside the first, with no configuration
            daemon.wait_idle()
        assert libraries["a"].socket != libraries["b"].socket
        assert libraries["a"].socket.parent == libraries["b"].socket.parent == runtime / "imgd"

        for name, daemon in libraries.items():
            state = ["--state-dir", str(daemon.state_dir)]
            code, out, err = imgd(env, *state, "status", "--json")
            status = json.loads(out)
            assert code == 0, err
            assert status["daemon"]["running"] and status["daemon"]["pid"] == daemon.proc.pid
            assert status["state_dir"] == str(daemon.state_dir)
            code, out, err = imgd(env, *state, "search", "-f", "anything")
            assert (code, out) == (0, str(tmp_path / name / "pics" / f"only-in-{name}.jpg") + "\n"), err

        # A socket shared by configuration: b's command reaches a's daemon, refuses its answer and answers here.
        shared = {**env, "IMGD_SOCKET": str(libraries["a"].socket)}
        b_state = ["--state-dir", str(libraries["b"].state_dir)]
        code, out, err = imgd(shared, *b_state, "-v", "search", "-f", "anything")
        assert (code, out) == (0, str(tmp_path / "b" / "pics" / "only-in-b.jpg") + "\n"), err
        assert f"the daemon on {libraries['a'].socket} serves {libraries['a'].state_dir}, not " in err
        assert "answering here" in err
        code, out, err = imgd(shared, *b_state, "status", "--json")
        status = json.loads(out)
        assert not status["daemon"]["running"] and status["state_dir"] == str(libraries["b"].state_dir)
        code, out, err = imgd(shared, *b_state, "search", "-f", "anything")
        assert "answering here" not in err  # the line is for -v
    finally:
        for daemon in libraries.values():
            daemon.stop(signal.SIGKILL)
