"""Duplicates: how well the default threshold finds copies, and how fast the whole library and one file go.

`quality`: originals (benchmarks/corpus.py pictures) and, for a known subset, six copies of each: a JPEG
re-encode at another quality, a half-size copy, a crop of 4% a side, an EXIF-rotated copy, a PNG, a 10%
brighter copy. Every file is read the way imgd reads it (imaging.decode: EXIF orientation applied) and
embedded; precision and recall of the pairs found (all pairs within one family are true) are reported
for a sweep of thresholds, with the lowest own score per transformation and the highest unrelated one.

`scale`: synthetic CLIP-like vectors (bench_search.Mixture) with 10% planted near-copies (cosine
uniform in 0.90-0.995): whole-library pairs at each size (time, peak RSS, recall of the pairs against
exact search for a sample of rows), and the daemon's upkeep: one range search plus exact scoring per
new content over an exact index and over imgd's IVF index.

    python benchmarks/bench_dupes.py quality --model benchmarks/out/vit-b-32 --originals 60 --families 20
    python benchmarks/bench_dupes.py scale --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import threading
import time
from pathlib import Path

import common
import numpy as np
from common import log

THRESHOLDS = (0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995, 0.997, 0.998, 0.999, 0.9995)
SIDE = (1200, 900)


def transforms() -> dict[str, object]:
    from PIL import Image, ImageEnhance

    def jpeg(image: Image.Image, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        return buffer.getvalue()

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    def rotated(image: Image.Image) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = 6
        return jpeg(image.transpose(Image.Transpose.ROTATE_90), quality=92, exif=exif.tobytes())

    def crop(image: Image.Image) -> bytes:
        w, h = image.size
        return jpeg(image.crop((w // 25, h // 25, w - w // 25, h - h // 25)), quality=92)

    return {
        "jpeg-q60": lambda im: jpeg(im, quality=60),
        "half-size": lambda im: jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), quality=92),
        "crop-4%": crop,
        "exif-rotated": rotated,
        "png": png,
        "brighter-10%": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.1), quality=92),
    }


def quality(args: argparse.Namespace) -> dict[str, object]:
    import corpus
    from imgd.daemon.embedders import load_embedder
    from imgd.daemon.ingest import imaging
    from imgd.daemon.search.pairs import exact_scores

    embedder = load_embedder(str(args.model), device="cpu", batch_size=16)
    images, family, kinds = [], [], []
    started = time.monotonic()
    for number in range(args.originals):
        upright = corpus.upright_picture(number, *SIDE)
        buffer = io.BytesIO()
        upright.save(buffer, "JPEG", quality=92)
        variants = {"original": buffer.getvalue()}
        if number < args.families:
            variants.update({name: fn(upright) for name, fn in transforms().items()})
        for kind, data in variants.items():
            image, _ = imaging.decode(f"{number}-{kind}", data, 200_000_000)
            images.append(embedder.prepare(image))
            family.append(number)
            kinds.append(kind)
    log(f"{len(images)} images made in {time.monotonic() - started:.0f} s; embedding with {args.model}")
    vectors = np.vstack([embedder.encode_images(images[s : s + 16]) for s in range(0, len(images), 16)]).astype(
        np.float16
    )
    family_arr = np.asarray(family)
    n = len(vectors)
    first, second = np.triu_indices(n, 1)
    scores = exact_scores(vectors[first], vectors[second])
    same = family_arr[first] == family_arr[second]
    rows = []
    for threshold in THRESHOLDS:
        found = scores >= threshold
        tp = int((found & same).sum())
        rows.append(
            {
                "threshold": threshold,
                "true_pairs": int(same.sum()),
                "found": int(found.sum()),
                "precision": tp / max(1, int(found.sum())),
                "recall": tp / max(1, int(same.sum())),
            }
        )
    originals = {f: i for i, (f, k) in enumerate(zip(family, kinds, strict=True)) if k == "original"}
    own: dict[str, float] = {}
    own_scores: dict[str, list[float]] = {}
    for i, (f, k) in enumerate(zip(family, kinds, strict=True)):
        if k != "original":
            score = float(exact_scores(vectors[i : i + 1], vectors[originals[f] : originals[f] + 1])[0])
            own[k] = min(own.get(k, 1.0), score)
            own_scores.setdefault(k, []).append(score)
    for row in rows:  # per transformation: the share of copies at or above the threshold to their original
        row["recall_to_original"] = {
            k: round(sum(x >= row["threshold"] for x in v) / len(v), 3) for k, v in own_scores.items()
        }
    unrelated = scores[~same]
    return {
        "model": str(args.model),
        "images": n,
        "families": args.families,
        "sweep": rows,
        "lowest_own_score": own,
        "lowest_true_pair": float(scores[same].min()),
        "unrelated_max": float(unrelated.max()),
        "unrelated_p99": float(np.percentile(unrelated, 99)),
        "unrelated_median": float(np.median(unrelated)),
    }


def planted(count: int, seed: int = 0) -> np.ndarray:
    """Mixture vectors with 10% near-copies of others (cosine uniform in 0.90-0.995), float16."""
    from bench_search import Mixture

    mix = Mixture()
    base = mix.sample(count, seed)
    rng = np.random.default_rng(seed + 1)
    copies = count // 10
    sources = rng.choice(count, copies, replace=False)
    targets = rng.choice(np.setdiff1d(np.arange(count), sources), copies, replace=False)
    noise = mix._shape(rng.standard_normal((copies, base.shape[1])).astype(np.float32))
    noise -= (noise * base[sources]).sum(1, keepdims=True) * base[sources]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = rng.uniform(0.90, 0.995, copies).astype(np.float32)
    base[targets] = cos[:, None] * base[sources] + np.sqrt(1 - cos**2)[:, None] * noise
    return base.astype(np.float16)


class RssSampler(threading.Thread):
    """The highest resident set size seen while a call runs (sampled every 50 ms)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def pair_recall(vectors: np.ndarray, found: set[tuple[int, int]], threshold: float, rows: int) -> tuple[float, int]:
    rng = np.random.default_rng(7)
    picks = rng.choice(len(vectors), rows, replace=False)
    truth: set[tuple[int, int]] = set()
    queries = vectors[picks].astype(np.float32)
    for start in range(0, len(vectors), 100_000):
        block = queries @ vectors[start : start + 100_000].astype(np.float32).T
        for q, c in zip(*np.nonzero(block >= threshold), strict=True):
            other = int(c) + start
            if other != picks[q]:
                truth.add((min(int(picks[q]), other), max(int(picks[q]), other)))
    return len(truth & found) / max(1, len(truth)), len(truth)


