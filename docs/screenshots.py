"""Make the README's screenshots: the gallery in headless Chromium and a terminal preview in tmux.

A demo library of drawn scenes is indexed with the random-weight test model (tests/clipkit.py),
so the ranking in the pictures is arbitrary; everything else is what imgd shows. The terminal
picture is a real tmux pane running `imgd search --preview=blocks`, read back with
`capture-pane -e` and drawn cell by cell.

    .venv/bin/python docs/screenshots.py            # writes docs/gallery.png, docs/terminal-preview.png
"""

from __future__ import annotations

import html
import io
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import browserkit  # noqa: E402
from clipkit import build_clip  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

IMGD = [sys.executable, "-m", "imgd.cli.main"]
QUERY = "sunset by the sea"
SCENES = ("sunset", "mountains", "forest", "beach", "night", "flowers")


def scene(kind: str, seed: int, size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A simple drawn landscape of the given kind, varied by seed."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    top, bottom = {
        "sunset": ((70, 40, 120), (250, 140, 60)),
        "mountains": ((90, 150, 230), (200, 225, 250)),
        "forest": ((120, 170, 210), (210, 230, 200)),
        "beach": ((60, 150, 235), (190, 225, 250)),
        "night": ((5, 8, 30), (30, 40, 90)),
        "flowers": ((140, 190, 240), (220, 235, 250)),
    }[kind]
    horizon = int(height * rng.uniform(0.5, 0.7))
    for y in range(horizon):
        t = y / horizon
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    if kind == "sunset":
        r = rng.randint(90, 160)
        cx = rng.randint(r, width - r)
        draw.ellipse((cx - r, horizon - r, cx + r, horizon + r), fill=(255, 200, 90))
        draw.rectangle((0, horizon, width, height), fill=(40, 40, 90))
        for _ in range(40):
            y = rng.randint(horizon, height)
            draw.line([(cx - rng.randint(20, 200), y), (cx + rng.randint(20, 200), y)], fill=(250, 170, 80), width=4)
    elif kind == "mountains":
        draw.rectangle((0, horizon, width, height), fill=(70, 110, 60))
        for _ in range(5):
            x = rng.randint(-200, width)
            peak = rng.randint(height // 6, horizon - 50)
            w = rng.randint(300, 700)
            draw.polygon([(x, horizon), (x + w // 2, peak), (x + w, horizon)], fill=(110, 110, 125))
            draw.polygon(
                [(x + w // 2 - w // 10, peak + 60), (x + w // 2, peak), (x + w // 2 + w // 10, peak + 60)],
                fill=(245, 245, 250),
            )
    elif kind == "forest":
        draw.rectangle((0, horizon, width, height), fill=(50, 90, 40))
        for _ in range(30):
            x, h = rng.randint(0, width), rng.randint(200, 600)
            y = rng.randint(horizon, height)
            draw.polygon([(x - h // 5, y), (x, y - h), (x + h // 5, y)], fill=(20, rng.randint(60, 100), 30))
    elif kind == "beach":
        sea = horizon + (height - horizon) // 2
        draw.rectangle((0, horizon, width, sea), fill=(30, 110, 170))
        draw.rectangle((0, sea, width, height), fill=(230, 210, 160))
        for _ in range(6):
            x = rng.randint(0, width)
            draw.line([(x, sea), (x + rng.randint(-40, 40), sea - 200)], fill=(90, 60, 30), width=10)
    elif kind == "night":
        draw.rectangle((0, horizon, width, height), fill=(15, 15, 25))
        for _ in range(12):
            x, w, h = rng.randint(0, width), rng.randint(80, 220), rng.randint(200, 700)
            draw.rectangle((x, horizon - h, x + w, height), fill=(25, 25, 40))
            for _ in range(25):
                wx, wy = rng.randint(x + 5, x + w - 20), rng.randint(horizon - h + 10, height - 20)
                draw.rectangle((wx, wy, wx + 12, wy + 16), fill=(250, 220, 120))
    else:
        draw.rectangle((0, horizon, width, height), fill=(60, 130, 50))
        for _ in range(80):
            x, y, r = rng.randint(0, width), rng.randint(horizon, height), rng.randint(10, 35)
            colour = rng.choice([(230, 60, 80), (250, 210, 60), (240, 240, 250), (180, 90, 220)])
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(2))


def make_library(pics: Path, count: int = 24) -> None:
    for i in range(count):
        kind = SCENES[i % len(SCENES)]
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Fujifilm", "X-T5"
        exif[0x0132] = f"2024:0{1 + i % 9}:{10 + i % 18:02d} 17:{i:02d}:00"
        pics.mkdir(parents=True, exist_ok=True)
        scene(kind, i).save(pics / f"{kind}-{i:02d}.jpg", quality=88, exif=exif.tobytes())


def small_png(data: bytes, path: Path, colours: int = 256) -> None:
    """Save a screenshot as a palette PNG: a fraction of the size, fine for a README."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def ansi_to_html(text: str) -> str:
    """tmux's `capture-pane -e` output (SGR colours only) as HTML spans."""
    out, fg, bg = [], None, None
    for part in re.split(r"(\x1b\[[\d;:]*m)", text):
        if part.startswith("\x1b["):
            params = [int(p) if p else 0 for p in re.split(r"[;:]", part[2:-1])] or [0]
            i = 0
            while i < len(params):
                p = params[i]
                if p == 0:
                    fg = bg = None
                elif p in (38, 48) and i + 4 < len(params) + 1 and params[i + 1] == 2:
                    rgb = tuple(params[i + 2 : i + 5])
                    fg, bg = (rgb, bg) if p == 38 else (fg, rgb)
                    i += 4
                elif p == 39:
                    fg = None
                elif p == 49:
                    bg = None
                i += 1
            continue
        if not part:
            continue
        style = []
        if fg:
            style.append(f"color:rgb{fg}")
        if bg:
            style.append(f"background:rgb{bg}")
        escaped = html.escape(part)
        out.append(f'<span style="{";".join(style)}">{escaped}</span>' if style else escaped)
    return "".join(out)


def terminal_shot(browser, state: Path, model: Path, tmp: Path) -> bytes:
    socket = str(tmp / "tmux.sock")
    tmux = ["tmux", "-S", socket]
    command = (
        f"printf '$ imgd search --preview=blocks -k 3 \"{QUERY}\"\\n'; "
        f"{' '.join(IMGD)} --state-dir {state} --model {model} search --direct --preview=blocks -k 3 '{QUERY}'; "
        "sleep 600"
    )
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    subprocess.run(
        [*tmux, "-f", "/dev/null", "new-session", "-d", "-x", "110", "-y", "28", command], env=env, check=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            plain = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if plain.count(".jpg") >= 3:
                break
            time.sleep(0.5)
        coloured = subprocess.run([*tmux, "capture-pane", "-p", "-e"], capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    lines = coloured.rstrip("\n").splitlines()
    body = "\n".join(ansi_to_html(line) for line in lines)
    page = browser.new_page(viewport={"width": 1000, "height": 600})
    page.set_content(
        "<style>body{margin:0;background:#1e1e1e}"
        "pre{margin:0;padding:12px 16px;color:#ddd;font:15px/1 'DejaVu Sans Mono',monospace;display:inline-block}"
        f"</style><pre id=t>{body}</pre>"
    )
    shot = page.locator("#t").screenshot()
    page.close()
    return shot


def main() -> None:
    from imgd.daemon import config as config_module
    from imgd.daemon.embedders import load_embedder
    from imgd.web.server import Gallery

    out = ROOT / "docs"
    with tempfile.TemporaryDirectory(prefix="imgd-shots-") as tmp:
        tmp_path = Path(tmp)
        model = build_clip(tmp_path / "tiny-clip")
        pics, state = tmp_path / "Pictures", tmp_path / "state"
        make_library(pics)
        subprocess.run([*IMGD, "--state-dir", str(state), "--model", str(model), "index", str(pics)], check=True)
        config = config_module.load(None, {"state_dir": state, "model": str(model), "device": "cpu"}, env={})
        gallery = Gallery(config, lambda name: load_embedder(name, device="cpu"), port=0)
        gallery.start()
        try:
            with browserkit.chromium() as browser:
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(gallery.url)
                page.fill("#q", QUERY)
                page.press("#q", "Enter")
                page.wait_for_function(
                    "() => { const i = [...document.querySelectorAll('#grid .card img')];"
                    " return i.length >= 18 && i.every(x => x.complete && x.naturalWidth > 0); }"
                )
                page.wait_for_function("() => document.getElementById('status').textContent.includes('images')")
                small_png(page.screenshot(), out / "gallery.png")
                page.locator("#grid .card").nth(1).click()
                page.wait_for_function("() => document.getElementById('full').naturalWidth > 0")
                page.wait_for_function("() => document.getElementById('v-details').textContent.includes('Camera')")
                small_png(page.screenshot(), out / "gallery-view.png")
                page.close()
                small_png(terminal_shot(browser, state, model, tmp_path), out / "terminal-preview.png")
        finally:
            gallery.stop()


if __name__ == "__main__":
    main()
