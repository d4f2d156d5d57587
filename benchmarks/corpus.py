"""Generate a corpus of camera-sized JPEGs (4000x3000, unique content, ~3-5 MB at quality 92).

Each picture is a smooth random colour field with random shapes and sensor-like noise, seeded by
its number so the corpus is reproducible. About a quarter carry an EXIF orientation tag (6, 8 or 3)
and are stored rotated the way a camera writes them, so `ImageOps.exif_transpose` makes them upright.
Files that already exist are kept, so a corpus can be grown or reused between runs.

    python benchmarks/corpus.py OUT --count N
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 4000, 3000
QUALITY = 92
ORIENTATION_TAG = 0x0112
# The transpose that turns an upright picture into what a camera stores for each tag; the
# inverse of what exif_transpose applies when reading (6 -> ROTATE_270, 8 -> ROTATE_90).
STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def orientation_for(number: int) -> int:
    """Every 4th picture is rotated, cycling through the three common tags."""
    return (1, 6, 1, 8, 1, 3, 1, 1)[number % 8]


def file_name(number: int) -> str:
    return f"IMG_{number:05d}.jpg"


def upright_picture(number: int, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """A unique, upright RGB picture: colour field + shapes + blur + noise."""
    rng = np.random.default_rng(1_000_003 * (number + 1))
    # A low-frequency colour field: a tiny random grid scaled up smoothly.
    grid = rng.integers(0, 256, size=(rng.integers(3, 7), rng.integers(4, 9), 3), dtype=np.uint8)
    image = Image.fromarray(grid, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    # A light "sky" at the top so the picture has an up.
    sky = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None, None] ** 2
    base = np.asarray(image, dtype=np.float32)
    base = base * (1 - 0.5 * sky) + 0.5 * sky * np.array([200, 220, 255], dtype=np.float32)
    image = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(8, 24))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(height // 5, height))
        w, h = int(rng.integers(width // 40, width // 4)), int(rng.integers(height // 40, height // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        shape = (x0, y0, x0 + w, y0 + h)
        if rng.random() < 0.5:
            draw.ellipse(shape, fill=colour)
        else:
            draw.rectangle(shape, fill=colour)
    for _ in range(int(rng.integers(20, 60))):
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.line(points, fill=colour, width=int(rng.integers(4, 40)))
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(2.0, 6.0))))
    # Sensor-like noise: what makes a camera JPEG 3-5 MB instead of a few hundred KB.
    noisy = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-7, 8, size=(height, width, 1), dtype=np.int16)
    noise = noise + rng.integers(-3, 4, size=(height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy + noise, 0, 255).astype(np.uint8), "RGB")


def make_one(out: Path, number: int) -> tuple[str, int, bool]:
    """Write picture `number` unless it exists; returns (name, bytes, written)."""
    path = out / file_name(number)
    if path.exists():
        return path.name, path.stat().st_size, False
    picture = upright_picture(number)
    orientation = orientation_for(number)
    exif = Image.Exif()
    exif[0x010F] = "imgd-bench"  # Make
    exif[0x0110] = "synthetic"  # Model
    exif[ORIENTATION_TAG] = orientation
    if orientation in STORE_TRANSPOSE:
        picture = picture.transpose(STORE_TRANSPOSE[orientation])
    tmp = out / f".{path.name}.tmp"
    picture.save(tmp, "JPEG", quality=QUALITY, exif=exif.tobytes())
    os.replace(tmp, path)
    return path.name, path.stat().st_size, True


def generate(out: Path, count: int, jobs: int = 2) -> list[Path]:
    """Make sure OUT holds pictures 0..count-1; returns their paths in order."""
    out.mkdir(parents=True, exist_ok=True)
    missing = [n for n in range(count) if not (out / file_name(n)).exists()]
    if missing:
        started = time.monotonic()
        print(f"corpus: writing {len(missing)} of {count} pictures into {out}", file=sys.stderr)
        if jobs > 1 and len(missing) > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(make_one, [out] * len(missing), missing))
        else:
            for number in missing:
                make_one(out, number)
        print(f"corpus: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return [out / file_name(n) for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to fill")
    parser.add_argument("--count", type=int, default=96, help="number of pictures (default 96)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = parser.parse_args()
    paths = generate(args.out, args.count, args.jobs)
    sizes = np.array([p.stat().st_size for p in paths], dtype=np.float64) / 1e6
    print(
        f"{len(paths)} pictures in {args.out}: {sizes.sum():.0f} MB, "
        f"{sizes.min():.1f}/{np.median(sizes):.1f}/{sizes.max():.1f} MB min/median/max"
    )


if __name__ == "__main__":
    main()
