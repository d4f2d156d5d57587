"""Terminal previews: each protocol's bytes decode back to the picture, in a real pty and a real tmux pane."""

from __future__ import annotations

import base64
import fcntl
import io
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import picture, write_image
from imgd.cli import preview
from imgd.cli.group import preview_equals
from imgd.cli.main import cli
from PIL import Image

IMGD = [sys.executable, "-m", "imgd.cli.main"]
ESC = "\x1b"


# -- decoders for what the terminal receives ------------------------------------------------------


def kitty_images(text: str) -> list[Image.Image]:
    """Reassemble kitty graphics commands (a=T, chunked with m=1 ... m=0) into the PNGs they carry."""
    images, payload = [], ""
    for control, chunk in re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", text):
        keys = dict(item.split("=") for item in control.split(","))
        if "a" in keys:
            assert keys["a"] == "T" and keys["f"] == "100" and keys["C"] == "1"
        payload += chunk
        if keys["m"] == "0":
            images.append(Image.open(io.BytesIO(base64.standard_b64decode(payload))))
            payload = ""
    assert payload == "", "an image was left unfinished (no m=0 chunk)"
    return images


def iterm_images(text: str) -> list[Image.Image]:
    images = []
    for args, payload in re.findall(r"\x1b\]1337;File=([^:]*):([^\x07]*)\x07", text):
        fields = dict(item.split("=") for item in args.split(";"))
        data = base64.standard_b64decode(payload)
        assert fields["inline"] == "1" and int(fields["size"]) == len(data)
        image = Image.open(io.BytesIO(data))
        assert (fields["width"], fields["height"]) == (f"{image.width}px", f"{image.height}px")
        images.append(image)
    return images


def decode_sixel(data: str) -> Image.Image:
    """A small DEC sixel decoder: raster attributes, palette (RGB percent), colour passes, RLE, $ and -."""
    match = re.match(r"\x1bP[\d;]*q", data)
    assert match, "not a sixel sequence"
    body = data[match.end() : data.index("\x1b\\")]
    raster = re.match(r'"1;1;(\d+);(\d+)', body)
    assert raster, "no raster attributes"
    width, height = int(raster.group(1)), int(raster.group(2))
    pixels = np.zeros((height, width, 3), dtype=np.int16) - 1  # -1: never painted
    palette: dict[int, tuple[int, int, int]] = {}
    colour, x, y, i = 0, 0, 0, raster.end()
    while i < len(body):
        ch = body[i]
        if ch == "#":
            m = re.match(r"#(\d+)(;2;(\d+);(\d+);(\d+))?", body[i:])
            colour = int(m.group(1))
            if m.group(2):
                palette[colour] = tuple(round(int(m.group(k)) * 255 / 100) for k in (3, 4, 5))
            i += m.end()
            continue
        repeat = 1
        if ch == "!":
            m = re.match(r"!(\d+)(.)", body[i:])
            repeat, ch = int(m.group(1)), m.group(2)
            i += m.end() - 1
        if ch == "$":
            x = 0
        elif ch == "-":
            x, y = 0, y + 6
        elif 63 <= ord(ch) <= 126:
            bits = ord(ch) - 63
            for row in range(6):
                if bits >> row & 1 and y + row < height:
                    pixels[y + row, x : x + repeat] = palette[colour]
            x += repeat
        else:
            raise AssertionError(f"unexpected sixel byte {ch!r}")
        i += 1
    assert (pixels >= 0).all(), "some pixels were never painted"
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def sixel_images(text: str) -> list[Image.Image]:
    return [decode_sixel(m) for m in re.findall(r"\x1bP[\d;]*q.*?\x1b\\", text, flags=re.S)]


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16)).mean())


# -- the encoders ---------------------------------------------------------------------------------


