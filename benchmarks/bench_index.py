"""Indexing speed: the tutorial loop vs `imgd index` vs the model-only ceiling, on one corpus, in one run.

(a) tutorial: glob, `Image.open(p)`, `model.encode(img)` one image at a time, faiss IndexFlatIP add.
(b) imgd: `.venv/bin/imgd --state-dir TMP --model MODEL index CORPUS --quiet` as a subprocess, wall
    clock; its process start and model load are measured by the same command on an empty folder and
    reported both included and subtracted.
(c) ceiling: batches of pre-decoded, pre-processed pixel_values through the CLIP vision tower and
    projection (float32, torch.inference_mode), each in a fresh process, with the default OpenMP wait
    policy and with PASSIVE (what imgd sets); then once under bfloat16 autocast and once with the
    Linear layers int8 dynamic-quantized, each beside a float32 run made right after it.

    python benchmarks/bench_index.py --count 96
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import log


def run_imgd(model: Path, folder: Path) -> dict[str, float]:
    """Index folder into a fresh state dir; wall clock and CPU seconds of the child."""
    with tempfile.TemporaryDirectory(prefix="imgd-bench-") as state:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [str(common.IMGD), "--state-dir", state, "--model", str(model), "index", str(folder), "--quiet"],
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_tutorial(model_dir: Path, folder: Path) -> dict[str, object]:
    """The loop every CLIP image-search tutorial shows, timed as written."""
    import glob

    import faiss
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(str(model_dir), device="cpu")
    loaded = time.perf_counter()
    cpu0 = cpu_seconds()
    index = None
    paths = sorted(glob.glob(os.path.join(folder, "*.jpg")))
    for path in paths:
        img = Image.open(path)
        embedding = model.encode(img)
        if index is None:
            index = faiss.IndexFlatIP(embedding.shape[-1])
        index.add(embedding.reshape(1, -1))
    done = time.perf_counter()
    return {
        "model": model,
        "load_s": loaded - started,
        "loop_s": done - loaded,
        "cpu_s": cpu_seconds() - cpu0,
        "images": len(paths),
        "indexed": int(index.ntotal) if index is not None else 0,
    }


def pixel_batch(model: object, paths: list[Path], batch: int) -> object:
    """pixel_values for `batch` corpus pictures, decoded and processed the way imgd does, ahead of time."""
    import torch
    from PIL import Image, ImageOps

    processor = model[0].processor.image_processor
    images = []
    for path in (paths * (batch // max(1, len(paths)) + 1))[:batch]:
        with Image.open(path) as img:
            img.draft("RGB", (img.width // 4, img.height // 4))
            images.append(ImageOps.exif_transpose(img).convert("RGB"))
    values = processor(images=images, return_tensors="pt")["pixel_values"]
    return values.to(torch.float32).contiguous()


def quantized(clip: object) -> object:
    """The same CLIP with every Linear layer int8 dynamic-quantized (weights int8, activations per batch)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(clip, {torch.nn.Linear}, dtype=torch.qint8)


def run_ceiling(clip: object, pixels: object, repeats: int, bf16: bool) -> dict[str, float]:
    """Images/s of the vision tower + projection alone on ready tensors; one warm-up batch first."""
    import torch

    clip.eval()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    cpu0 = cpu_seconds()
    with torch.inference_mode(), autocast:
        for attempt in range(repeats + 1):
            if attempt == 1:
                cpu0 = cpu_seconds()
            started = time.perf_counter()
            out = clip.get_image_features(pixel_values=pixels)
            features = getattr(out, "pooler_output", out)
            features.float().sum().item()
            if attempt:
                times.append(time.perf_counter() - started)
    batch = int(pixels.shape[0])
    mean = sum(times) / len(times)
    return {
        "batch": batch,
        "repeats": repeats,
        "mean_s": mean,
        "ips_mean": batch / mean,
        "ips_best": batch / min(times),
        "cpu_s_per_batch": (cpu_seconds() - cpu0) / repeats,
    }


