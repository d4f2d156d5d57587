"""Videos: the cost of indexing one (hash, sampling decode, embedding) and search at 1M contents, 30% videos.

clip:   a 1-minute 1080p H.264 clip written by PyAV (30 fps, a keyframe a second as phones write them;
        --gop 250 gives libx264's default instead), measured in a fresh child process: hash, the
        sampling decode alone (daemon/ingest/video.py), and embedding the samples with the test model
        (tests/clipkit.py tiny) and with ViT-B/32 random weights (transformers' default CLIPConfig);
        then `imgd index` of a folder holding it, wall clock net of the same command on an empty folder.
hour:   an hour of 1080p (1 frame a second, a keyframe every 2 s: PyAV writes it in about a minute
        here), the same measures and peak RSS.
search: 1,000,000 contents of which 30% are videos (2-3 frames each, ~1.3M vectors, clustered
        synthetic vectors: bench_search.Mixture), in imgd's VectorIndex (IVF as the daemon builds it);
        k = 10 items, each video counted once at its best frame (the searcher's grouping, fetching
        more while frames of one video fill the answer); p50/p99 and recall@10 of items against exact.

    python benchmarks/bench_video.py clip hour search
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from common import log

OUT = common.OUT / "video"


def write_clip(path: Path, seconds: float, fps: int, gop: int, size: tuple[int, int] = (1920, 1080)) -> Path:
    """A moving bright bar over a slowly changing background, written straight as YUV 4:2:0."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    started = time.monotonic()
    with av.open(str(path) + ".part", "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.gop_size = gop
        planes = np.zeros((height * 3 // 2, width), dtype=np.uint8)
        for number in range(round(seconds * fps)):
            planes[:height] = 40 + (number // fps) % 160
            left = (number * 17) % (width - 240)
            planes[: height // 2, left : left + 240] = 230
            planes[height:] = 128 + (number // (fps * 10)) % 60
            container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        container.mux(stream.encode(None))
    os.replace(str(path) + ".part", path)
    log(f"wrote {path.name} ({path.stat().st_size >> 20} MB) in {time.monotonic() - started:.0f}s")
    return path


def measure(path: Path, models: dict[str, Path]) -> dict[str, object]:
    """In this (fresh) process: hash, sampling decode, and embedding by each model; peak RSS."""
    from imgd.daemon.embedders import load_embedder
    from imgd.daemon.ingest import video

    started = time.monotonic()
    video.hash_file(str(path))
    hashed = time.monotonic() - started
    started = time.monotonic()
    found = video.read_video(str(path))
    decoded = time.monotonic() - started
    figures: dict[str, object] = {
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "duration_s": round(found.duration, 1),
        "frames": len(found.frames),
        "hash_s": round(hashed, 3),
        "decode_s": round(decoded, 3),
        "rss_after_decode_mb": common.rss_bytes() >> 20,
    }
    for name, model in models.items():
        embedder = load_embedder(str(model), device="cpu", batch_size=32, backend="torch")
        embedder.encode_images([embedder.prepare(found.frames[0].image)])  # warm
        started = time.monotonic()
        embedder.encode_images([embedder.prepare(frame.image) for frame in found.frames])
        figures[f"embed_{name}_s"] = round(time.monotonic() - started, 3)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    if "tiny" in models:
        figures["index_in_process_s"] = round(index_in_process(path, models["tiny"]), 3)
    return figures


def index_in_process(path: Path, model: Path) -> float:
    """The engine's reconcile of a folder holding only this file, the model already loaded: what the daemon
    spends on it (hash, sample, embed, write), without the process start that `imgd index` adds."""
    from imgd.daemon import config as config_module
    from imgd.daemon.embedders import load_embedder
    from imgd.daemon.service.library import open_library

    with tempfile.TemporaryDirectory(prefix="imgd-bench-video-") as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        os.symlink(path, folder / path.name)
        values = {"state_dir": Path(tmp) / "state", "model": str(model), "device": "cpu", "follow_symlinks": True}
        config = config_module.load(None, values, env={})
        embedder = load_embedder(str(model), device="cpu", batch_size=32, backend="torch")
        library = open_library(config, embedder)
        try:
            started = time.monotonic()
            summary = library.engine.reconcile([str(folder)])
            seconds = time.monotonic() - started
        finally:
            library.close()
        assert summary.added == 1, summary
        return seconds


def in_child(path: Path, models: dict[str, Path]) -> dict[str, object]:
    """measure() in a fresh process, so its peak RSS is this file's alone."""
    spec = json.dumps({"path": str(path), "models": {k: str(v) for k, v in models.items()}})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def imgd_index(folder: Path, model: Path) -> tuple[float, int]:
    """`imgd index folder` in a fresh state folder: wall seconds and the child's peak RSS in MB."""
    imgd = Path(sys.executable).with_name("imgd")
    with tempfile.TemporaryDirectory(prefix="imgd-bench-video-") as state:
        command = [str(imgd), "--state-dir", state, "--model", str(model), "--backend", "torch", "-q", "index"]
        started = time.monotonic()
        subprocess.run([*command, str(folder)], check=True)
        return time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >> 10


def file_goal(name: str, path: Path, tiny: Path, vit: Path) -> dict[str, object]:
    figures = in_child(path, {"tiny": tiny, "vit_b_32": vit})
    folder, empty = path.parent / f"{name}-only", path.parent / "empty"
    folder.mkdir(exist_ok=True)
    empty.mkdir(exist_ok=True)
    if not (folder / path.name).exists():
        os.link(path, folder / path.name)
    base, _ = imgd_index(empty, tiny)
    wall, rss = imgd_index(folder, tiny)
    figures.update(index_wall_s=round(wall, 2), index_empty_s=round(base, 2), index_net_s=round(wall - base, 2))
    figures["index_peak_rss_mb_max_of_children"] = rss
    return figures


def grouped(
    raw: list[tuple[int, float]], owner: np.ndarray, k: int
) -> list[int]:  # the searcher's rule: each content once, at its best vector
    seen: list[int] = []
    for vector_id, _ in raw:
        content = int(owner[vector_id])
        if content not in seen:
            seen.append(content)
            if len(seen) == k:
                break
    return seen


def search_goal(count: int, share: float, queries: int, k: int = 10) -> dict[str, object]:
    from bench_search import Mixture
    from imgd.daemon.store.index import VectorIndex

    dim = 512
    rng = np.random.default_rng(7)
    videos = int(count * share)
    frames = rng.integers(2, 4, videos)  # 2 or 3 kept frames a video (distinct scenes)
    total = count - videos + int(frames.sum())
    mixture = Mixture(dim=dim, centres=max(10, count // 300))
    log(f"search: {count:,} contents, {videos:,} videos, {total:,} vectors")
    vectors = mixture.sample(total, seed=1)
    owner = np.empty(total, dtype=np.int64)
    owner[: count - videos] = np.arange(count - videos)
    owner[count - videos :] = np.repeat(np.arange(count - videos, count), frames)
    started = time.monotonic()
    index = VectorIndex(dim)
    index.add(np.arange(total, dtype=np.int64), vectors)  # one add: the structure is chosen once, as a rebuild
    index.rebuild_if_due()
    built = time.monotonic() - started
    asked = mixture.sample(queries, seed=99, extra_noise=0.3)
    times, recalls, fetches = [], [], []
    for query in asked:
        started = time.monotonic()
        fetch = k
        while True:  # as Searcher._live_hits: fetch more while repeated frames leave fewer than k items
            raw = index.search(query, fetch)
            items = grouped(raw, owner, k)
            if len(items) >= k or fetch >= total:
                break
            fetch *= 4
        times.append(time.monotonic() - started)
        fetches.append(fetch)
        scores = vectors @ query
        best = np.full(count, -np.inf, dtype=np.float32)
        np.maximum.at(best, owner, scores)
        truth = set(np.argsort(-best)[:k].tolist())
        recalls.append(len(truth & set(items)) / k)
    return {
        "contents": count,
        "videos": videos,
        "vectors": total,
        "index": index.describe(),
        "build_s": round(built, 1),
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p99_ms": round(float(np.quantile(times, 0.99)) * 1000, 2),
        "recall_at_10_items": round(float(np.mean(recalls)), 3),
        "fetch_grown": sum(f > k for f in fetches),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["clip", "hour", "search"], help="clip, hour, search")
    parser.add_argument("--gop", type=int, default=30, help="frames between keyframes of the minute clip")
    parser.add_argument("--count", type=int, default=1_000_000, help="contents for the search part")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.3, help="videos among the contents (0: a photo baseline)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(Path(spec["path"]), {k: Path(v) for k, v in spec["models"].items()})))
        return
    log(f"CPU: {common.cpu_model()}, load {os.getloadavg()[0]:.1f}")
    sys.path.insert(0, str(common.REPO / "tests"))
    from clipkit import build_clip

    tiny = build_clip(OUT / "tiny-clip")
    vit = common.ensure_model()
    results: dict[str, object] = {}
    if "clip" in args.parts:
        clip = write_clip(OUT / f"minute-1080p-gop{args.gop}.mp4", 60, 30, args.gop)
        results["clip"] = file_goal(f"minute-gop{args.gop}", clip, tiny, vit)
        log(f"clip: {results['clip']}")
    if "hour" in args.parts:
        hour = write_clip(OUT / "hour-1080p-1fps.mp4", 3600, 1, 2)
        results["hour"] = file_goal("hour", hour, tiny, vit)
        log(f"hour: {results['hour']}")
    if "search" in args.parts:
        results["search"] = search_goal(args.count, args.share, args.queries)
        log(f"search: {results['search']}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
