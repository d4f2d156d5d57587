"""Warm start of a model command on ViT-B/32, this tree against another (a baseline checkout), fresh processes.

Two commands, each with the export, the backend record and the compiled cache already in place:
`imgd search --direct "..."` (the whole CLI: imports, catalog, index, the text tower, one query) and
the image side of `imgd index` (import imgd, load_embedder, open the image tower, embed one picture).
Wall and CPU seconds (user + system of the child) per run; the min and median of --runs.

    python benchmarks/bench_ov_warm.py --runs 1                  # once: builds the model, the export and state
    git archive <commit> | tar -x -C /tmp/base/imgd && touch /tmp/base/imgd/__init__.py
    python benchmarks/bench_warm_start.py --base /tmp/base [--runs 5] [--backends onnx openvino] [--uncompiled]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, ensure_model  # noqa: E402

IMAGE = """
import sys
from pathlib import Path
from PIL import Image
from imgd.daemon.embedders import load_embedder
embedder = load_embedder(sys.argv[2], "cpu", "auto", 32, backend=sys.argv[3], state_dir=Path(sys.argv[1]))
picture = Image.new("RGB", (640, 480), (200, 40, 40))
assert embedder.encode_images([embedder.prepare(picture)]).shape[0] == 1
"""


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="a folder holding imgd/ of the baseline (git archive)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["onnx", "openvino"])
    parser.add_argument("--pictures", type=Path, default=None, help="a folder to index once for search")
    parser.add_argument(
        "--uncompiled", action="store_true", help="also run a copy of --base without .pyc files that writes none"
    )
    args = parser.parse_args()
    # Resolved: OpenVINO's cache is keyed by the ONNX file's path, so worktrees that link a shared out/
    # would each compile (and keep) their own blobs under their own spelling of the same file.
    model = ensure_model().resolve()
    state = (OUT / "ov-warm-state").resolve()
    trees = {"this": str(REPO / ".imgdpath")}
    if args.base:
        trees = {"base": str(args.base), **trees}
    uncompiled = None
    if args.base and args.uncompiled:  # what runs measured while the environment said PYTHONDONTWRITEBYTECODE=1
        uncompiled = Path(tempfile.mkdtemp(prefix="imgd-uncompiled-"))
        shutil.copytree(args.base, uncompiled, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        trees = {"base, no .pyc": str(uncompiled), **trees}
    base_env = {**os.environ, "IMGD_STATE_DIR": str(state), "IMGD_MODEL": str(model), "IMGD_DEVICE": "cpu"}
    # A user's install has its .pyc files: without them every run compiles imgd's ~70 modules again (0.1-0.2 CPU
    # s of `search --direct`, which session 3's figures included). The warm-up run below writes them.
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not (state / "catalog.db").exists() and args.pictures:
        env = {**base_env, "PYTHONPATH": trees["this"], "IMGD_BACKEND": "onnx"}
        subprocess.run([sys.executable, "-m", "imgd.cli.main", "index", str(args.pictures)], env=env, check=True)
    commands = {
        "search --direct": lambda backend: [sys.executable, "-m", "imgd.cli.main", "search", "--direct", "red"],
        "image tower + 1 picture": lambda backend: [sys.executable, "-c", IMAGE, str(state), str(model), backend],
    }
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    rows = {}
    for backend in args.backends:
        for path in trees.values():
            env = {**base_env, "PYTHONPATH": path, "IMGD_BACKEND": backend}
            if uncompiled is not None and path == str(uncompiled):
                env["PYTHONDONTWRITEBYTECODE"] = "1"
            for command in commands.values():
                timed(command(backend), env)  # warm-up: page cache, .pyc, any first-open note
        for _ in range(args.runs):
            for tree, path in trees.items():  # interleaved, so load changes hit both trees alike
                env = {**base_env, "PYTHONPATH": path, "IMGD_BACKEND": backend}
                if uncompiled is not None and path == str(uncompiled):
                    env["PYTHONDONTWRITEBYTECODE"] = "1"
                for what, command in commands.items():
                    rows.setdefault((backend, what, tree), []).append(timed(command(backend), env))
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| backend | command | tree | wall s min / median | CPU s min / median |")
    print("|---|---|---|---|---|")
    for (backend, what, tree), runs in rows.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"| {backend} | {what} | {tree} | {min(walls):.2f} / {statistics.median(walls):.2f} "
            f"| {min(cpus):.2f} / {statistics.median(cpus):.2f} |"
        )
    if uncompiled is not None:
        shutil.rmtree(uncompiled, ignore_errors=True)


if __name__ == "__main__":
    main()
