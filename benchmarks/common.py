"""Shared helpers for the benchmark scripts: paths, the offline model, the corpus, memory and machine facts."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
DEFAULT_MODEL = OUT / "vit-b-32"
IMGD = REPO / ".venv" / "bin" / "imgd"

# No hub, no progress bars: everything here is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ensure_model(path: Path = DEFAULT_MODEL, size: str = "vit-b-32") -> Path:
    """Build the random-weight CLIP of the given architecture once (tests/clipkit.py)."""
    if (path / "config.json").exists():
        return path
    sys.path.insert(0, str(REPO / "tests"))
    from clipkit import build_clip

    log(f"building the {size} model into {path}")
    return build_clip(path, size)


def ensure_corpus(count: int, folder: Path | None = None) -> Path:
    """A folder holding exactly pictures 0..count-1 (generated once, reused after)."""
    import corpus

    folder = folder or OUT / f"corpus-{count}"
    corpus.generate(folder, count, jobs=os.cpu_count() or 1)
    return folder


def warm_page_cache(paths: list[Path]) -> int:
    """Read every file once so that each contender finds them in the page cache alike."""
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    return total


def rss_bytes() -> int:
    """Resident set size of this process now, after handing freed heap back to the system."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"^Model name:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    import torch

    try:
        bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        bf16 = "unknown"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"mkldnn bf16 native: {bf16}, date {time.strftime('%Y-%m-%d %H:%M')}"
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def exported_models(model_dir: Path) -> Path:
    """The model's ONNX export, made once into benchmarks/out/onnx-state/models (torch, ~1 min for ViT-B/32)."""
    from imgd.daemon.embedders import load_embedder

    state = OUT / "onnx-state"
    started = time.perf_counter()
    load_embedder(str(model_dir), device="cpu", backend="onnx", state_dir=state)
    log(f"ONNX export of {model_dir.name} ready in {time.perf_counter() - started:.1f} s")
    return state / "models"


def link_models(models: Path, state_dir: Path) -> None:
    """Give a fresh state folder the export by hard links: what a second run of imgd finds, without copying."""
    import shutil

    target = Path(state_dir) / "models"
    if not target.exists():
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        shutil.copytree(models, target, copy_function=os.link)


def imgd_env(tmp: Path, state: Path, model: Path) -> dict[str, str]:
    """The environment of imgd processes confined to a temp folder: its state, socket and config, offline."""
    return {
        **os.environ,
        "IMGD_STATE_DIR": str(state),
        "IMGD_MODEL": str(model),
        "XDG_RUNTIME_DIR": str(tmp / "run"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "HF_HUB_OFFLINE": "1",
    }
