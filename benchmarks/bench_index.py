"""Indexing speed: the tutorial loop vs `imgd index` vs the model-only ceiling, on one corpus, in one run.

(a) tutorial: glob, `Image.open(p)`, `model.encode(img)` one image at a time, faiss IndexFlatIP add.
(b) imgd: `.venv/bin/imgd --state-dir TMP --model MODEL --backend B index CORPUS --quiet` as a
    subprocess, wall clock, for each backend in --backends (torch, onnx); its process start and model
    load are measured by the same command on an empty folder and reported both included and
    subtracted. The ONNX export is made once beforehand and hard-linked into each fresh state folder,
    as a second run of imgd finds it.
(c) ceiling: batches of pre-decoded, pre-processed pixel_values through the CLIP vision tower and
    projection (float32, torch.inference_mode, OMP_WAIT_POLICY=PASSIVE as imgd runs), in a fresh
    process; unless --no-extra-ceilings, once under bfloat16 autocast and once with the Linear layers
    int8 dynamic-quantized, each beside a float32 run made right after it.
(d) the exported vision tower alone in ONNX Runtime, on pixels from imgd's own preprocessing.

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


def run_imgd(model: Path, folder: Path, backend: str = "torch", models: Path | None = None) -> dict[str, float]:
    """Index folder into a fresh state dir; wall clock and CPU seconds of the child."""
    with tempfile.TemporaryDirectory(prefix="imgd-bench-") as state:
        if models is not None:
            common.link_models(models, Path(state))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [str(common.IMGD), "--state-dir", state, "--model", str(model), "--backend", backend]
            + ["index", str(folder), "--quiet"],
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


def onnx_ceiling(models: Path, model_dir: Path, folder: Path, batch: int, repeats: int) -> dict[str, float]:
    """Images/s of the exported vision tower alone in ONNX Runtime, on pixels made by imgd's preprocessing."""
    from imgd.daemon.embedders.preprocess import ImagePrep
    from imgd.daemon.embedders.runtime import make_session
    from imgd.daemon.embedders.store import ModelStore
    from imgd.daemon.ingest import imaging

    store = ModelStore(models)
    fingerprint = store.lookup(str(model_dir.resolve()))
    manifest = store.manifest(fingerprint) if fingerprint else None
    if manifest is None:
        raise SystemExit("no ONNX export found")
    prep = ImagePrep.from_dict(manifest["image"]["prep"])
    paths = sorted(folder.glob("*.jpg"))
    images = []
    for path in (paths * (batch // max(1, len(paths)) + 1))[:batch]:
        data = imaging.read_bytes(str(path))
        images.append(prep.prepare(imaging.decode(str(path), data, 200_000_000)[0]))
    pixels = prep.pixels(images)
    session = make_session(store.folder(fingerprint) / "image.onnx")
    session.run(None, {"pixel_values": pixels})
    times = []
    cpu0 = cpu_seconds()
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"pixel_values": pixels})
        times.append(time.perf_counter() - started)
    mean = sum(times) / len(times)
    return {"batch": batch, "repeats": repeats, "mean_s": mean, "ips_mean": batch / mean,
            "cpu_s_per_batch": (cpu_seconds() - cpu0) / repeats}  # fmt: skip


def ceiling_child(args: argparse.Namespace) -> None:
    """Run in a fresh process so that OMP_WAIT_POLICY (read when OpenMP loads) can differ per run."""
    if args.ceiling_child == "onnx":
        print(json.dumps(onnx_ceiling(args.models, args.model, args.corpus, args.batch, args.repeats)))
        return
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(args.model), device="cpu")
    paths = sorted(args.corpus.glob("*.jpg"))
    pixels = pixel_batch(model, paths, args.batch)
    clip = quantized(model[0].model) if args.ceiling_child == "int8" else model[0].model
    result = run_ceiling(clip, pixels, args.repeats, bf16=args.ceiling_child == "bf16")
    result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "(default)")
    print(json.dumps(result))


