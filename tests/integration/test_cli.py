"""The command line, as a user types it: index, search (direct and through the daemon), status, failed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import IMGD, DaemonProcess
from imgd.cli.main import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def base_args(state_dir: Path, tiny_model: Path) -> list[str]:
    return ["--state-dir", str(state_dir), "--model", str(tiny_model), "--device", "cpu"]


@pytest.fixture
def indexed(runner, base_args, tmp_path) -> Path:
    pics = tmp_path / "pics"
    for i in range(8):
        write_image(pics / f"img{i}.jpg", seed=i)
    (pics / "broken.png").write_bytes(b"<html>not a png</html>")
    result = runner.invoke(cli, [*base_args, "index", str(pics)])
    assert result.exit_code == 0, result.output
    return pics


def test_index_prints_a_summary_line(runner, base_args, tmp_path):
    pics = tmp_path / "pics"
    for i in range(3):
        write_image(pics / f"img{i}.jpg", seed=i)

    first = runner.invoke(cli, [*base_args, "index", str(pics)])
    second = runner.invoke(cli, [*base_args, "index", str(pics)])
    quiet = runner.invoke(cli, [*base_args, "index", "--quiet", str(pics)])

    assert first.exit_code == 0
    assert "3 added, 0 updated, 0 moved, 0 removed, 0 failed, 0 unchanged" in first.stderr
    assert "0 added, 0 updated, 0 moved, 0 removed, 0 failed, 3 unchanged" in second.stderr
    assert quiet.exit_code == 0 and quiet.output == ""


def test_search_prints_score_and_path_lines_and_json(runner, base_args, indexed):
    text = runner.invoke(cli, [*base_args, "search", "--direct", "-k", "3", "a red car"])
    as_json = runner.invoke(cli, [*base_args, "search", "--direct", "-k", "3", "--json", "a red car"])

    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        score, path = line.split("  ", 1)
        assert -1.0 <= float(score) <= 1.0001 and Path(path).parent == indexed
    parsed = json.loads(as_json.stdout)
    assert [hit["rank"] for hit in parsed] == [1, 2, 3]
    assert [f"{hit['score']:.4f}  {hit['path']}" for hit in parsed] == lines


def test_search_by_image_finds_the_image_first(runner, base_args, indexed):
    result = runner.invoke(cli, [*base_args, "search", "--direct", "--image", str(indexed / "img5.jpg"), "-k", "1"])

    assert result.exit_code == 0, result.output
    assert result.stdout.split("  ", 1)[1].strip() == str(indexed / "img5.jpg")


def test_search_lists_every_path_of_duplicate_content(runner, base_args, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    write_image(pics / "copy" / "a.jpg", seed=1)
    write_image(pics / "b.jpg", seed=2)
    runner.invoke(cli, [*base_args, "index", str(pics)])

    result = runner.invoke(cli, [*base_args, "search", "--direct", "--image", str(pics / "a.jpg"), "-k", "1", "--json"])

    assert {hit["path"] for hit in json.loads(result.stdout)} == {str(pics / "a.jpg"), str(pics / "copy" / "a.jpg")}


def test_empty_catalog_and_no_match_exit_non_zero_with_a_message(runner, base_args, tmp_path):
    empty = runner.invoke(cli, [*base_args, "search", "--direct", "anything"])
    assert empty.exit_code == 2
    assert "run `imgd index DIR`" in empty.stderr and "Traceback" not in empty.output

    pics = tmp_path / "pics"
    write_image(pics / "only.jpg", seed=1)
    runner.invoke(cli, [*base_args, "index", str(pics)])
    (pics / "only.jpg").unlink()  # the only match is gone from disk: nothing to show
    gone = runner.invoke(cli, [*base_args, "search", "--direct", "anything"])
    assert gone.exit_code == 1
    assert gone.stdout == "" and "no matching images" in gone.stderr


def test_user_errors_are_one_line_without_traceback(runner, base_args, tmp_path):
    cases = [
        ([*base_args, "index", str(tmp_path / "nope")], "nope: no such folder"),
        ([*base_args, "search", "--direct", "2x:dog"], "'2x' in '2x:dog' is not a number"),
        (
            ["--state-dir", str(tmp_path / "s"), "--model", str(tmp_path / "no-model"), "index", str(tmp_path)],
            "does not exist",
        ),
        (["--config", str(tmp_path / "missing.toml"), "status"], "config file not found"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_search_asks_the_running_daemon_and_falls_back_without_one(runner, base_args, indexed, tmp_path, embedder):
    """The daemon's answers come from the indexed library; the CLI asks with a model this process cannot
    load (ONNX on CUDA is refused at once), so only the daemon can answer: a silent fallback to the
    direct path would fail instead."""
    from imgd.daemon.config import load
    from imgd.daemon.service.handlers import LocalContext
    from imgd.daemon.service.server import QueryServer

    # The server hands each request to the handler table, as `imgd run` does, here over the indexed library.
    library = LocalContext(load(None, {"state_dir": base_args[1]}, env={}), lambda name: embedder)

    sock = tmp_path / "run" / "imgd.sock"
    only_daemon = [*base_args, "--backend", "onnx", "--device", "cuda"]
    expected = runner.invoke(cli, [*base_args, "search", "--direct", "-k", "3", "a red car"])
    server = QueryServer(sock, library)
    server.start()
    try:
        answered = runner.invoke(cli, [*only_daemon, "search", "-k", "3", "a red car"], env={"IMGD_SOCKET": str(sock)})
    finally:
        server.stop()
    fallback = runner.invoke(cli, [*only_daemon, "search", "-k", "3", "a red car"], env={"IMGD_SOCKET": str(sock)})

    assert answered.exit_code == 0, answered.output
    assert answered.stdout == expected.stdout and len(expected.stdout.splitlines()) == 3
    assert fallback.exit_code == 2 and "cuda" in fallback.stderr.lower(), "without a daemon: the direct path"


def test_global_verbose_and_quiet_set_how_much_is_logged(runner, tiny_model, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    (pics / "broken.png").write_bytes(b"not a png")

    def index(*flags: str, state: str) -> str:
        args = [*flags, "--state-dir", str(tmp_path / state), "--model", str(tiny_model), "--device", "cpu"]
        result = runner.invoke(cli, [*args, "index", str(pics)])
        assert result.exit_code == 0, result.output
        return result.stderr

    default, verbose, quiet = index(state="s1"), index("-v", state="s2"), index("-q", state="s3")

    skipped, indexed = f"skipping {pics / 'broken.png'}", f"indexed {pics / 'a.jpg'}"
    assert skipped in default and indexed not in default
    assert skipped in verbose and indexed in verbose
    assert skipped not in quiet and indexed not in quiet and "1 added" not in quiet  # only results and errors
    assert "1 added" in default and "1 added" in verbose


@pytest.mark.slow
def test_index_draws_a_progress_bar_on_a_terminal_only(tmp_path, tiny_model):
    import fcntl
    import pty
    import struct
    import termios

    pics = tmp_path / "pics"
    for i in range(40):
        write_image(pics / f"img{i:02d}.png", seed=i, size=(32, 24))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def index(state: str, tty: bool) -> bytes:
        args = ["--state-dir", str(tmp_path / state), "--model", str(tiny_model), "--device", "cpu", "index"]
        master, slave = pty.openpty() if tty else os.pipe()
        if tty:  # a terminal has a size; tqdm draws nothing at 0 columns
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        proc = subprocess.Popen([*IMGD, *args, str(pics)], stdin=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        output = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            output += chunk
        os.close(master)
        assert proc.wait(120) == 0, output
        return output

    on_tty, piped = index("s1", tty=True), index("s2", tty=False)

    assert b"/40 [" in on_tty and b"img/s" in on_tty, on_tty
    assert b"/40 [" not in piped and b"40 added" in piped, piped
    assert b"40 added" in on_tty


@pytest.mark.slow
def test_an_unreachable_model_hub_is_one_sentence(tmp_path):
    with socket.socket() as probe:  # a local port nothing listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "IMGD_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf-cache"))
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)

    result = subprocess.run(
        [*IMGD, "--state-dir", str(tmp_path / "state"), "--model", "clip-ViT-B-32", "index", str(pics)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "could not load model 'clip-ViT-B-32'" in lines[0] and "hub cannot be reached" in lines[0]
    assert "--model /path/to/clip-model" in lines[0]
    assert "as the README's Set up says (python tests/clipkit.py ~/imgd-models/tiny-clip)." in lines[0]  # offline


def test_invalid_config_names_the_key(runner, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[watch]\nsettle_seconds = "soon"\n')

    result = runner.invoke(cli, ["--config", str(config), "status"])

    assert result.exit_code == 2
    assert "watch.settle_seconds" in result.stderr


def test_status_and_failed_without_a_daemon(runner, base_args, indexed):
    status = runner.invoke(cli, [*base_args, "status"])
    as_json = runner.invoke(cli, [*base_args, "status", "--json"])
    failed = runner.invoke(cli, [*base_args, "failed"])

    assert "daemon: not running" in status.stdout
    assert "files: 8 indexed (8 unique images), 1 failed" in status.stdout
    info = json.loads(as_json.stdout)
    assert info["daemon"]["running"] is False and info["counts"]["files"] == 8
    assert failed.stdout.strip() == f"{indexed / 'broken.png'}: not a recognised image format"


def test_changing_the_model_is_refused_until_reembed(runner, base_args, indexed, tmp_path):
    from clipkit import build_clip  # conftest puts tests/ on sys.path

    other = build_clip(tmp_path / "other-model", seed=7)
    args = ["--state-dir", base_args[1], "--model", str(other)]

    refused = runner.invoke(cli, [*args, "index", str(indexed)])
    accepted = runner.invoke(cli, [*args, "index", "--reembed", str(indexed)])

    assert refused.exit_code == 2 and "imgd index --reembed" in refused.stderr
    assert accepted.exit_code == 0, accepted.output
    # Re-embedded beside the old vectors, then switched: the files themselves are unchanged.
    assert f"switched to model {other}: 8 images re-embedded" in accepted.stderr
    assert "0 added, 0 updated" in accepted.stderr


@pytest.mark.slow
def test_daemon_and_direct_search_print_the_same(runner, base_args, tmp_path, tiny_model):
    pics = tmp_path / "pics"
    for i in range(6):
        write_image(pics / f"img{i}.jpg", seed=i)
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        daemon.wait_idle()
        args = ["--state-dir", str(daemon.state_dir)]
        env = {"XDG_RUNTIME_DIR": str(daemon.runtime)}
        queries = [
            (["search", "a cat"], 0),
            (["search", "--json", "-k", "2", "a cat"], 0),
            (["search", "--image", str(pics / "img3.jpg"), "-k", "2"], 0),
            (["search", "--jsonl", "a", "2:cat", "--not", "0.5:dog", "--like", str(pics / "img1.jpg")], 0),
            (["search", "-0", "--in", str(pics), "--type", "jpg", "--landscape", "--sort", "path", "x"], 0),
            (["search", "--auto", "-f", "a cat"], None),  # a random model may or may not clear the bar
            (["search", "--min-score", "1", "a cat"], 1),
            (["search", "--after", "2024", "--before", "2020", "a cat"], 2),
            (["similar", "--json", "-k", "3", str(pics / "img2.jpg")], 0),
        ]
        # With a model this process cannot load (ONNX on CUDA is refused at once), only the daemon can answer.
        only_daemon = [*args, "--backend", "onnx", "--device", "cuda"]
        for query, code in queries:
            via_daemon = runner.invoke(cli, [*only_daemon, *query], env=env)
            direct = runner.invoke(cli, [*args, query[0], "--direct", *query[1:]], env=env)
            assert via_daemon.exit_code == direct.exit_code, (query, via_daemon.output)
            assert code is None or direct.exit_code == code, (query, direct.output)
            assert via_daemon.stdout_bytes == direct.stdout_bytes, query
            assert via_daemon.stderr == direct.stderr, query
        missing = runner.invoke(cli, [*only_daemon, "search", "--image", str(tmp_path / "nope.jpg")], env=env)
        assert missing.exit_code == 2 and "no such file" in missing.stderr

        status = runner.invoke(cli, [*args, "status", "--json"], env=env)
        info = json.loads(status.stdout)
        assert info["daemon"]["running"] is True and info["folders"] == [{"path": str(pics), "mode": "inotify"}]
        assert info["counts"]["files"] == 6 and info["model"]["device"] == "cpu"
        assert info["search"] == {"kind": "exact", "vectors": 6, "nprobe": None, "building": False, "build_error": None}
        text = runner.invoke(cli, [*args, "status"], env=env).stdout
        assert "daemon: running" in text and "search: exact over 6 vectors" in text
        assert daemon.stop(signal.SIGTERM) == 0


def test_reembed_with_an_unchanged_model_says_there_is_nothing_to_do(runner, base_args, indexed):
    result = runner.invoke(cli, [*base_args, "index", "--reembed", str(indexed)])

    assert result.exit_code == 0, result.output
    assert "nothing to re-embed" in result.stderr
    assert "0 added, 0 updated, 0 moved, 0 removed" in result.stderr


# -- global options and quiet --------------------------------------------------------------

GLOBAL_OPTIONS = {
    "--config",
    "--state-dir",
    "--model",
    "--device",
    "--backend",
    "--text-model",
    "-v",
    "--verbose",
    "-q",
    "--quiet",
}


def every_command(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    context = click.Context(group)
    for name in group.list_commands(context):  # the root group loads its commands lazily
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_takes_the_global_options():
    commands = dict(every_command(cli))
    assert {("index",), ("search",), ("similar",), ("run",), ("status",), ("failed",), ("config",)} <= set(commands)
    assert ("service", "install") in commands
    for path, command in commands.items():
        opts = {opt for param in command.params for opt in param.opts}
        assert opts >= GLOBAL_OPTIONS, f"imgd {' '.join(path)} lacks {sorted(GLOBAL_OPTIONS - opts)}"


def test_global_options_work_after_the_subcommand(runner, state_dir, tiny_model, tmp_path):
    pics = tmp_path / "pics"
    for i in range(3):
        write_image(pics / f"img{i}.jpg", seed=i)

    indexed = runner.invoke(
        cli, ["index", str(pics), "--model", str(tiny_model), "--state-dir", str(state_dir), "--device", "cpu", "-v"]
    )
    status = runner.invoke(
        cli, ["--state-dir", str(tmp_path / "elsewhere"), "status", "--json", "--state-dir", str(state_dir)]
    )
    missing = runner.invoke(cli, ["status", "--config", str(tmp_path / "missing.toml")])

    assert indexed.exit_code == 0, indexed.output
    assert "3 added" in indexed.stderr and f"imgd: indexed {pics / 'img0.jpg'}" in indexed.stderr  # -v: per file
    assert json.loads(status.stdout)["counts"]["files"] == 3  # the option after the subcommand wins
    assert missing.exit_code == 2 and "config file not found" in missing.stderr


def test_quiet_anywhere_silences_the_summary_like_index_quiet(runner, base_args, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    (pics / "broken.png").write_bytes(b"not a png")

    for quiet in (["-q", "index"], ["index", "-q"], ["index", "--quiet"], ["--quiet", "index"]):
        result = runner.invoke(cli, [*base_args, *quiet, str(pics)])
        assert result.exit_code == 0 and result.output == "", (quiet, result.output)
    failed = runner.invoke(cli, [*base_args, "failed", "-q"])
    none_failed = runner.invoke(cli, ["--state-dir", str(tmp_path / "empty"), "failed", "-q"])
    assert failed.stdout.startswith(str(pics / "broken.png"))  # results still print
    assert none_failed.exit_code == 0 and none_failed.output == ""


# -- folders and model when none are named -------------------------------------------------


def test_run_watches_the_pictures_folder_only_when_given_no_folder(tmp_path):
    from imgd.cli.run import watch_roots
    from imgd.daemon import config as config_module

    pictures = Path.home() / "Pictures"
    pictures.mkdir(parents=True)
    default = config_module.load(env={})
    configured = config_module.load(None, {"watch_paths": ("/photos",)}, env={})

    assert watch_roots(default, ()) == (pictures,)
    assert watch_roots(default, (Path("/x"),)) == (Path("/x"),)
    assert watch_roots(configured, (Path("/x"),)) == (Path("/photos"), Path("/x"))


def test_index_without_model_uses_the_catalogs(runner, base_args, indexed):
    write_image(indexed / "new.jpg", seed=42)
    no_model = ["--state-dir", base_args[1], "--device", "cpu"]

    result = runner.invoke(cli, [*no_model, "index", str(indexed)])

    assert result.exit_code == 0, result.output
    assert "1 added" in result.stderr


def test_search_says_when_it_ignores_a_different_model(runner, base_args, indexed, tiny_model, tmp_path):
    other = tmp_path / "other-model"
    other.mkdir()
    state = ["--state-dir", base_args[1]]

    ignored = runner.invoke(cli, [*state, "search", "--direct", "a cat", "--model", str(other)])
    same = runner.invoke(cli, [*state, "search", "--direct", "a cat", "--model", str(tiny_model)])

    assert ignored.exit_code == 0, ignored.output
    assert ignored.stderr == f"imgd: searching with the catalog's model {tiny_model}, not --model {other}.\n"
    assert same.exit_code == 0 and same.stderr == ""
    assert ignored.stdout == same.stdout


# The request errors name fields (daemon/protocol.py); the command line names its flags, word for word
# what it printed before the protocol stopped naming them.
FLAG_ERRORS = [
    (["search", "--after", "June", "x"], "--after: 'June' is not a date; write YYYY, YYYY-MM or YYYY-MM-DD."),
    (["search", "--before", "2024-13", "x"], "--before: '2024-13' is not a real date."),
    (
        ["search", "--after", "2024", "--before", "2023", "x"],
        "--after 2024-01-01 is not earlier than --before 2023-01-01; nothing can match.",
    ),
    (
        ["search", "--type", "psd", "x"],
        "--type: unknown file type 'psd'; use jpg, png, webp, gif, bmp, tiff, heic, avif, jxl, raw, cr2, cr3, nef, "
        "nrw, arw, raf, orf, rw2, dng, pef, srw, mp4, mov, m4v, 3gp, mkv, webm, avi.",
    ),
    (
        ["search", "--min-size", "big", "x"],
        "--min-size: 'big' is not a size; write WIDTHxHEIGHT, a side in pixels, or 12MP.",
    ),
    (["search", "--min-score", "2", "x"], "--min-score is a cosine similarity from -1 to 1, not 2.0."),
    (["search", "--min-score", "nan", "x"], "--min-score must be a finite number, not nan."),
    (["search", "--camera", " ", "x"], "--camera must be a non-empty string."),
    (["similar", "--after", "June", "/x.jpg"], "--after: 'June' is not a date; write YYYY, YYYY-MM or YYYY-MM-DD."),
    (["dupes", "--threshold", "1.5"], "--threshold is a cosine similarity above 0 and at most 1, not 1.5."),
    (["dupes", "--threshold", "nan"], "--threshold must be a finite number, not nan."),
    (["dupes", "--burst-gap", "0"], "--burst-gap is a number of seconds above 0 and at most 3600, not 0."),
    (["dupes", "--burst-gap", "inf"], "--burst-gap must be a finite number, not inf."),
]


@pytest.mark.parametrize(("args", "message"), FLAG_ERRORS)
def test_request_errors_name_the_flags_the_user_typed(runner, tmp_path, args, message):
    result = runner.invoke(cli, ["--state-dir", str(tmp_path), *args])
    assert (result.exit_code, result.output) == (2, f"Error: {message}\n")