def scale(args: argparse.Namespace) -> list[dict[str, object]]:
    from imgd.daemon.search.pairs import MARGIN, exact_scores, library_pairs
    from imgd.daemon.store.index import VectorIndex

    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = planted(size)
        ids = np.arange(1, size + 1, dtype=np.int64)
        rss_before = common.rss_bytes()
        sampler = RssSampler()
        sampler.start()
        started = time.monotonic()
        pairs = library_pairs(ids, vectors, args.threshold)
        seconds = time.monotonic() - started
        peak = sampler.stop()
        found = {(a - 1, b - 1) for a, b, _ in pairs}
        recall, truth = pair_recall(vectors, found, args.threshold, args.recall_rows)
        row: dict[str, object] = {
            "size": size,
            "threshold": args.threshold,
            "seconds": round(seconds, 1),
            "pairs": len(pairs),
            "recall": round(recall, 4),
            "truth_pairs_sampled": truth,
            "vectors_mb": round(vectors.nbytes / 1e6),
            "rss_before_mb": round(rss_before / 1e6),
            "peak_rss_during_mb": round(peak / 1e6),
            "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6),
        }
        log(json.dumps(row))
        if args.upkeep <= 0:
            results.append(row)
            continue
        # Upkeep: what the daemon does per new content, over each index kind imgd would hold.
        for kind in ("exact", "ivf"):
            index = VectorIndex(vectors.shape[1])
            index.exact_limit = 10**9 if kind == "exact" else 40_000
            held = size - args.upkeep
            for start in range(0, held, 100_000):
                stop = min(start + 100_000, held)
                index.add(ids[start:stop], vectors[start:stop].astype(np.float32))
            if kind == "ivf":
                index.rebuild_if_due()
            new = vectors[held:]
            started = time.monotonic()
            for position in range(len(new)):
                hits = index.range_search(new[position : position + 1].astype(np.float32), args.threshold - MARGIN)[0]
                if hits:
                    others = np.vstack([index.reconstruct(i) for i, _ in hits])
                    exact_scores(np.repeat(new[position : position + 1], len(hits), axis=0), others)
            row[f"upkeep_ms_{kind}"] = round((time.monotonic() - started) / len(new) * 1000, 2)
            log(f"upkeep over {index.kind}: {row[f'upkeep_ms_{kind}']} ms per new content")
            index.close()
            del index
        results.append(row)
        del vectors, pairs, found
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--model", type=Path, default=common.DEFAULT_MODEL)
    q.add_argument("--originals", type=int, default=60)
    q.add_argument("--families", type=int, default=20)
    s = sub.add_parser("scale")
    s.add_argument("--sizes", default="100000,1000000")
    s.add_argument("--threshold", type=float, default=0.95)
    s.add_argument("--recall-rows", type=int, default=1000)
    s.add_argument("--upkeep", type=int, default=200, help="new contents timed one at a time")
    for p in (q, s):
        p.add_argument("--json", type=Path)
    args = parser.parse_args()
    log(common.machine_line())
    if args.mode == "quality":
        if args.model == common.DEFAULT_MODEL:
            common.ensure_model()
        result: object = quality(args)
    else:
        result = scale(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
