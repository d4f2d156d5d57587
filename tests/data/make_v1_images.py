"""Write the images behind tests/data/catalog-v1.db (kept for the record; the catalog was made once).

    python tests/data/make_v1_images.py /tmp/imgd-v1/images
    imgd --state-dir /tmp/imgd-v1/state --model /work/cache/tiny-clip index /tmp/imgd-v1/images

run with imgd at commit 1fecb1d (schema version 1), before migrations existed. The catalog (its WAL
checkpointed into it), the index file that run saved (index-v1.faiss) and these images are kept in
tests/data/; tests open copies of them.
"""

from __future__ import annotations

import random
import shutil
import sys
from fractions import Fraction
from pathlib import Path

from PIL import Image


def picture(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    rng = random.Random(seed)
    grid = Image.new("RGB", (4, 3))
    grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(12)])
    return grid.resize(size, Image.Resampling.NEAREST)


def dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 100), 100)
    return Fraction(degrees), Fraction(minutes), seconds


def exif_for(
    make: str,
    model: str,
    taken: str,
    offset: str | None,
    lat: float,
    lon: float,
    lens: str | None,
    orientation: int = 1,
) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    if lens:
        sub[0xA434] = lens
    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(abs(lat))
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(abs(lon))
    return exif.tobytes()


def main(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    picture(1).save(
        root / "paris.jpg",
        exif=exif_for(
            "Canon", "Canon EOS R5", "2021:06:05 14:03:22", "+02:00", 48.858222, 2.2945, "RF24-105mm F4 L IS USM"
        ),
        quality=80,
    )
    picture(2).save(  # stored 96x64, shown 64x96 (orientation 6: rotate 90 clockwise)
        root / "rotated.jpg",
        exif=exif_for("Apple", "iPhone 12", "2019:12:31 23:59:59", None, 40.689167, -74.044444, None, orientation=6),
        quality=80,
    )
    picture(3, (80, 80)).save(root / "plain.png")
    (root / "album").mkdir(exist_ok=True)
    shutil.copyfile(root / "paris.jpg", root / "album" / "paris-copy.jpg")
    (root / "broken.jpg").write_bytes(b"this is not an image\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
