"""The first run's parts on ViT-B/32, A/B in one process each (CPU seconds: robust to a loaded machine).

`fork`: export_model with the text tower in a forked copy and without, alternating: wall, CPU of this
process and of the copy (on an idle 2-core machine the wall is about the longer of the two).
`batch`: auto's measurement at PROBE_BATCH 8 and 4, alternating: wall, CPU, the speeds and the pick.
`trace`: torch.onnx.export of the image tower as imgd calls it, with constant folding off, and with
ONNX shape inference off.

    python benchmarks/bench_export_steps.py fork|batch|trace [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_model  # noqa: E402


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def fork_ab(st_model, fingerprint: str, runs: int) -> None:  # noqa: ANN001
    from imgd.daemon.embedders import export
    from imgd.daemon.embedders.store import ModelStore

    for _ in range(runs):
        for fork in (False, True):
            export.can_fork = (lambda: True) if fork else (lambda: False)
            folder, load = Path(tempfile.mkdtemp()), os.getloadavg()[0]
            started, own, copy = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
            export.export_model(st_model, fingerprint, ModelStore(folder), "bench")
            print(
                f"fork {fork!s:5}: wall {time.perf_counter() - started:5.2f} s, cpu this process"
                f" {cpu(resource.RUSAGE_SELF) - own:5.2f} s, forked copy {cpu(resource.RUSAGE_CHILDREN) - copy:5.2f} s,"
                f" load {load:.1f}",
                flush=True,
            )
            shutil.rmtree(folder)


def batch_ab(st_model, fingerprint: str, runs: int, model: Path) -> None:  # noqa: ANN001
    from imgd.daemon.embedders import choice, export
    from imgd.daemon.embedders.base import model_key
    from imgd.daemon.embedders.onnx import load_onnx
    from imgd.daemon.embedders.store import ModelStore

    root = Path(tempfile.mkdtemp()) / "models"
    export.export_model(st_model, fingerprint, ModelStore(root), "bench")
    ModelStore(root).remember(model_key(str(model)), fingerprint)
    folder = root / fingerprint
    for _ in range(runs):
        for batch in (8, 4):
            for made in [*folder.glob("backend-*"), *folder.glob("image.float32*")]:
                shutil.rmtree(made) if made.is_dir() else made.unlink()
            choice.PROBE_BATCH = batch
            started, own, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
            key = choice.machine_key(fingerprint)
            record, _ = choice.measure(lambda runtime: load_onnx(str(model), root.parent, runtime=runtime), root, key)
            speeds = {r["backend"]: r["images_per_s"] for r in record["results"]}
            print(
                f"batch {batch}: wall {time.perf_counter() - started:5.2f} s, cpu {time.process_time() - own:5.2f} s,"
                f" load {load:.1f}; onnx {speeds['onnx']}, openvino {speeds['openvino']} img/s"
                f" (ratio {speeds['openvino'] / speeds['onnx']:.2f}), pick {record['pick']['backend']}",
                flush=True,
            )
    shutil.rmtree(root.parent)


def trace_ab(st_model, runs: int) -> None:  # noqa: ANN001
    import onnx  # noqa: F401 - imported once up front: the exporter's first call would pay it
    import torch
    from imgd.daemon.embedders import export
    from imgd.daemon.embedders.preprocess import probe_image
    from imgd.daemon.embedders.torch import image_prep_of
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    image_tower, _ = export._towers(st_model)
    pixels = image_prep_of(st_model).pixels([probe_image(), probe_image(1)])
    folder = Path(tempfile.mkdtemp())
    for _ in range(runs):
        variants = [("as imgd", {}, True), ("no folding", {"do_constant_folding": False}, True)]
        for name, options, shapes in [*variants, ("no shape inference", {}, False)]:
            GLOBALS.onnx_shape_inference = shapes
            started, own = time.perf_counter(), time.process_time()
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    image_tower,
                    (torch.from_numpy(pixels),),
                    str(folder / "image.onnx"),
                    input_names=["pixel_values"],
                    output_names=["embedding"],
                    dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
                    opset_version=export.OPSET,
                    dynamo=False,
                    **options,
                )
            print(f"{name:18}: wall {time.perf_counter() - started:5.2f} s, cpu {time.process_time() - own:5.2f} s")
    GLOBALS.onnx_shape_inference = True
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("fork", "batch", "trace"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from imgd.daemon.embedders import torch as backend

    model = ensure_model()
    st_model = backend.load_sentence_transformer(str(model), "cpu")
    fingerprint = backend.fingerprint_of(st_model)
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    if args.mode == "fork":
        fork_ab(st_model, fingerprint, args.runs)
    elif args.mode == "batch":
        batch_ab(st_model, fingerprint, args.runs, model)
    else:
        trace_ab(st_model, args.runs)
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