def run_ceiling_process(
    model_dir: Path,
    folder: Path,
    batch: int,
    repeats: int,
    dtype: str,
    policy: str | None,
    models: Path | None = None,
) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--ceiling-child", dtype, "--model", str(model_dir)]
    command += ["--corpus", str(folder), "--batch", str(batch), "--repeats", str(repeats)]
    if models is not None:
        command += ["--models", str(models)]
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
    parser.add_argument("--backends", default="torch,onnx", help="imgd backends to time (default torch,onnx)")
    parser.add_argument("--no-extra-ceilings", action="store_true", help="skip the bf16 and int8 ceilings")
    parser.add_argument("--ceiling-child", choices=["fp32", "bf16", "int8", "onnx"], help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
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

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    models = common.exported_models(model_dir) if "onnx" in backends else None
    rounds: list[dict[str, object]] = []
    for number in range(1, args.rounds + 1):
        load = loadavg()
        log(f"round {number}/{args.rounds} (load average {load:.1f})")
        tutorial = run_tutorial(model_dir, folder)
        log(f"  tutorial: load {tutorial['load_s']:.1f} s, loop {tutorial['loop_s']:.1f} s")
        del tutorial["model"]
        ceiling = run_ceiling_process(model_dir, folder, args.batch, args.repeats, "fp32", "PASSIVE")
        log(f"  ceiling torch fp32 (OMP_WAIT_POLICY=PASSIVE, as imgd runs): {ceiling['ips_mean']:.2f} img/s")
        record: dict[str, object] = {"load_average": load, "tutorial": tutorial, "ceiling_torch": ceiling}
        record["ips_tutorial_loop"] = count / tutorial["loop_s"]
        if models is not None:
            record["ceiling_onnx"] = run_ceiling_process(
                model_dir, folder, args.batch, args.repeats, "onnx", None, models=models
            )
            log(f"  ceiling onnx: {record['ceiling_onnx']['ips_mean']:.2f} img/s")
        for backend in backends:
            with tempfile.TemporaryDirectory(prefix="imgd-empty-") as empty:
                startup = run_imgd(model_dir, Path(empty), backend, models if backend == "onnx" else None)
            imgd = run_imgd(model_dir, folder, backend, models if backend == "onnx" else None)
            net = max(imgd["wall_s"] - startup["wall_s"], 1e-9)
            log(f"  imgd --backend {backend}: start-up {startup['wall_s']:.1f} s, index {imgd['wall_s']:.1f} s")
            record[backend] = {
                "imgd": imgd,
                "imgd_empty": startup,
                "ips_net": count / net,
                "ips_wall": count / imgd["wall_s"],
                "ratio_net": tutorial["loop_s"] / net,
                "ratio_wall": (tutorial["loop_s"] + tutorial["load_s"]) / imgd["wall_s"],
                "share_of_torch_ceiling": (count / net) / ceiling["ips_mean"],
                "cpu_ratio": tutorial["cpu_s"] / max(imgd["cpu_s"] - startup["cpu_s"], 1e-9),
            }
        rounds.append(record)
    extra: dict[str, object] = {}
    if not args.no_extra_ceilings:
        log("ceiling bfloat16 autocast ...")
        extra["ceiling_bf16"] = run_ceiling_process(model_dir, folder, args.batch, args.bf16_repeats, "bf16", None)
        extra["ceiling_fp32_beside_bf16"] = run_ceiling_process(
            model_dir, folder, args.batch, args.bf16_repeats, "fp32", None
        )
        log("ceiling int8 dynamic quantization ...")
        extra["ceiling_int8_dynamic"] = run_ceiling_process(model_dir, folder, args.batch, args.repeats, "int8", None)
        extra["ceiling_fp32_beside_int8"] = run_ceiling_process(
            model_dir, folder, args.batch, args.repeats, "fp32", None
        )

    def med(*keys: str) -> float:
        values = []
        for r in rounds:
            value: object = r
            for key in keys:
                value = value[key]  # type: ignore[index]
            values.append(float(value))  # type: ignore[arg-type]
        return median(values)

    figures = {
        "machine": common.machine_line(),
        "count": count,
        "corpus_mb": megabytes,
        "backends": backends,
        "rounds": rounds,
        **extra,
    }
    lines = [
        f"machine: {figures['machine']}",
        f"corpus: {count} x 4000x3000 JPEG q92, {megabytes:.0f} MB; model {model_dir.name} (random weights)",
        f"{'round':<6}{'backend':<8}{'load':>6}{'tut i/s':>9}{'start s':>8}{'imgd s':>8}{'net i/s':>9}"
        f"{'wall i/s':>9}{'net x':>7}{'wall x':>7}{'% ceil':>7}{'cpu x':>7}",
    ]
    for number, r in enumerate(rounds, 1):
        for backend in backends:
            b = r[backend]
            lines.append(
                f"{number:<6}{backend:<8}{r['load_average']:>6.1f}{r['ips_tutorial_loop']:>9.2f}"
                f"{b['imgd_empty']['wall_s']:>8.2f}{b['imgd']['wall_s']:>8.1f}{b['ips_net']:>9.2f}"
                f"{b['ips_wall']:>9.2f}{b['ratio_net']:>7.2f}{b['ratio_wall']:>7.2f}"
                f"{b['share_of_torch_ceiling']:>7.0%}{b['cpu_ratio']:>7.2f}"
            )
    lines.append(
        f"median: tutorial {med('ips_tutorial_loop'):.2f} img/s; ceiling torch fp32 "
        f"{med('ceiling_torch', 'ips_mean'):.2f} img/s"
        + (f", onnx {med('ceiling_onnx', 'ips_mean'):.2f} img/s" if models is not None else "")
    )
    for backend in backends:
        lines.append(
            f"median {backend}: start-up {med(backend, 'imgd_empty', 'wall_s'):.2f} s, {med(backend, 'ips_net'):.2f} "
            f"img/s net ({med(backend, 'ips_wall'):.2f} wall), {med(backend, 'ratio_net'):.2f}x the tutorial net, "
            f"{med(backend, 'ratio_wall'):.2f}x incl. start+load, {med(backend, 'cpu_ratio'):.2f}x in CPU-seconds"
        )
    if extra:
        c16, c32, c8, c32b = (extra[k] for k in ("ceiling_bf16", "ceiling_fp32_beside_bf16",
                                                  "ceiling_int8_dynamic", "ceiling_fp32_beside_int8"))  # fmt: skip
        lines.append(
            f"bf16 autocast ceiling {c16['ips_mean']:.2f} vs fp32 {c32['ips_mean']:.2f} img/s; int8 dynamic "
            f"{c8['ips_mean']:.2f} vs fp32 {c32b['ips_mean']:.2f} img/s"
        )
    lines.append(
        "columns: tut = tutorial loop with the model loaded; start s = `imgd index` on an empty folder (process "
        "start, imports, model load; ONNX opens its image session on the first picture, so that is in net); "
        "imgd s = `imgd index` wall; net = imgd s - start s; x = imgd/tutorial speed; % ceil = net / torch fp32 "
        "ceiling; cpu x = tutorial CPU-s / imgd CPU-s (net)"
    )
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2, default=str))
    log(f"figures written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
