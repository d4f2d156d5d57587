"""Per-picture cost of each step, single-threaded: what the tutorial pays vs what imgd pays.

For a few corpus pictures, times (best of --repeats, then the median over pictures, which keeps
other processes' noise out) reading + hashing, a full decode, JPEG draft decodes at 1/4 and 1/8
scale, exif_transpose, the resize imgd's prepare() means to do, the CLIP image processor on a full
12 MP picture (tutorial) and on a 224-side one (imgd), and the model forward at batch 1 and per
picture at batch 32.

    python benchmarks/bench_decode.py --pictures 8
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common
from common import log


def best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=96, help="corpus size (default 96)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default benchmarks/out/corpus-COUNT)")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="model folder (built if absent)")
    parser.add_argument("--pictures", type=int, default=8, help="pictures to time (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many per step (default 3)")
    args = parser.parse_args()

    model_dir = common.ensure_model(args.model)
    folder = common.ensure_corpus(args.count, args.corpus)
    paths = sorted(folder.glob("*.jpg"))[: args.pictures]
    common.warm_page_cache(paths)

    import torch
    from PIL import Image, ImageOps
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)  # every step single-threaded, so the figures add up per core
    model = SentenceTransformer(str(model_dir), device="cpu")
    processor = model[0].processor.image_processor
    clip = model[0].model.eval()
    log(f"machine: {common.machine_line()}")

    def draft(data: bytes, scale: int) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (image.width // scale, image.height // scale))
        image.load()
        return image

    def shrink(image: Image.Image, side: int = 224) -> Image.Image:
        w, h = image.size
        size = (side, round(side * h / w)) if w <= h else (round(side * w / h), side)
        return image.resize(size, Image.Resampling.BICUBIC)

    steps: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        steps.setdefault(name, []).append(seconds * 1000)

    def measure(path: Path) -> None:
        data = path.read_bytes()
        record("read + blake2b-160 (3.3 MB)", best_of(lambda: hashlib.blake2b(path.read_bytes(), digest_size=20), 3))
        record("full decode 4000x3000", best_of(lambda: Image.open(io.BytesIO(data)).load(), args.repeats))
        record("draft decode 1/4 (1000x750, imgd)", best_of(lambda: draft(data, 4), args.repeats))
        record("draft decode 1/8 (500x375)", best_of(lambda: draft(data, 8), args.repeats))
        quarter = draft(data, 4)
        record("exif_transpose of the 1/4 picture", best_of(lambda: ImageOps.exif_transpose(quarter), args.repeats))
        upright = ImageOps.exif_transpose(quarter).convert("RGB")
        record("resize 1/4 -> 224 side (prepare)", best_of(lambda: shrink(upright), args.repeats))
        full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        record("processor on full 12 MP (tutorial)", best_of(lambda: processor(images=[full]), args.repeats))
        small = shrink(upright)
        record("processor on 224-side picture", best_of(lambda: processor(images=[small]), args.repeats))
        record("processor on 1/4 picture (imgd now)", best_of(lambda: processor(images=[upright]), args.repeats))

    for path in paths:
        measure(path)
        log(f"  {path.name}")

    pixels = processor(images=[shrink(draft(paths[0].read_bytes(), 4))] * 32, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        clip.get_image_features(pixel_values=pixels[:1])
        one = best_of(lambda: clip.get_image_features(pixel_values=pixels[:1]), args.repeats)
        batch = best_of(lambda: clip.get_image_features(pixel_values=pixels), 1 if args.repeats < 3 else 2)
    lines = [
        f"machine: {common.machine_line()}",
        f"{len(paths)} pictures; every step on 1 thread; best of {args.repeats}, median over pictures",
        f"{'step':<40}{'ms/picture':>11}",
    ]
    for name, values in steps.items():
        lines.append(f"{name:<40}{statistics.median(values):>11.1f}")
    lines.append(f"{'model forward, batch 1':<40}{one * 1000:>11.1f}")
    lines.append(f"{'model forward, batch 32, per picture':<40}{batch / 32 * 1000:>11.1f}")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
