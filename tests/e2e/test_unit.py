"""The systemd user unit: rendering, quoting, installing, and what systemd itself says about it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from imgd.cli import installer, unit
from imgd.cli.main import cli
from imgd.daemon.errors import ImgdError
from imgd.daemon.paths import default_socket

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt install systemd)"
)

# `systemd-analyze security --offline=true` on the rendered unit; lower is safer (0 to 10).
EXPOSURE = {True: 1.2, False: 5.9}


def make_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def setting(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


@pytest.fixture(autouse=True)
def no_backend_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest's IMGD_BACKEND=torch and IMGD_WORDS_RUNTIME=onnx (speed-ups) would be pinned into every unit
    these tests read."""
    monkeypatch.delenv("IMGD_BACKEND", raising=False)
    monkeypatch.delenv("IMGD_WORDS_RUNTIME", raising=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder that systemd's %h stands for."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setattr(unit, "manager_home", lambda: str(path))
    return path


# -- render_unit ---------------------------------------------------------------------------


def test_exec_start_runs_the_absolute_executable_with_global_options_before_run(tmp_path: Path) -> None:
    exe = make_executable(tmp_path / "my bin" / "imgd")
    text = unit.render_unit(str(exe), str(tmp_path / "my conf.toml"), str(tmp_path / "my state"), sandbox=True)
    assert setting(text, "ExecStart") == [
        f'"{exe}" --config "{tmp_path}/my conf.toml" --state-dir "{tmp_path}/my state" run'
    ]
    assert setting(text, "ReadWritePaths") == [f'-"{tmp_path}/my state"']
    assert setting(text, "ExecStartPre") == [f'+mkdir -p "{tmp_path}/my state"']


def test_paths_under_home_are_written_with_percent_h(home: Path) -> None:
    text = unit.render_unit(str(home / ".local/bin/imgd"), None, str(home / "state"), sandbox=True)
    assert setting(text, "ExecStart") == ["%h/.local/bin/imgd --state-dir %h/state run"]
    assert setting(text, "ReadWritePaths") == ["-%h/state"]


def test_percent_dollar_quote_and_backslash_are_escaped(tmp_path: Path) -> None:
    state = tmp_path / 'a%b$c"d\\e'
    text = unit.render_unit(str(make_executable(tmp_path / "imgd")), None, str(state), sandbox=True)
    # `$` expands only in Exec lines; `%` everywhere.
    assert setting(text, "ExecStart")[0].endswith(f' --state-dir "{tmp_path}/a%%b$$c\\"d\\\\e" run')
    assert setting(text, "ReadWritePaths") == [f'-"{tmp_path}/a%%b$c\\"d\\\\e"']


def test_a_control_character_in_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImgdError, match="control character"):
        unit.render_unit(str(make_executable(tmp_path / "imgd")), None, str(tmp_path / "a\nb"), sandbox=True)


def test_a_bare_name_is_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = make_executable(tmp_path / "bin" / "imgd")
    monkeypatch.setenv("PATH", str(exe.parent))
    text = unit.render_unit("imgd", None, str(tmp_path / "state"), sandbox=True)
    assert setting(text, "ExecStart")[0].startswith(f"{exe} ")


def test_when_argv0_is_not_imgd_the_script_beside_python_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = make_executable(tmp_path / "venv" / "bin" / "imgd")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    assert unit.resolve_executable("/somewhere/site-packages/pytest/__main__.py") == str(exe)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ImgdError, match="cannot find the imgd executable"):
        unit.resolve_executable("/somewhere/site-packages/pytest/__main__.py")


def test_the_state_folder_is_the_one_the_cli_uses_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = str(make_executable(tmp_path / "imgd"))
    text = unit.render_unit(exe, None, None, sandbox=True)
    assert setting(text, "ExecStart") == [f"{exe} --state-dir {tmp_path}/xdg-data/imgd run"]
    config = tmp_path / "imgd.toml"
    config.write_text(f'state_dir = "{tmp_path}/from-toml"\n')
    monkeypatch.setenv("IMGD_CONFIG", str(config))
    text = unit.render_unit(exe, None, None, sandbox=True)
    assert setting(text, "ExecStart") == [f"{exe} --config {config} --state-dir {tmp_path}/from-toml run"]


