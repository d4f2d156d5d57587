"""Thumbnails beside search results in the terminal: kitty, iTerm2, sixel, or Unicode half-blocks.

The protocols are short enough to write here (the libraries that cover them either miss sixel or
bring a TUI framework along). Thumbnails come from the state folder's cache, the one the web
gallery uses. Nothing but text is written when stdout is not a terminal.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import os
import re
import select
import struct
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:  # Pillow and numpy only once a preview is really drawn
    from imgd.daemon.config import Config
    from PIL import Image

PROTOCOLS = ("kitty", "iterm", "sixel", "blocks")
MODES = ("auto", "off", *PROTOCOLS)
COLS, ROWS = 20, 8  # the box each thumbnail is drawn in, in terminal cells
DEFAULT_CELL = (10, 20)  # pixels of one cell when the terminal does not say
KITTY_CHUNK = 4096
GAP = 2  # cells between the thumbnail and its line

# Environment variables and values that name a terminal and what it draws.
_KITTY_TERMS = ("xterm-kitty", "xterm-ghostty")
_ITERM_PROGRAMS = ("iTerm.app", "WezTerm", "mintty")
_SIXEL_TERMS = ("foot", "foot-extra", "mlterm", "yaft-256color", "contour")


class _EqualsOption(click.Option):
    """An option whose value follows `=`: its help shows `--preview[=MODE]`, as it is written."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        return None if record is None else (record[0].replace(" =", "[=", 1) + "]", record[1])


# `--preview=MODE` only: the group (group.py) turns a bare `--preview` into `--preview=auto` before
# parsing, so the word after it is always a term or a path, never taken as a mode.
option = click.option(
    "--preview",
    "preview_mode",
    default=None,
    metavar="=MODE",
    cls=_EqualsOption,
    help=f"Draw a thumbnail beside each result; MODE is one of {', '.join(MODES)} "
    "(bare --preview: auto, drawing on any terminal; default: [search] preview).",
)


def detect(env: Mapping[str, str]) -> str | None:
    """The graphics protocol this terminal speaks, from its environment; None when it does not say."""
    term = env.get("TERM", "")
    program = env.get("TERM_PROGRAM", "")
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return None  # tmux and screen pass graphics through only when configured to: half-blocks
    if env.get("KITTY_WINDOW_ID") or term in _KITTY_TERMS or program == "ghostty":
        return "kitty"
    if (
        program in _ITERM_PROGRAMS
        or env.get("LC_TERMINAL") == "iTerm2"  # iTerm2 over ssh
        or env.get("WEZTERM_EXECUTABLE")
        or env.get("WEZTERM_PANE")
        or env.get("KONSOLE_VERSION")
        or term.startswith("mintty")
    ):
        return "iterm"
    if term in _SIXEL_TERMS or env.get("WT_SESSION") or program in ("contour", "mlterm"):
        return "sixel"
    return None