def test_each_protocol_decodes_back_to_the_picture():
    source = picture(3, (200, 120))

    (from_kitty,) = kitty_images(preview.kitty(source))
    (from_iterm,) = iterm_images(preview.iterm(source))
    (from_sixel,) = sixel_images(preview.sixel(source))

    for image in (from_kitty, from_iterm, from_sixel):
        assert image.size == (200, 120)
    assert mean_diff(from_kitty, source) == 0  # PNG: lossless
    assert mean_diff(from_iterm, source) < 4
    assert mean_diff(from_sixel, source) < 4


def test_sixel_survives_many_colours_and_a_height_not_divisible_by_six():
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8), "RGB")

    decoded = decode_sixel(preview.sixel(noisy))

    assert decoded.size == (50, 37)
    assert mean_diff(decoded, noisy) < 40  # 256 colours for random noise: close, not exact


def test_a_large_image_is_sent_to_kitty_in_chunks():
    rng = np.random.default_rng(2)
    noisy = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), "RGB")

    text = preview.kitty(noisy)

    assert text.count(f"{ESC}_G") > 3 and all(
        len(c) <= preview.KITTY_CHUNK for c in re.findall(r";([^;\x1b]*)\x1b", text)
    )
    assert kitty_images(text)[0].size == (160, 120)


def test_half_blocks_pair_two_pixel_rows_per_line():
    two_rows = Image.new("RGB", (4, 2))
    two_rows.putdata([(255, 0, 0)] * 4 + [(0, 0, 255)] * 4)

    lines = preview.blocks(two_rows, cols=4, rows=2)

    assert lines[0] == (f"{ESC}[38;2;255;0;0m{ESC}[48;2;0;0;255m\u2580" * 4) + f"{ESC}[0m"
    assert lines[1] == "    "


def test_an_odd_last_pixel_row_leaves_the_lower_half_to_the_terminal():
    three_rows = Image.new("RGB", (2, 3), (0, 255, 0))

    lines = preview.blocks(three_rows, cols=2, rows=2)

    assert lines[1] == f"{ESC}[38;2;0;255;0m{ESC}[49m\u2580" * 2 + f"{ESC}[0m"


# -- choosing a protocol --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1"}, "kitty"),
        ({"TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, "iterm"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm", "WEZTERM_PANE": "0"}, "iterm"),
        ({"TERM": "xterm-256color", "KONSOLE_VERSION": "230804"}, "iterm"),
        ({"TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"}, "iterm"),
        ({"TERM": "foot"}, "sixel"),
        ({"TERM": "mlterm"}, "sixel"),
        ({"TERM": "xterm-256color", "WT_SESSION": "abc"}, "sixel"),
        ({"TERM": "tmux-256color", "TMUX": "/tmp/tmux-0/default,1,0", "KITTY_WINDOW_ID": "1"}, None),
        ({"TERM": "xterm-256color"}, None),
        ({}, None),
    ],
)
def test_the_terminal_is_recognised_from_its_environment(env, expected):
    assert preview.detect(env) == expected


def test_what_gets_drawn_follows_the_flag_the_config_and_the_terminal():
    kitty_env, plain_env = {"KITTY_WINDOW_ID": "1"}, {"TERM": "xterm-256color"}

    assert preview.choose("kitty", "off", plain_env, is_tty=False) is None  # a pipe gets text only
    assert preview.choose("sixel", "off", kitty_env, is_tty=True) == "sixel"  # the flag wins
    assert preview.choose("auto", "off", kitty_env, is_tty=True) == "kitty"
    assert preview.choose("auto", "off", plain_env, is_tty=True, probe=False) == "blocks"  # bare --preview
    assert preview.choose(None, "auto", plain_env, is_tty=True, probe=False) is None  # config: capable only
    assert preview.choose(None, "auto", kitty_env, is_tty=True) == "kitty"
    assert preview.choose(None, "blocks", plain_env, is_tty=True) == "blocks"
    assert preview.choose("off", "kitty", kitty_env, is_tty=True) is None
    assert preview.choose(None, "off", kitty_env, is_tty=True) is None


