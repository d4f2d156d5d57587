"""Wall time of a whole `imgd search "text"` process, through the daemon and direct, at 100k images.

The catalog is synthetic: N empty files on disk (so results pass the on-disk check and the daemon's
catch-up sees them unchanged) with random unit vectors. The model is the ViT-B/32-sized random-weight
one from tests/clipkit.py, so text encoding costs what the real model costs.

    .venv/bin/python benchmarks/bench_query.py --count 100000 --runs 30
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from clipkit import build_clip  # noqa: E402
from imgd.daemon.catalog import Catalog  # noqa: E402


def make_catalog(state: Path, pics: Path, model: str, count: int, dim: int) -> None:
    pics.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    catalog = Catalog(state / "catalog.db")
    catalog.ensure_model(model, dim)
    chunk = 10_000
    for start in range(0, count, chunk):
        vectors = rng.standard_normal((min(chunk, count - start), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with catalog.transaction():
            for offset, vector in enumerate(vectors):
                path = pics / f"{(start + offset) // 1000:03d}" / f"img{start + offset:07d}.jpg"
                path.parent.mkdir(exist_ok=True)
                path.touch()
                st = path.stat()
                content = catalog.add_content(f"synthetic-{start + offset}", vector, 1, 1)
                catalog.set_file(str(path), st.st_size, st.st_mtime_ns, content)
    catalog.close()


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--direct-runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / "benchmarks" / "out" / "vit-b-32")
    args = parser.parse_args()

    model = build_clip(args.model, size="vit-b-32")
    imgd = str(Path(sys.executable).with_name("imgd"))
    with tempfile.TemporaryDirectory(prefix="imgd-bench-query-") as tmp:
        tmp_path = Path(tmp)
        state, pics, run = tmp_path / "state", tmp_path / "pics", tmp_path / "run"
        env = {
            **os.environ,
            "IMGD_STATE_DIR": str(state),
            "IMGD_MODEL": str(model),
            "XDG_RUNTIME_DIR": str(run),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HF_HUB_OFFLINE": "1",
        }
        started = time.perf_counter()
        make_catalog(state, pics, str(model.resolve()), args.count, 512)
        print(f"synthetic catalog of {args.count} images built in {time.perf_counter() - started:.1f}s")

        log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen([imgd, "run", str(pics)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            started = time.perf_counter()
            while True:
                if daemon.poll() is not None:
                    raise SystemExit((tmp_path / "daemon.log").read_text())
                probe = subprocess.run([imgd, "status", "--json"], env=env, capture_output=True, text=True)
                if '"running": true' in probe.stdout and '"state": "idle"' in probe.stdout:
                    break
                time.sleep(1)
            print(f"daemon ready and idle after {time.perf_counter() - started:.1f}s")
            timed([imgd, "search", "warm up the text model"], env)
            via_daemon = []
            for i in range(args.runs):
                elapsed, out = timed([imgd, "search", f"a photo of thing number {i}"], env)
                via_daemon.append(elapsed)
            cached = [timed([imgd, "search", "a photo of thing number 0"], env)[0] for _ in range(5)]
            direct = []
            for i in range(args.direct_runs):
                elapsed, direct_out = timed([imgd, "search", "--direct", f"a photo of thing number {i}"], env)
                direct.append(elapsed)
            status = subprocess.run([imgd, "status"], env=env, capture_output=True, text=True).stdout
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            log.close()

    def describe(values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        return f"median {statistics.median(values) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, n={len(values)}"

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"imgd search through the daemon ({args.count} images): {describe(via_daemon)}")
    print(f"  same query again (text-vector cache hit): {describe(cached)}")
    print(f"imgd search --direct ({args.count} images): {describe(direct)}")
    print(status)


if __name__ == "__main__":
    main()
