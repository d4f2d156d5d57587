"""Make the README's screenshots: the gallery in headless Chromium and a terminal preview in tmux.

A demo library of coloured shapes (tests/shapekit.py) is indexed with the trained shapes model
(tests/models/shapes-clip) and searched for what that model knows, "a red circle": the pictures show
imgd answering a question well, as it does with a real CLIP model on real photos. The terminal
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
from PIL import Image  # noqa: E402
from shapekit import CLASSES, shape_image  # noqa: E402

IMGD = [sys.executable, "-m", "imgd.cli.main"]
MODEL = ROOT / "tests" / "models" / "shapes-clip"  # trained on shapekit's pictures: it knows what it is asked
QUERY = "a red circle"
PER_CLASS = 4  # pictures of each colour and shape: 120 in all


def make_library(pics: Path) -> None:
    """Coloured shapes as shapekit draws them, named and dated as a camera would, so names say nothing."""
    pics.mkdir(parents=True, exist_ok=True)
    order = random.Random(25)
    pictures = [(colour, shape, n) for colour, shape in CLASSES for n in range(PER_CLASS)]
    order.shuffle(pictures)
    for i, (colour, shape, n) in enumerate(pictures):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Fujifilm", "X-T5"
        exif[0x0132] = f"2024:0{1 + i % 9}:{10 + i % 18:02d} 17:{i % 60:02d}:00"
        image = shape_image(colour, shape, seed=n, size=(640, 480))
        image.save(pics / f"DSCF{4100 + i:04d}.jpg", quality=90, exif=exif.tobytes())


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
        model = MODEL
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
                page.wait_for_function("() => document.querySelectorAll('#grid .card').length > 0")  # the newest
                page.fill("#q", QUERY)
                page.press("#q", "Enter")
                page.wait_for_function(  # the answers, with their scores, in place of the newest pictures
                    "() => /^-?\\d\\.\\d{3}$/.test((document.querySelector('#grid .card .score') || {}).textContent)",
                    timeout=300_000,  # the first search loads the model (and, once, prepares it for this machine)
                )
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
