"""The README's commands, run as a new user would: a fresh HOME, the offline model, nothing else.

Every ```sh block of README.md except the installation ones is executed line by line in order,
from a HOME that holds a checkout's `.venv` and `tests` (links to this one) and some pictures. A
command that changes, or output that no longer matches what the README says, fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import wait_until
from imgd.daemon.api import client
from imgd.daemon.errors import ImgdError
from imgd.daemon.paths import default_socket
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
# They need a user's running service manager; the unit is checked with systemd-analyze instead.
NEEDS_SYSTEMD = ("systemctl ", "journalctl ")
# Programs the README pipes into that need a display: ls also fails on a path that does not exist.
# The gallery takes a free port here: 8470 may be taken on a shared machine.
STAND_INS = {
    "| xargs -0 feh": "| xargs -0 ls",
    "| xargs -0 trash-put": "| xargs -0 ls",
    "imgd web --open": "imgd web --open --port 0",
}
# With a random-weight model nothing stands out from the rest, so --auto may find no clear match (exit 1);
# the pictures here hold no words, so --words and --words-match find none (exit 1).
NO_MATCH_ALLOWED = ("--auto", "--words")


def readme_commands() -> list[str]:
    """The command lines of the README's sh blocks, in order, without the installation and test blocks.

    The development block runs this very suite and the mutation check: run from here it never ends.
    """
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    return [
        line.strip()
        for block in blocks
        if "pip install" not in block and "pytest" not in block
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_readme_documents_the_main_commands():
    lines = readme_commands()
    for verb in ("imgd index ", "imgd search ", "imgd run ", "imgd status", "imgd failed", "imgd service install"):
        assert any(line.startswith(verb) for line in lines), (verb, lines)
    assert any("tests/clipkit.py" in line for line in readme_commands())


def main_job() -> str:
    """The README's first command line: install, index a folder, search it."""
    return re.findall(r"^```sh\n(.*?)\n", README.read_text(), flags=re.M)[0]