def ceiling_child(args: argparse.Namespace) -> None:
    """Run in a fresh process so that OMP_WAIT_POLICY (read when OpenMP loads) can differ per run."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(args.model), device="cpu")
    paths = sorted(args.corpus.glob("*.jpg"))
    pixels = pixel_batch(model, paths, args.batch)
    clip = quantized(model[0].model) if args.ceiling_child == "int8" else model[0].model
    result = run_ceiling(clip, pixels, args.repeats, bf16=args.ceiling_child == "bf16")
    result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "(default)")
    print(json.dumps(result))


def run_ceiling_process(
    model_dir: Path, folder: Path, batch: int, repeats: int, dtype: str, policy: str | None
) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--ceiling-child", dtype, "--model", str(model_dir)]
    command += ["--corpus", str(folder), "--batch", str(batch), "--repeats", str(repeats)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def loadavg() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=96, help="corpus size (default 96)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default benchmarks/out/corpus-COUNT)")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="model folder (built if absent)")
    parser.add_argument("--batch", type=int, default=32, help="ceiling batch size (default 32, imgd's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fp32 ceiling batches per round (default 3)")
    parser.add_argument("--bf16-repeats", type=int, default=1, help="timed bf16 ceiling batches (default 1; slow)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all contenders (default 1)")
    parser.add_argument("--json", type=Path, default=common.OUT / "bench_index.json", help="write figures here")
    parser.add_argument("--ceiling-child", choices=["fp32", "bf16", "int8"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_child:
        ceiling_child(args)
        return

    model_dir = common.ensure_model(args.model)
    folder = common.ensure_corpus(args.count, args.corpus)
    paths = sorted(folder.glob("*.jpg"))
    megabytes = common.warm_page_cache(paths) / 1e6
    count = len(paths)
    log(f"machine: {common.machine_line()}")
    log(f"corpus: {count} JPEGs, {megabytes:.0f} MB, in {folder} (page cache warmed)")

    rounds: list[dict[str, object]] = []
    for number in range(1, args.rounds + 1):
        load = loadavg()
        log(f"round {number}/{args.rounds} (load average {load:.1f})")
        with tempfile.TemporaryDirectory(prefix="imgd-empty-") as empty:
            startup = run_imgd(model_dir, Path(empty))
        log(f"  imgd on an empty folder (start + model load): {startup['wall_s']:.1f} s")
        imgd = run_imgd(model_dir, folder)
        log(f"  imgd index: {imgd['wall_s']:.1f} s")
        tutorial = run_tutorial(model_dir, folder)
        log(f"  tutorial: load {tutorial['load_s']:.1f} s, loop {tutorial['loop_s']:.1f} s")
        del tutorial["model"]
        ceiling = run_ceiling_process(model_dir, folder, args.batch, args.repeats, "fp32", None)
        passive = run_ceiling_process(model_dir, folder, args.batch, args.repeats, "fp32", "PASSIVE")
        log(f"  ceiling fp32: {ceiling['ips_mean']:.2f} img/s, with OMP_WAIT_POLICY=PASSIVE {passive['ips_mean']:.2f}")
        net = max(imgd["wall_s"] - startup["wall_s"], 1e-9)
        rounds.append(
            {
                "load_average": load,
                "imgd": imgd,
                "imgd_empty": startup,
                "tutorial": tutorial,
                "ceiling_fp32": ceiling,
                "ceiling_fp32_passive": passive,
                "ips_ceiling_fp32_passive": passive["ips_mean"],
                "ips_tutorial_loop": count / tutorial["loop_s"],
                "ips_tutorial_with_load": count / (tutorial["loop_s"] + tutorial["load_s"]),
                "ips_imgd_wall": count / imgd["wall_s"],
                "ips_imgd_net": count / net,
                "ips_ceiling_fp32": ceiling["ips_mean"],
                "ratio_net": tutorial["loop_s"] / net,
                "ratio_wall": (tutorial["loop_s"] + tutorial["load_s"]) / imgd["wall_s"],
                "share_of_ceiling_net": (count / net) / ceiling["ips_mean"],
                "cpu_ratio": tutorial["cpu_s"] / max(imgd["cpu_s"] - startup["cpu_s"], 1e-9),
            }
        )
    log("ceiling bfloat16 autocast ...")
    ceiling16 = run_ceiling_process(model_dir, folder, args.batch, args.bf16_repeats, "bf16", None)
    ceiling32_now = run_ceiling_process(model_dir, folder, args.batch, args.bf16_repeats, "fp32", None)
    log("ceiling int8 dynamic quantization ...")
    ceiling8 = run_ceiling_process(model_dir, folder, args.batch, args.repeats, "int8", None)
    ceiling32_after8 = run_ceiling_process(model_dir, folder, args.batch, args.repeats, "fp32", None)

    def med(key: str) -> float:
        return median([float(r[key]) for r in rounds])

    figures = {
        "machine": common.machine_line(),
        "count": count,
        "corpus_mb": megabytes,
        "rounds": rounds,
        "ceiling_bf16": ceiling16,
        "ceiling_fp32_beside_bf16": ceiling32_now,
        "ceiling_int8_dynamic": ceiling8,
        "ceiling_fp32_beside_int8": ceiling32_after8,
    }
    lines = [
        f"machine: {figures['machine']}",
        f"corpus: {count} x 4000x3000 JPEG q92, {megabytes:.0f} MB; model {model_dir.name} (random weights)",
        f"{'round':<6}{'load':>6}{'tut s':>8}{'tut i/s':>9}{'imgd s':>8}{'start s':>8}{'net i/s':>9}"
        f"{'wall i/s':>9}{'ceil i/s':>9}{'passive':>8}{'net x':>7}{'wall x':>7}{'ceil %':>7}{'cpu x':>7}",
    ]
    for number, r in enumerate(rounds, 1):
        lines.append(
            f"{number:<6}{r['load_average']:>6.1f}{r['tutorial']['loop_s']:>8.1f}{r['ips_tutorial_loop']:>9.2f}"
            f"{r['imgd']['wall_s']:>8.1f}{r['imgd_empty']['wall_s']:>8.1f}{r['ips_imgd_net']:>9.2f}"
            f"{r['ips_imgd_wall']:>9.2f}{r['ips_ceiling_fp32']:>9.2f}{r['ips_ceiling_fp32_passive']:>8.2f}"
            f"{r['ratio_net']:>7.2f}{r['ratio_wall']:>7.2f}"
            f"{r['share_of_ceiling_net']:>7.0%}{r['cpu_ratio']:>7.2f}"
        )
    lines += [
        f"median: tutorial {med('ips_tutorial_loop'):.2f} img/s, imgd {med('ips_imgd_net'):.2f} img/s net of "
        f"start+load ({med('ips_imgd_wall'):.2f} wall), ceiling fp32 {med('ips_ceiling_fp32'):.2f} img/s "
        f"({med('ips_ceiling_fp32_passive'):.2f} with OMP_WAIT_POLICY=PASSIVE, as imgd runs)",
        f"median ratio imgd/tutorial: {med('ratio_net'):.2f}x net, {med('ratio_wall'):.2f}x both incl. start+load, "
        f"{med('cpu_ratio'):.2f}x in CPU-seconds; imgd at {med('share_of_ceiling_net'):.0%} of the fp32 ceiling",
        f"bf16 autocast ceiling: {ceiling16['ips_mean']:.2f} img/s vs fp32 {ceiling32_now['ips_mean']:.2f} img/s "
        f"measured right after it ({ceiling16['ips_mean'] / ceiling32_now['ips_mean']:.2f}x)",
        f"int8 dynamic-quantized Linear ceiling: {ceiling8['ips_mean']:.2f} img/s vs fp32 "
        f"{ceiling32_after8['ips_mean']:.2f} img/s right after it "
        f"({ceiling8['ips_mean'] / ceiling32_after8['ips_mean']:.2f}x)",
        "columns: tut = tutorial loop with the model loaded; imgd s = `imgd index` wall; start s = the same on an "
        "empty folder; net = imgd s - start s; passive = ceiling with OMP_WAIT_POLICY=PASSIVE; "
        "x = imgd/tutorial speed; ceil % = imgd net / fp32 ceiling; cpu x = tutorial CPU-s / imgd CPU-s (net)",
    ]
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2, default=str))
    log(f"figures written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