# -- the command in real terminals ----------------------------------------------------------------


@pytest.fixture
def library(tmp_path: Path, tiny_model: Path) -> tuple[Path, list[str]]:
    pics = tmp_path / "pics"
    for i in range(4):
        write_image(pics / f"img{i}.jpg", seed=i, size=(1200, 800))
    write_image(pics / "tall.png", seed=9, size=(300, 900))
    base = ["--state-dir", str(tmp_path / "state"), "--model", str(tiny_model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*base, "index", str(pics)])
    assert result.exit_code == 0, result.output
    return pics, base


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "HF_HUB_OFFLINE")}
    return {**keep, "XDG_RUNTIME_DIR": str(tmp_path / "run"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra}


def run_in_pty(args: list[str], env: dict[str, str], cell: tuple[int, int] = (10, 20)) -> str:
    """Run a command with stdout on a 100x40 pty whose cells are `cell` pixels; return what it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 100 * cell[0], 40 * cell[1]))
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, stderr.decode(errors="replace")
    return b"".join(chunks).decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "env", "decoder"),
    [
        (["--preview"], {"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "3"}, kitty_images),
        (["--preview=iterm"], {"TERM": "xterm-256color"}, iterm_images),
        ([], {"TERM": "foot", "IMGD_PREVIEW": "auto"}, sixel_images),  # the config key, on a sixel terminal
    ],
)
def test_search_draws_each_result_on_a_graphics_terminal(library, tmp_path, how, env, decoder):
    pics, base = library

    out = run_in_pty([*IMGD, *base, "search", "--direct", "-k", "5", *how, "a red car"], child_env(tmp_path, **env))

    images = decoder(out)
    text = re.sub(r"\x1b(_G|\]1337|P).*?(\x1b\\|\x07)|\x1b\[[\d;]*[A-Za-z]|\x1b[78]", "", out, flags=re.S)
    assert len(images) == 5
    paths = re.findall(r"-?\d\.\d{4}  (\S+)", text)
    assert sorted(paths) == sorted(str(p) for p in pics.iterdir())
    for path, image in zip(paths, images, strict=True):  # fitted to the 20x8-cell box of 200x160 pixels
        expected = (200, 134) if path.endswith(".jpg") else (53, 160)  # from the 256x171 and 85x256 thumbnails
        assert image.size == expected
        source = Image.open(path).convert("RGB").resize(expected, Image.Resampling.BOX)
        assert mean_diff(image, source) < 16


@pytest.mark.slow
def test_half_blocks_render_in_a_tmux_pane(library, tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (.ci/run installs it)")
    pics, base = library
    socket = str(tmp_path / "tmux.sock")
    command = " ".join([*IMGD, *base, "search", "--direct", "-k", "2", "--preview", "'a red car'"])
    env = child_env(tmp_path, TERM="xterm-256color")
    tmux = ["tmux", "-S", socket]
    subprocess.run(
        [*tmux, "-f", "/dev/null", "new-session", "-d", "-x", "400", "-y", "30", f"{command}; sleep 600"],
        env=env,
        check=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            plain = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if plain.count(str(pics)) >= 2:
                break
            time.sleep(0.2)
        coloured = subprocess.run([*tmux, "capture-pane", "-p", "-e"], capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)

    lines = plain.splitlines()
    firsts = [i for i, line in enumerate(lines) if str(pics) in line]
    assert len(firsts) == 2 and firsts[1] - firsts[0] == preview.ROWS
    for i in firsts:  # a 20-cell picture, then the result line beside it
        assert re.fullmatch(r"\u2580+ *  -?\d\.\d{4}  \S+", lines[i]) and lines[i][20:22] == "  "
        assert all(re.fullmatch(r"\u2580+", lines[i + k].rstrip()) for k in range(1, 7))
    assert re.search(r"\x1b\[38;2;\d+;\d+;\d+m", coloured) or re.search(r"\x1b\[38:2::\d+:\d+:\d+m", coloured)


@pytest.mark.slow
def test_a_pipe_gets_plain_lines_whatever_the_flag_says(library, tmp_path):
    pics, base = library
    env = child_env(tmp_path, TERM="xterm-kitty", KITTY_WINDOW_ID="1", IMGD_PREVIEW="kitty")

    piped = subprocess.run(
        [*IMGD, *base, "search", "--direct", "-k", "2", "--preview=kitty", "a red car"],
        capture_output=True,
        env=env,
        check=True,
    )

    assert ESC.encode() not in piped.stdout
    assert [line.split(b"  ")[1] for line in piped.stdout.splitlines()] != []
    assert all(Path(line.split(b"  ", 1)[1].decode()).parent == pics for line in piped.stdout.splitlines())


@pytest.mark.slow
def test_a_bare_preview_before_the_query_still_reads_the_query(library):
    pics, base = library
    runner = CliRunner()

    bare = runner.invoke(cli, [*base, "search", "--direct", "-k", "2", "--preview", "a red car"])
    plain = runner.invoke(cli, [*base, "search", "--direct", "-k", "2", "a red car"])
    similar = runner.invoke(cli, [*base, "similar", "--direct", "-k", "2", "--preview", str(pics / "img1.jpg")])
    similar_plain = runner.invoke(cli, [*base, "similar", "--direct", "-k", "2", str(pics / "img1.jpg")])
    last = runner.invoke(cli, [*base, "search", "--direct", "-k", "2", "a red car", "--preview"])

    assert bare.exit_code == 0 and bare.stdout == plain.stdout and ESC not in bare.stdout
    assert similar.exit_code == 0 and similar.stdout == similar_plain.stdout and len(similar.stdout.splitlines()) == 2
    assert last.exit_code == 0 and last.stdout == plain.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["red", "--preview", "block"], "--preview takes its mode after '=' (--preview=blocks); to search for 'block'"),
        (["red", "--preview", "kitty"], "(--preview=kitty); to search for 'kitty', write it before --preview."),
        (["red", "--preview=block"], "--preview= takes one of auto, off, kitty, iterm, sixel, blocks, not 'block'."),
        (["red", "--preview="], "--preview= takes one of auto, off, kitty, iterm, sixel, blocks, not ''."),
    ],
)
def test_a_preview_mode_is_never_a_search_term(tmp_path, args, message):
    """`--preview block` searched for "red block": a mode, or nearly one, after a bare --preview is refused."""
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "search", *args])

    assert result.exit_code == 2
    assert result.stderr == f"Error: {result.stderr.removeprefix('Error: ').splitlines()[0]}\n"  # one line
    assert message in result.stderr and "Traceback" not in result.output


def test_words_after_a_double_dash_are_terms_even_when_they_read_as_options():
    assert preview_equals(["search", "--preview", "red", "--", "--preview", "kitty"]) == [
        "search",
        "--preview=auto",
        "red",
        "--",
        "--preview",
        "kitty",
    ]


def test_the_preview_and_cache_keys_are_read_and_checked(tmp_path):
    from imgd.daemon import config
    from imgd.daemon.errors import ConfigError

    good = tmp_path / "good.toml"
    good.write_text('[search]\npreview = "auto"\n[thumbnails]\ncache_mb = 64\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[search]\npreview = "sparkly"\n')

    loaded = config.load(good, env={})
    assert (loaded.preview, loaded.thumbnail_cache_mb) == ("auto", 64)
    assert config.load(None, env={"IMGD_PREVIEW": "sixel"}).preview == "sixel"
    with pytest.raises(ConfigError, match=r"search\.preview.*expected one of off, auto"):
        config.load(bad, env={})
    with pytest.raises(ConfigError, match="thumbnails.cache_mb"):
        config.load(None, {"thumbnail_cache_mb": 0}, env={})