@pytest.mark.slow
def test_the_main_job_indexes_the_folder_the_user_names_where_there_is_no_pictures_folder(
    tmp_path: Path, tiny_model: Path
) -> None:
    """A newcomer without ~/Pictures got an error from the very first command."""
    home, photos = tmp_path / "home", tmp_path / "my photos"
    home.mkdir()
    write_image(photos / "a.jpg", seed=1)
    (home / ".venv").symlink_to(VENV_BIN.parent)
    # The line as written, less its installation: the venv is this one.
    line = " && ".join(part for part in main_job().split(" && ") if "pip install" not in part)
    line = line.replace("python3 -m venv .venv && ", "").replace("; python3 -m venv .venv", ";")
    env = {
        "HOME": str(home),
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "PICS": str(photos),
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},  # this checkout's imgd, where one is set
        "IMGD_MODEL": str(tiny_model),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "HF_HUB_OFFLINE": "1",
    }

    done = subprocess.run(["bash", "-c", line], env=env, cwd=home, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, f"{line}\n{done.stderr}"
    assert done.stdout.splitlines()[0].endswith(f"  {photos / 'a.jpg'}")


@pytest.mark.slow
def test_the_readme_commands_work_for_a_new_user(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pictures, downloads = home / "Pictures", home / "Downloads"
    for i in range(1230, 1236):  # the README's examples name IMG_1234.jpg, ref.jpg and Pictures/2023
        write_image(pictures / f"IMG_{i}.jpg", seed=i)
    write_image(pictures / "2023" / "PXL_0001.jpg", seed=2023, size=(4000, 3000), exif=pixel_exif())
    for i in range(2):
        write_image(downloads / f"download{i}.png", seed=100 + i)
    (pictures / "broken.jpg").write_bytes(b"not a jpeg")
    shutil.copyfile(pictures / "IMG_1233.jpg", home / "ref.jpg")
    (home / ".venv").symlink_to(VENV_BIN.parent)
    (home / "tests").symlink_to(REPO / "tests")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "HOME": str(home),
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(runtime),  # what a login session has
        "HF_HUB_OFFLINE": "1",  # this machine has no network; the README's offline path needs none
    }
    socket = default_socket(home / ".local" / "share" / "imgd", str(runtime))  # the default state folder's
    daemon: subprocess.Popen[bytes] | None = None
    gallery_pages: list[str] = []
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for line in readme_commands():
            if line.startswith(NEEDS_SYSTEMD):
                continue
            if "| jq" in line and shutil.which("jq") is None:
                line = line.split("|")[0]
            for pipe, stand_in in STAND_INS.items():
                line = line.replace(pipe, stand_in)
            if line.startswith("export "):
                done = subprocess.run(
                    ["bash", "-c", f"{line} && env -0"], env=env, cwd=home, capture_output=True, text=True, check=True
                )
                env = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
                continue
            if line.startswith("imgd web"):  # serves until stopped: open its URL, then stop it
                gallery_pages.append(visit_gallery(line, env, home, tmp_path))
                continue
            if line.startswith("imgd run"):
                log = (tmp_path / "daemon.log").open("wb")
                daemon = subprocess.Popen(["bash", "-c", f"exec {line}"], env=env, cwd=home, stdout=log, stderr=log)
                wait_until(
                    lambda proc=daemon: answers(proc, socket, tmp_path), timeout=120, what="`imgd run` to answer"
                )
                wait_until(lambda: client.status(socket)["daemon"]["state"] == "idle", timeout=60, what="idle")
                continue
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", line], env=env, cwd=home, capture_output=True, text=True, timeout=300
            )
            allowed = (0, 1) if any(flag in line for flag in NO_MATCH_ALLOWED) else (0,)
            assert done.returncode in allowed, f"{line}\n{done.stdout}\n{done.stderr}"
            ran[line] = done
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0, (tmp_path / "daemon.log").read_text()

    def output(prefix: str) -> subprocess.CompletedProcess[str]:
        return next(done for line, done in ran.items() if line.startswith(prefix))

    assert len(gallery_pages) == 1 and "<title>" in gallery_pages[0]
    model = home / "imgd-models" / "tiny-clip"
    assert output(".venv/bin/python tests/clipkit.py").stdout.startswith(
        f"built a random-weight tiny CLIP model in {model} "
    )
    assert "9 added, 0 updated, 0 moved, 0 removed, 1 failed, 0 unchanged" in output("imgd index ").stderr
    for line in output('imgd search "receipt').stdout.splitlines():
        score, path = line.split("  ", 1)
        assert -1 <= float(score) <= 1.001 and Path(path).is_file(), line
    # The one photo under Pictures/2023 taken with a Pixel after June 2023, landscape, 12 MP.
    filtered = output('imgd search "dog" --in').stdout.splitlines()
    assert len(filtered) == 1 and filtered[0].endswith(f"  {pictures / '2023' / 'PXL_0001.jpg'}")
    similar = output("imgd similar ~/Pictures/IMG_1234.jpg").stdout
    assert similar and "IMG_1234.jpg" not in similar
    assert '"rank": 1,' in output("imgd search --jsonl").stdout and '"id":' in output("imgd search --jsonl").stdout
    assert output("imgd search -0").stdout.count(str(home)) == 9  # ls listed each path -0 gave (all 9)
    status = output("imgd status").stdout
    assert "daemon: running" in status and f"watching: {pictures} (inotify)" in status
    assert "files: 9 indexed (9 unique images), 1 failed" in status  # index's folders, run's watch
    assert output("imgd failed").stdout == f"{pictures / 'broken.jpg'}: not a recognised image format\n"
    assert f'name = "{model}"' in output("imgd config").stdout  # IMGD_MODEL, as exported
    log = (tmp_path / "daemon.log").read_text()
    assert f"INFO loading model {model}" in log and "INFO imgd running: watching" in log

    unit = home / ".config" / "systemd" / "user" / "imgd.service"
    installed = output("imgd service install")
    assert installed.stdout.startswith(f"wrote {unit}\nit watches {pictures}\n"), installed.stdout
    exec_start = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert exec_start[0].endswith(f" --state-dir {home}/.local/share/imgd --model {model} run {pictures}")
    web_unit = unit.with_name("imgd-web.service")  # `imgd service install ~/Pictures --web` rewrote both
    web_exec = [line for line in web_unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert web_exec[0].endswith(f" --state-dir {home}/.local/share/imgd --model {model} web --port 8470 --keep-token")
    assert "http://127.0.0.1:8470/?token=" in output("imgd service install ~/Pictures --web").stdout
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        done = subprocess.run(
            [analyze, "--user", "verify", str(unit)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        said = [line for line in (done.stdout + done.stderr).splitlines() if "imgd" in line]
        assert done.returncode == 0 and not said, done.stdout + done.stderr


def pixel_exif() -> bytes:
    """EXIF as a Pixel phone writes it: make, model, when the photo was taken and where (Lisbon, for Places)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Google", "Pixel 8"
    exif.get_ifd(0x8769)[0x9003] = "2023:07:14 18:02:00"
    degrees = (Fraction(38), Fraction(43), Fraction("20.28")), (Fraction(9), Fraction(8), Fraction("21.48"))
    exif.get_ifd(0x8825).update({1: "N", 2: degrees[0], 3: "W", 4: degrees[1]})
    return exif.tobytes()


def visit_gallery(line: str, env: dict[str, str], home: Path, tmp_path: Path) -> str:
    """Start `imgd web`, open the URL it prints as a browser would (token -> cookie), stop it; the page."""
    out = tmp_path / "web.out"
    # BROWSER: what --open starts; a real one would try to open a window on this display-less machine.
    with out.open("wb") as log:
        gallery = subprocess.Popen(
            ["bash", "-c", f"exec {line}"], env={**env, "BROWSER": "true"}, cwd=home, stdout=log, stderr=log
        )

    def printed() -> bool:
        assert gallery.poll() is None, out.read_text()
        return "imgd gallery: http" in out.read_text()

    try:
        wait_until(printed, timeout=60, what="`imgd web` to print its URL")
        url = re.search(r"imgd gallery: (\S+)", out.read_text())[1]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor())
        with opener.open(url, timeout=30) as response:
            page = response.read().decode()
    finally:
        gallery.send_signal(signal.SIGTERM)
        code = gallery.wait(30)
    assert code in (0, -signal.SIGTERM), out.read_text()  # uvicorn re-raises the signal it caught
    assert "Traceback" not in out.read_text()
    return page


def answers(daemon: subprocess.Popen[bytes], socket: Path, tmp_path: Path) -> bool:
    assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
    try:
        client.status(socket, timeout=5)
    except ImgdError:
        return False
    return True