def test_without_user_namespaces_the_sandbox_is_left_out(tmp_path: Path) -> None:
    text = unit.render_unit(str(make_executable(tmp_path / "imgd")), None, str(tmp_path / "s"), sandbox=False)
    keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    assert not keys & {"PrivateUsers", "ProtectSystem", "ProtectHome", "CapabilityBoundingSet", "ExecStartPre"}
    assert {"NoNewPrivileges", "SystemCallFilter", "RestrictAddressFamilies", "Type", "WatchdogSec"} <= keys


def test_the_system_is_asked_when_sandbox_is_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(unit, "sandbox_supported", lambda: False)
    text = unit.render_unit(str(make_executable(tmp_path / "imgd")), None, str(tmp_path / "s"))
    assert "PrivateUsers=yes" not in text
    assert "user namespaces are not allowed" in caplog.text
    monkeypatch.setattr(unit, "sandbox_supported", lambda: True)
    assert "PrivateUsers=yes" in unit.render_unit(str(tmp_path / "imgd"), None, str(tmp_path / "s"))


def test_sandbox_probe_follows_what_unshare_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The probe's answer is unshare's exit status: a user namespace allowed or refused, or no unshare at all."""
    calls = tmp_path / "calls"

    def fake_unshare(code: int) -> str:
        script = tmp_path / f"unshare-{code}"
        script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit {code}\n')
        script.chmod(0o755)
        return str(script)

    monkeypatch.setattr(unit.shutil, "which", lambda name: fake_unshare(0))
    assert unit.sandbox_supported() is True
    monkeypatch.setattr(unit.shutil, "which", lambda name: fake_unshare(1))
    assert unit.sandbox_supported() is False
    assert calls.read_text().splitlines() == ["--user --map-root-user --mount true"] * 2
    monkeypatch.setattr(unit.shutil, "which", lambda name: None)
    assert unit.sandbox_supported() is False


def test_the_repository_copy_is_the_rendered_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unit, "manager_home", lambda: "/home/user")
    assert (REPO / "systemd" / "imgd.service").read_text() == unit.reference_unit(), (
        "systemd/imgd.service differs from cli/unit.py's template; regenerate it with\n"
        '  python -c \'from imgd.daemon import unit; unit.manager_home = lambda: "/home/user"; '
        'print(unit.reference_unit(), end="")\' > systemd/imgd.service'
    )


def test_the_stop_timeout_fits_the_daemons_stop_budget() -> None:
    """systemd waits TimeoutStopSec before SIGKILL: above the daemon's own bound, but not minutes of it."""
    from imgd.daemon.service.run import STOP_BUDGET

    timeout = float(re.search(r"^TimeoutStopSec=(\d+)$", unit.reference_unit(), re.M).group(1))  # type: ignore[union-attr]
    assert 2 * STOP_BUDGET <= timeout <= 10


# -- install_unit --------------------------------------------------------------------------


def test_install_writes_the_unit_and_returns_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "units"
    path = installer.install_unit("[Service]\nExecStart=/bin/true\n", folder)
    assert path == folder / "imgd.service"
    assert path.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert installer.install_unit("second\n", folder) == path
    assert path.read_text() == "second\n"
    assert os.listdir(folder) == ["imgd.service"]


def test_install_defaults_to_the_xdg_user_unit_folder(tmp_path: Path) -> None:
    path = installer.install_unit("x\n", None)
    assert path == tmp_path / "xdg-config" / "systemd" / "user" / "imgd.service"
    assert path.read_text() == "x\n"


def test_install_failure_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ImgdError, match=r"cannot write .*imgd\.service .*--unit-dir\.$"):
        installer.install_unit("x\n", blocker / "units")


# -- the CLI -------------------------------------------------------------------------------


