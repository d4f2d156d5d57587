"""rclip 3.3 beside imgd's ONNX backend, offline: indexing rate, start-up, peak memory, one text query.

rclip runs from its own virtualenv (its pins clash with imgd's: numpy 2.1, pillow 12):

    python3 -m venv benchmarks/out/rclip-venv && benchmarks/out/rclip-venv/bin/pip install rclip==3.3.0

It reads `$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx` and
`$RCLIP_DATADIR/tokenizer/bpe_simple_vocab_16e6.txt.gz` and never contacts the hub when they exist.
No weights can be downloaded here, so this script makes random-weight files of rclip's architecture
(open_clip's ViT-B-32-256: vision width 768, 12 layers, patch 32 at 256 px; text width 512, 12 layers,
8 heads; 512-d embedding; GELU) with transformers' CLIPModel, exported with rclip's IO (`input`
float32 [N,3,256,256] / int64 [N,77] -> `output` [N,512]). open_clip itself needs torchvision, which
imgd's environment lacks; the compute is the same architecture's. The BPE vocabulary comes from the
open_clip_torch wheel (`pip download open_clip_torch==3.3.0 --no-deps`).

Each contender runs as a fresh process per measurement, on the same corpus, in one run:
  start-up: the command on an empty folder; index: on the corpus (fresh database each time);
  query: one text query against the indexed corpus (rclip -n, imgd search --direct), several times.
Peak memory is the child's maximum RSS (/usr/bin/time -f %M).

    .venv/bin/python benchmarks/bench_rclip.py --count 48
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import common
from common import log

RCLIP = common.OUT / "rclip-venv" / "bin" / "rclip"
MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
VOCAB = "tokenizer/bpe_simple_vocab_16e6.txt.gz"


def ensure_rclip_models(datadir: Path) -> Path:
    """Random-weight visual.onnx and textual.onnx of rclip's architecture, and the BPE vocabulary."""
    models = datadir / MODEL_SUBDIR
    if not (models / "textual.onnx").exists():
        import warnings

        import torch
        from transformers import CLIPConfig, CLIPModel

        models.mkdir(parents=True, exist_ok=True)
        config = CLIPConfig(
            text_config={"hidden_act": "gelu", "max_position_embeddings": 77, "vocab_size": 49408},
            vision_config={"hidden_act": "gelu", "image_size": 256, "patch_size": 32},
            projection_dim=512,
        )
        torch.manual_seed(0)
        clip = CLIPModel(config).eval()

        class Visual(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.clip = clip

            def forward(self, pixels: torch.Tensor) -> torch.Tensor:
                out = self.clip.get_image_features(pixel_values=pixels)
                return out if isinstance(out, torch.Tensor) else out.pooler_output

        class Textual(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.clip = clip

            def forward(self, tokens: torch.Tensor) -> torch.Tensor:
                out = self.clip.get_text_features(input_ids=tokens)
                return out if isinstance(out, torch.Tensor) else out.pooler_output

        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            for module, sample, name in (
                (Visual(), torch.rand(2, 3, 256, 256), "visual.onnx"),
                (Textual(), torch.randint(0, 49407, (2, 77)), "textual.onnx"),
            ):
                torch.onnx.export(
                    module, (sample,), str(models / name), input_names=["input"], output_names=["output"],
                    dynamic_axes={"input": {0: "n"}, "output": {0: "n"}}, opset_version=17, dynamo=False,
                )  # fmt: skip
    vocab = datadir / VOCAB
    if not vocab.exists():
        wheels = sorted(common.OUT.glob("open_clip_torch-*.whl"))
        if not wheels:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "open_clip_torch==3.3.0",
                    "--no-deps",
                    "-d",
                    common.OUT,
                ],
                check=True,
            )
            wheels = sorted(common.OUT.glob("open_clip_torch-*.whl"))
        vocab.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as wheel:
            vocab.write_bytes(wheel.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
    return datadir


def measured(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as peak:
        started = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-o", peak.name, "-f", "%M", *command],
            cwd=cwd, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if result.returncode not in (0, 1):  # imgd and rclip exit 1 for "no match"
            raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return {
            "wall_s": wall,
            "peak_mb": int(peak.read().split()[-1]) / 1024,
            "lines": len(result.stdout.splitlines()),
        }


def rclip_runs(datadir: Path, folder: Path, empty: Path, queries: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="rclip-data-") as fresh:
        # rclip keeps its database in the data folder: a fresh one per run, the model files linked in.
        for name in (MODEL_SUBDIR, "tokenizer"):
            os.symlink(datadir / name, Path(fresh) / name)
        env = {**os.environ, "RCLIP_DATADIR": fresh, "HF_HUB_OFFLINE": "1"}
        startup = measured([str(RCLIP), "-t", "1", "a photo"], empty, env)
        index = measured([str(RCLIP), "-t", "1", "a photo"], folder, env)
        query = [measured([str(RCLIP), "-n", "-t", "10", f"a dog {i}"], folder, env) for i in range(queries)]
    return {"startup": startup, "index": index, "query": query}


def imgd_runs(
    model_dir: Path, models: Path, folder: Path, empty: Path, queries: int, backend: str = "auto"
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="imgd-rclip-") as state:
        common.link_models(models, Path(state))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_RUNTIME_DIR": state}  # no daemon answers there
        imgd = str(common.IMGD) if common.IMGD.exists() else shutil.which("imgd") or "imgd"  # a worktree: the venv's
        base = [imgd, "--state-dir", state, "--model", str(model_dir), "--backend", backend]
        measured([*base, "index", "--quiet", str(empty)], empty, env)  # auto's one-time measurement, untimed
        startup = measured([*base, "index", "--quiet", str(empty)], empty, env)
        index = measured([*base, "index", "--quiet", str(folder)], folder, env)
        query = [measured([*base, "search", "--direct", "-k", "10", f"a dog {i}"], folder, env) for i in range(queries)]
    return {"startup": startup, "index": index, "query": query}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=48, help="corpus size (default 48)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default benchmarks/out/corpus-COUNT)")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="imgd's model folder")
    parser.add_argument("--queries", type=int, default=3, help="text queries per contender (default 3)")
    parser.add_argument("--json", type=Path, default=common.OUT / "bench_rclip.json", help="write figures here")
    parser.add_argument("--backend", default="auto", help="imgd's backend (default auto, imgd's default)")
    args = parser.parse_args()
    if not RCLIP.exists():
        raise SystemExit(f"{RCLIP} is missing; see the top of this file for the one-line install.")
    model_dir = common.ensure_model(args.model)
    models = common.exported_models(model_dir)
    datadir = ensure_rclip_models(common.OUT / "rclip-data")
    folder = common.ensure_corpus(args.count, args.corpus)
    paths = sorted(folder.glob("*.jpg"))
    common.warm_page_cache(paths)
    count = len(paths)
    with tempfile.TemporaryDirectory(prefix="empty-") as empty:
        load = os.getloadavg()[0]
        log(f"rclip (load average {load:.1f}) ...")
        rclip = rclip_runs(datadir, folder, Path(empty), args.queries)
        log(f"imgd --backend {args.backend} ...")
        imgd = imgd_runs(model_dir, models, folder, Path(empty), args.queries, args.backend)
        load_after = os.getloadavg()[0]
    lines = [
        f"machine: {common.machine_line()}; load average {load:.1f} before, {load_after:.1f} after",
        f"corpus: {count} x 4000x3000 JPEG q92 in {folder}",
        f"{'contender':<22}{'start s':>9}{'index s':>9}{'net img/s':>11}{'peak MB':>9}{'query s (median)':>18}",
    ]
    rates = {}
    mine = f"imgd --backend {args.backend}"
    for name, runs in (("rclip 3.3 (onnx)", rclip), (mine, imgd)):
        net = max(runs["index"]["wall_s"] - runs["startup"]["wall_s"], 1e-9)
        rates[name] = count / net
        query = statistics.median(q["wall_s"] for q in runs["query"])
        lines.append(
            f"{name:<22}{runs['startup']['wall_s']:>9.2f}{runs['index']['wall_s']:>9.1f}{count / net:>11.2f}"
            f"{runs['index']['peak_mb']:>9.0f}{query:>18.2f}"
        )
    lines.append(f"imgd / rclip indexing rate (net of start-up): {rates[mine] / rates['rclip 3.3 (onnx)']:.2f}x")
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"count": count, "rclip": rclip, "imgd": imgd, "load": [load, load_after]}, indent=2)
    )


if __name__ == "__main__":
    sys.exit(main())
