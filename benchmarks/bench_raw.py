"""RAW indexing: the embedded preview vs the JPEG of the same pictures, and the half-size demosaic.

Writes --count pictures of --size (shapes drawn small, scaled up, with sensor-like noise) three ways:
a JPEG (quality 92); a DNG (16-bit Bayer mosaic, written by pidng) carrying a full-size JPEG preview
(as Canon and Nikon embed); a DNG with no preview (LibRaw demosaics it at half size). Then, for each:
(a) the decode stage alone, single-threaded: read + hash, then decode_with_meta, median ms per file;
(b) `Engine.reconcile` of the folder into a fresh catalog, the embedder loaded once beforehand:
    files per second end to end (decode threads and batched embedding, as `imgd index` runs them).

    python benchmarks/bench_raw.py --count 24 --size 4000x3000

--compare-read runs every folder twice in one process: with the reader as it is, and with the reader
before issue 23's RAW-rate fix (1 MiB chunks joined), so before/after is one run's ratio.
--kinds picks the folders (jpeg, raw-preview, raw-demosaic).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from common import log
from PIL import Image

sys.path.insert(0, str(common.REPO / "tests"))


def pictures(count: int, size: tuple[int, int]) -> list[Image.Image]:
    from shapekit import CLASSES, shape_image

    rng = np.random.default_rng(7)
    out = []
    for number in range(count):
        colour, shape = CLASSES[number % len(CLASSES)]
        small = shape_image(colour, shape, seed=number, size=(size[0] // 8, size[1] // 8))
        big = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        big += rng.normal(0, 4, big.shape)  # grain, so the JPEG is as large as a camera's
        out.append(Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)))
    return out


def write_folders(root: Path, images: list[Image.Image]) -> dict[str, Path]:
    from rawkit import dng_bytes

    folders = {name: root / name for name in ("jpeg", "raw-preview", "raw-demosaic")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for number, image in enumerate(images):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        (folders["jpeg"] / f"IMG_{number:04d}.JPG").write_bytes(buffer.getvalue())
        (folders["raw-preview"] / f"IMG_{number:04d}.DNG").write_bytes(dng_bytes(image, preview=image))
        (folders["raw-demosaic"] / f"IMG_{number:04d}.DNG").write_bytes(dng_bytes(image))
    return folders


def chunked_read(path: str) -> bytes:
    """The file reader before the RAW-rate fix: 1 MiB reads joined (every byte written twice)."""
    import os

    from imgd.daemon.ingest import imaging

    fd, info = imaging._open_regular(path)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_ms(folder: Path, max_pixels: int) -> tuple[float, float, float]:
    """Median ms per file of the read, of the hash, and of decode_with_meta, single-threaded."""
    from imgd.daemon.ingest import imaging

    reading, hashing, decoding = [], [], []
    for path in sorted(folder.iterdir()):
        started = time.perf_counter()
        data = imaging.read_bytes(str(path))
        read = time.perf_counter()
        imaging.digest_bytes(data)
        hashed = time.perf_counter()
        imaging.decode_with_meta(str(path), data, max_pixels)
        reading.append(read - started)
        hashing.append(hashed - read)
        decoding.append(time.perf_counter() - hashed)
    return tuple(1000 * statistics.median(values) for values in (reading, hashing, decoding))  # type: ignore[return-value]


def index_rate(folder: Path, model: Path, embedder: object, state: Path) -> tuple[float, int]:
    from imgd.daemon import config as config_module
    from imgd.daemon.service.library import open_library

    config = config_module.load(
        None, {"state_dir": state, "model": str(model), "device": "cpu", "backend": "torch"}, env={}
    )
    lib = open_library(config, embedder)
    try:
        started = time.perf_counter()
        summary = lib.engine.reconcile([folder])
        seconds = time.perf_counter() - started
    finally:
        lib.close()
    return summary.added / seconds, summary.failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of each picture (even numbers)")
    parser.add_argument("--model", type=Path, default=None, help="a CLIP folder (default: a random ViT-B/32)")
    parser.add_argument("--compare-read", action="store_true", help="each folder also with the chunked reader")
    parser.add_argument("--kinds", default="jpeg,raw-preview,raw-demosaic", help="the folders to measure")
    parser.add_argument("--folder", type=Path, default=None, help="pictures written by an earlier run: reused")
    args = parser.parse_args()
    size = tuple(int(part) for part in args.size.split("x"))
    model = args.model or common.ensure_model()
    from imgd.daemon.embedders import load_embedder

    embedder = load_embedder(str(model), device="cpu", batch_size=32, backend="torch")
    with tempfile.TemporaryDirectory(prefix="imgd-bench-raw-") as tmp:
        root = Path(tmp)
        if args.folder is not None and args.folder.exists():
            folders = {name: args.folder / name for name in ("jpeg", "raw-preview", "raw-demosaic")}
            args.count = len(list(folders["jpeg"].iterdir()))
        else:
            log(f"writing {args.count} pictures of {size[0]}x{size[1]} three ways")
            folders = write_folders(args.folder or root / "pics", pictures(args.count, size))  # type: ignore[arg-type]
        from imgd.daemon.ingest import imaging

        whole_read = imaging.read_bytes
        readers = [("", whole_read), (" (chunked)", chunked_read)] if args.compare_read else [("", whole_read)]
        for name, folder in folders.items():
            if name not in args.kinds.split(","):
                continue
            megabytes = sum(p.stat().st_size for p in folder.iterdir()) / args.count / 1e6
            common.warm_page_cache(sorted(folder.iterdir()))
            for label, reader in readers:
                imaging.read_bytes = reader  # read_and_hash looks it up at each call
                try:
                    read_ms, hash_ms, decode_ms_ = decode_ms(folder, 200_000_000)
                    rate, failed = index_rate(folder, model, embedder, root / f"state-{name}{label.strip(' ()')}")
                finally:
                    imaging.read_bytes = whole_read
                print(
                    f"{name + label:24} {megabytes:5.1f} MB/file  read {read_ms:6.1f} ms  hash {hash_ms:6.1f} ms  "
                    f"decode {decode_ms_:6.1f} ms (median per file, 1 thread)  "
                    f"reconcile {rate:6.2f} files/s  failed {failed}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