def test_cli_installs_into_unit_dir(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--state-dir", str(tmp_path / "state"), "service", "install", "--unit-dir", str(tmp_path / "u")]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "u" / "imgd.service"
    assert f"wrote {path}" in result.output
    exec_start = setting(path.read_text(), "ExecStart")[0]
    assert exec_start.endswith(f" --state-dir {tmp_path}/state run")
    assert os.access(exec_start.split()[0], os.X_OK)


def test_cli_print_shows_the_unit_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    result = CliRunner().invoke(cli, ["--config", str(config), "service", "install", "--print"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# imgd: semantic image search")
    assert setting(result.stdout, "ExecStart")[0].endswith(
        f" --config {config} --state-dir {tmp_path}/xdg-data/imgd run"
    )
    assert not (tmp_path / "xdg-config" / "systemd").exists()


def test_cli_pins_the_model_device_folders_and_imgd_variables(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "models" / "clip"
    shutil.copytree(tiny_model, model)
    text_model = tmp_path / "models" / "multilingual"
    text_model.mkdir()
    pics = tmp_path / "pics"
    pics.mkdir()
    env = {"IMGD_BATCH_SIZE": "8", "HF_HOME": str(tmp_path / "hf"), "IMGD_SOCKET": str(tmp_path / "s.sock")}
    args = ["--state-dir", str(tmp_path / "state"), "service", "install", str(pics), "--unit-dir", str(tmp_path / "u")]

    model_flags = ["--model", str(model), "--device", "cpu", "--backend", "onnx", "--text-model", str(text_model)]

    result = CliRunner().invoke(cli, [*args, *model_flags], env=env)

    assert result.exit_code == 0, result.output
    text = (tmp_path / "u" / "imgd.service").read_text()
    assert setting(text, "ExecStart")[0].endswith(
        f" --state-dir {tmp_path}/state --model {model} --device cpu --backend onnx --text-model {text_model}"
        f" run {pics}"
    )
    assert setting(text, "Environment") == ["HF_HUB_OFFLINE=1", f"HF_HOME={tmp_path}/hf", "IMGD_BATCH_SIZE=8"]
    assert f"it watches {pics}" in result.stdout


def test_a_model_or_state_folder_in_tmp_keeps_the_real_tmp_and_is_warned_about(tmp_path: Path) -> None:
    exe = str(make_executable(tmp_path / "imgd"))
    lasting = unit.render_unit(exe, None, "/var/lib/imgd", model="/opt/clip", sandbox=True)
    model_in_tmp = unit.render_unit(exe, None, "/var/lib/imgd", model="/tmp/clip", sandbox=True)
    state_in_tmp = unit.render_unit(exe, None, "/var/tmp/imgd", model="clip-ViT-B-32", sandbox=True)
    text_in_tmp = unit.render_unit(exe, None, "/var/lib/imgd", text_model="/tmp/multi", sandbox=True)

    assert setting(lasting, "PrivateTmp") == ["yes"]
    assert setting(model_in_tmp, "PrivateTmp") == [] and "# No PrivateTmp=: the model folder lives" in model_in_tmp
    assert setting(state_in_tmp, "PrivateTmp") == [] and "# No PrivateTmp=: the state folder lives" in state_in_tmp
    assert setting(text_in_tmp, "PrivateTmp") == [] and "# No PrivateTmp=: the text model folder lives" in text_in_tmp
    assert setting(model_in_tmp, "ExecStart")[0].endswith(" --state-dir /var/lib/imgd --model /tmp/clip run")
    assert setting(unit.render_unit(exe, None, "/s", device="cuda", sandbox=True), "PrivateDevices") == ["no"]


def test_service_problems_name_each_fix(tmp_path: Path) -> None:
    model = tmp_path / "clip"
    model.mkdir()
    hub = tmp_path / "hub"
    env = {"HF_HUB_CACHE": str(hub)}

    in_tmp = installer.service_problems(str(tmp_path / "state"), str(model), env)
    missing = installer.service_problems("/var/lib/imgd", str(tmp_path / "nope"), env)
    not_cached = installer.service_problems("/var/lib/imgd", "clip-ViT-B-32", env)
    (hub / "models--sentence-transformers--clip-ViT-B-32" / "snapshots" / "abc").mkdir(parents=True)
    cached = installer.service_problems("/var/lib/imgd", "clip-ViT-B-32", env)

    assert len(in_tmp) == 2
    assert "model folder" in in_tmp[0] and "--reembed" in in_tmp[0] and "service install" in in_tmp[0]
    assert "state folder" in in_tmp[1] and "--state-dir" in in_tmp[1]
    assert missing == [
        f"the model folder {tmp_path}/nope does not exist, so the service would fail to start; "
        "pass the folder that holds the model with --model."
    ]
    assert "not in the local model cache" in not_cached[0] and "--model FOLDER" in not_cached[0]
    assert cached == []


@pytest.mark.slow
def test_a_catalog_built_with_a_model_folder_runs_as_the_unit_says(tmp_path: Path, tiny_model: Path) -> None:
    """The unit's own ExecStart and Environment, in an environment as bare as the service manager's."""
    from conftest import write_image
    from daemonkit import wait_until
    from imgd.daemon.api import client

    model = tmp_path / "my model"
    shutil.copytree(tiny_model, model)
    pics, state, runtime = tmp_path / "pics", tmp_path / "state", tmp_path / "runtime"
    write_image(pics / "a.jpg", seed=1)
    runner = CliRunner()
    built = runner.invoke(
        cli, ["--state-dir", str(state), "--model", str(model), "index", str(pics), "--device", "cpu"]
    )
    assert built.exit_code == 0, built.output
    installed = runner.invoke(
        cli, ["--state-dir", str(state), "service", "install", str(pics), "--unit-dir", str(tmp_path / "units")]
    )
    assert installed.exit_code == 0, installed.output
    assert "model folder" in installed.stderr and "temporary folder" in installed.stderr  # tmp_path is in /tmp

    text = (tmp_path / "units" / "imgd.service").read_text()
    home = unit.manager_home()
    environment = {"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": str(runtime)}
    environment.update(value.split("=", 1) for value in map(unquote, setting(text, "Environment")))
    (runtime / "imgd").mkdir(parents=True, mode=0o700)  # RuntimeDirectory=imgd
    for pre in setting(text, "ExecStartPre"):
        subprocess.run(exec_words(pre.lstrip("+"), home, runtime), check=True, env=environment)
    argv = exec_words(setting(text, "ExecStart")[0], home, runtime)
    assert "--model" not in argv  # `imgd run` finds the catalog's model itself
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        socket = default_socket(state, str(runtime))  # the one `imgd --state-dir STATE` asks

        def answers() -> bool:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            return socket.exists()

        wait_until(answers, timeout=120, what="the unit's daemon to listen")
        write_image(pics / "b.jpg", seed=2)
        wait_until(lambda: client.status(socket)["counts"]["files"] == 2, timeout=60, what="b.jpg to be indexed")
        assert client.status(socket)["model"]["name"] == str(model)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "daemon.log").read_text()
        log.close()


def unquote(word: str) -> str:
    return shlex.split(word.replace("%%", "%"))[0]


def exec_words(line: str, home: str, runtime: Path) -> list[str]:
    """A unit's Exec line as systemd runs it: specifiers, $$ and quoting undone (enough for imgd's units)."""
    expanded = re.sub(r"%([%ht])", lambda m: {"%": "%", "h": home, "t": str(runtime)}[m.group(1)], line)
    return [word.replace("$$", "$") for word in shlex.split(expanded)]


# -- systemd's own checks ------------------------------------------------------------------


def analyze(tmp_path: Path, sandbox: bool, *args: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze on the unit rendered for a real executable, as the user manager would."""
    exe = make_executable(tmp_path / "bin dir" / "imgd")
    # A state folder outside /tmp (it need not exist), as a real one is: one in /tmp drops PrivateTmp=.
    text = unit.render_unit(str(exe), None, "/var/lib/imgd test/state dir", sandbox=sandbox)
    path = installer.install_unit(text, tmp_path / "units")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "--user", *args, str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@needs_systemd_analyze
@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path, sandbox: bool) -> None:
    done = analyze(tmp_path, sandbox, "verify")
    said = [line for line in (done.stdout + done.stderr).splitlines() if "imgd" in line]
    assert done.returncode == 0 and not said, done.stdout + done.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_systemd_analyze_security_exposure(tmp_path: Path, sandbox: bool) -> None:
    done = analyze(tmp_path, sandbox, "security", "--offline=true", "--no-pager")
    if "--offline" in done.stderr and done.returncode != 0:
        pytest.skip("systemd-analyze is older than 250 and has no --offline")
    found = re.search(r"Overall exposure level for imgd\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= EXPOSURE[sandbox], done.stdout