def probe_sixel(timeout: float = 0.2) -> bool:
    """Ask the terminal for its attributes (DA1); attribute 4 means sixel graphics (xterm -ti vt340)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    try:
        old = termios.tcgetattr(fd)
    except termios.error:
        os.close(fd)
        return False
    try:
        new = termios.tcgetattr(fd)
        new[3] &= ~(termios.ICANON | termios.ECHO)
        termios.tcsetattr(fd, termios.TCSANOW, new)
        os.write(fd, b"\x1b[c")
        answer = b""
        deadline = time.monotonic() + timeout
        while not answer.endswith(b"c") and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            answer += os.read(fd, 64)
    except OSError:
        return False
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, old)
        os.close(fd)
    match = re.search(rb"\x1b\[\?([\d;]*)c", answer)
    return bool(match) and b"4" in match.group(1).split(b";")[1:]


def choose(option: str | None, configured: str, env: Mapping[str, str], is_tty: bool, probe: bool = True) -> str | None:
    """The protocol to draw with, or None for plain text.

    A bare --preview always draws (half-blocks where nothing better is known); the config's "auto"
    draws only on a terminal that shows real images.
    """
    if not is_tty:
        return None
    wanted = option if option is not None else configured
    if wanted == "off":
        return None
    if wanted in PROTOCOLS:
        return wanted
    found = detect(env)
    if found is None and probe and not (env.get("TMUX") or env.get("TERM", "").startswith(("screen", "tmux"))):
        found = "sixel" if probe_sixel() else None
    if found is None and option == "auto":
        return "blocks"
    return found


def cell_size(stream: TextIO) -> tuple[int, int]:
    """Pixels of one character cell, from the terminal's window size; a common default otherwise."""
    try:
        rows, cols, xpixel, ypixel = struct.unpack("HHHH", fcntl.ioctl(stream.fileno(), termios.TIOCGWINSZ, b"\0" * 8))
    except (OSError, ValueError, io.UnsupportedOperation):
        return DEFAULT_CELL
    if not (rows and cols and xpixel and ypixel):
        return DEFAULT_CELL
    return max(1, xpixel // cols), max(1, ypixel // rows)


# -- the encoders -----------------------------------------------------------------------------


def fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """Scale to the largest size inside box, keeping the aspect ratio (small pictures grow too)."""
    from PIL import Image

    scale = min(box[0] / image.width, box[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def kitty(image: Image.Image) -> str:
    """The kitty graphics protocol: a PNG in base64 chunks; C=1 leaves the cursor where it was."""
    payload = base64.standard_b64encode(encode(image, "PNG")).decode("ascii")
    chunks = [payload[i : i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)]
    out = []
    for n, chunk in enumerate(chunks):
        more = int(n < len(chunks) - 1)
        head = f"a=T,f=100,q=2,C=1,m={more}" if n == 0 else f"m={more}"
        out.append(f"\x1b_G{head};{chunk}\x1b\\")
    return "".join(out)


def iterm(image: Image.Image) -> str:
    """The iTerm2 inline-image protocol (also WezTerm, Konsole, mintty): a whole file in base64."""
    data = encode(image, "JPEG")
    payload = base64.standard_b64encode(data).decode("ascii")
    return (
        f"\x1b]1337;File=inline=1;size={len(data)};width={image.width}px;height={image.height}px;"
        f"preserveAspectRatio=1:{payload}\x07"
    )


def _run_length(chars: str) -> str:
    return re.sub(r"(.)\1{3,}", lambda m: f"!{len(m.group())}{m.group(1)}", chars)


def sixel(image: Image.Image) -> str:
    """DEC sixel: a palette of at most 256 colours, then bands of six pixel rows, one pass per colour."""
    import numpy as np
    from PIL import Image

    quantized = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    indices = np.asarray(quantized, dtype=np.uint8)
    palette = quantized.getpalette() or []
    height, width = indices.shape
    out = [f'\x1bPq"1;1;{width};{height}']
    for colour in map(int, np.unique(indices)):
        r, g, b = palette[3 * colour : 3 * colour + 3]
        out.append(f"#{colour};2;{round(r * 100 / 255)};{round(g * 100 / 255)};{round(b * 100 / 255)}")
    for top in range(0, height, 6):
        band = indices[top : top + 6]
        weights = (1 << np.arange(band.shape[0], dtype=np.uint8))[:, None]
        passes = []
        for colour in map(int, np.unique(band)):
            bits = ((band == colour) * weights).sum(axis=0, dtype=np.uint8) + 63
            chars = bits.tobytes().decode("ascii").rstrip("?")  # "?" draws nothing
            passes.append(f"#{colour}{_run_length(chars)}")
        out.append("$".join(passes) + "-")
    out.append("\x1b\\")
    return "".join(out)


def blocks(image: Image.Image, cols: int, rows: int) -> list[str]:
    """Unicode upper half-blocks: one cell shows two pixels, the top as foreground, the bottom as background."""
    import numpy as np

    small = fit(image, (cols, rows * 2))
    pixels = np.asarray(small, dtype=np.uint8)
    lines = []
    for y in range(0, pixels.shape[0], 2):
        if y + 1 < pixels.shape[0]:
            cells = [
                f"\x1b[38;2;{t[0]};{t[1]};{t[2]}m\x1b[48;2;{b[0]};{b[1]};{b[2]}m\u2580"
                for t, b in zip(pixels[y], pixels[y + 1], strict=True)
            ]
        else:  # an odd last pixel row: its lower half stays the terminal's own background
            cells = [f"\x1b[38;2;{t[0]};{t[1]};{t[2]}m\x1b[49m\u2580" for t in pixels[y]]
        lines.append("".join(cells) + "\x1b[0m" + " " * (cols - small.width))
    blank = " " * cols
    return lines + [blank] * (rows - len(lines))


@dataclass
class Drawer:
    """Draw one thumbnail and its text line in a COLS x ROWS box, the line to the right of it."""

    protocol: str
    cell: tuple[int, int] = DEFAULT_CELL
    cols: int = COLS
    rows: int = ROWS

    @property
    def box(self) -> tuple[int, int]:
        return self.cols * self.cell[0], self.rows * self.cell[1]

    def draw(self, image: Image.Image | None, line: str) -> str:
        if self.protocol == "blocks":
            art = blocks(image, self.cols, self.rows) if image is not None else [" " * self.cols] * self.rows
            gap = " " * GAP
            return "".join(f"{row}{gap}{line if i == 0 else ''}\n" for i, row in enumerate(art))
        if image is None:
            return " " * (self.cols + GAP) + line + "\n"
        picture = fit(image, self.box)
        graphic = {"kitty": kitty, "iterm": iterm, "sixel": sixel}[self.protocol](picture)
        rows = -(-picture.height // self.cell[1])
        # Make room first, so the drawing cannot scroll the screen under the saved cursor; then draw,
        # go back, write the line beside the picture and move below it.
        return "\n" * rows + f"\x1b[{rows}A\x1b7" + graphic + f"\x1b8\x1b[{self.cols + GAP}C" + line + f"\r\x1b[{rows}B"


def echo_hits(
    hits: Sequence[Mapping[str, Any]],
    lines: Sequence[str],
    option: str | None,
    config: Config,
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Print each result line, with its thumbnail beside it when the terminal and the options allow."""
    stream = stream or sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    protocol = choose(option, config.preview, os.environ if env is None else env, is_tty)
    if protocol is None or not hits:
        for line in lines:
            stream.write(line + "\n")
        stream.flush()
        return
    from imgd.daemon.api.thumbnails import GRID_SIDE, VIEW_SIDE, open_cache
    from imgd.daemon.errors import ImgdError
    from PIL import Image

    drawer = Drawer(protocol, cell_size(stream))
    side = GRID_SIDE if max(drawer.box) <= GRID_SIDE or protocol == "blocks" else VIEW_SIDE
    with open_cache(config) as cache:
        futures: list[Any] = []
        for hit in hits:
            try:
                futures.append(cache.submit(hit["path"], side, hit.get("time") or 0.0))  # a video's best frame
            except ImgdError:
                futures.append(None)
        for line, future in zip(lines, futures, strict=True):
            image = None
            if future is not None:
                try:
                    image = Image.open(io.BytesIO(future.result().data))
                except ImgdError:
                    image = None  # vanished or unreadable since the search: the line alone
            stream.write(drawer.draw(image, line))
            stream.flush()
