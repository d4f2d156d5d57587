"""Wall time of a whole `imgd search "text"` process, through the daemon and direct, at 100k images.

The catalog is synthetic: N empty files on disk (so results pass the on-disk check and the daemon's
catch-up sees them unchanged) with CLIP-like clustered unit vectors (bench_search.Mixture), so the
daemon switches to its IVF index as it would for a real library; the timing starts once it has.
The model is the ViT-B/32-sized random-weight one from tests/clipkit.py, so text encoding costs what
the real model costs.

The catalog is built once; a daemon per backend (--backends) then serves it in turn, the ONNX one
with the export present. For ONNX it also waits for the image model to be freed (--idle-unload
seconds), reports the memory then, drops one new picture in and reports the reload time from the log.

    .venv/bin/python benchmarks/bench_query.py --count 100000 --runs 30
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import common  # noqa: E402
from bench_search import Mixture  # noqa: E402
from clipkit import build_clip, whole_words  # noqa: E402
from imgd.daemon.paths import default_socket  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402


def make_catalog(state: Path, pics: Path, model: str, count: int, dim: int) -> None:
    pics.mkdir(parents=True, exist_ok=True)
    mixture = Mixture(dim=dim, centres=max(10, count // 300))
    catalog = Catalog(state / "catalog.db")
    catalog.ensure_model(model, dim)
    chunk = 10_000
    for start in range(0, count, chunk):
        vectors = mixture.sample(min(chunk, count - start), seed=start)
        with catalog.transaction():
            for offset, vector in enumerate(vectors):
                path = pics / f"{(start + offset) // 1000:03d}" / f"img{start + offset:07d}.jpg"
                path.parent.mkdir(exist_ok=True)
                path.touch()
                st = path.stat()
                content = catalog.add_content(f"synthetic-{start + offset}", vector, 1, 1)
                catalog.set_file(str(path), st.st_size, st.st_mtime_ns, content)
    catalog.close()


def realistic_queries(count: int) -> list[str]:
    """Distinct five-word queries ("dog on the beach summer"): as many tokens as CLIP's BPE gives such a query.

    The benchmark model's tokenizer keeps these words whole (tests/clipkit.py), as the real one does;
    any other word would cost one token per character.
    """
    words = whole_words()
    rng = random.Random(0)
    queries: dict[str, None] = {}
    while len(queries) < count:
        queries.setdefault(" ".join(rng.sample(words, 5)))
    return list(queries)


def memory(pid: int) -> str:
    """Resident and peak resident memory of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return f"RSS {fields['VmRSS'].strip()}, peak {fields['VmHWM'].strip()}"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed, result.stdout


def combined_terms(sock: Path, words: list[str], runs: int) -> tuple[list[float], list[float]]:
    """One term against three (cached text vectors), interleaved, timed at the socket (no process start)."""
    from imgd.daemon.api import client
    from imgd.daemon.protocol import SearchRequest, Term

    single = SearchRequest(terms=(Term("text", words[0]),)).to_message()
    triple = SearchRequest(
        terms=(Term("text", words[0]), Term("text", words[1], 2.0), Term("text", words[2], -1.0))
    ).to_message()
    for message in (single, triple):  # fill the text-vector cache
        client.request(sock, message)
    one, three = [], []
    for _ in range(runs):
        for message, into in ((single, one), (triple, three)):
            started = time.perf_counter()
            client.request(sock, message)
            into.append(time.perf_counter() - started)
    return one, three


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--direct-runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / "benchmarks" / "out" / "vit-b-32")
    parser.add_argument("--backends", default="torch,onnx", help="daemon backends, in turn (default torch,onnx)")
    parser.add_argument("--idle-unload", type=int, default=20, help="onnx: idle_unload seconds to measure (0: skip)")
    args = parser.parse_args()

    model = build_clip(args.model, size="vit-b-32")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    models = common.exported_models(model) if "onnx" in backends else None
    imgd = str(Path(sys.executable).with_name("imgd"))
    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="imgd-bench-query-") as tmp:
        tmp_path = Path(tmp)
        state, pics = tmp_path / "state", tmp_path / "pics"
        # Installed packages carry compiled bytecode; let our source tree have it too (pip would).
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "daemon"), str(ROOT / "cli")], check=True)
        env = common.imgd_env(tmp_path, state, model)
        started = time.perf_counter()
        make_catalog(state, pics, str(model.resolve()), args.count, 512)
        print(f"synthetic catalog of {args.count} images built in {time.perf_counter() - started:.1f}s")
        if models is not None:
            common.link_models(models, state)
        queries = realistic_queries(len(backends) * (args.runs + args.direct_runs + 1))
        for backend in backends:
            backend_env = {**env, "IMGD_BACKEND": backend, "IMGD_IDLE_UNLOAD": str(args.idle_unload)}
            mine = [queries.pop() for _ in range(args.runs + args.direct_runs + 1)]
            report += run_backend(imgd, backend, backend_env, tmp_path, pics, mine, args)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print("\n".join(report))


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(values) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, n={len(values)}"


def run_backend(
    imgd: str, backend: str, env: dict[str, str], tmp_path: Path, pics: Path, queries: list[str], args: object
) -> list[str]:
    """Start the daemon on the shared catalog with one backend, time queries through it and direct."""
    log_path = tmp_path / f"daemon-{backend}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    daemon = subprocess.Popen([imgd, "run", str(pics)], env=env, stdout=log, stderr=subprocess.STDOUT)
    lines = [f"backend {backend} (load average at start {os.getloadavg()[0]:.1f}):"]
    try:
        started = time.perf_counter()
        while True:
            if daemon.poll() is not None:
                raise SystemExit(log_path.read_text())
            probe = subprocess.run([imgd, "status", "--json"], env=env, capture_output=True, text=True)
            ready = '"running": true' in probe.stdout and '"state": "idle"' in probe.stdout
            if ready and ('"kind": "approximate"' in probe.stdout or args.count < 40_000):
                break
            time.sleep(1)
        lines.append(f"  daemon ready, idle and on its final index after {time.perf_counter() - started:.1f}s")
        lines.append(f"  daemon memory before any search: {memory(daemon.pid)}")
        timed([imgd, "search", queries.pop()], env)  # warm up: the first query loads the text path
        via_daemon = [timed([imgd, "search", query], env)[0] for query in queries[: args.runs]]
        cached = [timed([imgd, "search", queries[0]], env)[0] for _ in range(5)]
        sock = default_socket(Path(env["IMGD_STATE_DIR"]), env["XDG_RUNTIME_DIR"])  # the daemon's, as imgd names it
        one, three = combined_terms(sock, queries[:3], args.runs)
        floor = [timed([imgd, "--help"], env)[0] for _ in range(10)]  # start-up of the Click CLI alone
        direct = [timed([imgd, "search", "--direct", query], env)[0] for query in queries[args.runs :]]
        lines.append(f"  daemon memory after the searches: {memory(daemon.pid)}")
        if backend == "onnx" and args.idle_unload > 0:
            deadline = time.monotonic() + args.idle_unload + 60
            while b"freed the image model" not in log_path.read_bytes() and time.monotonic() < deadline:
                time.sleep(1)
            lines.append(f"  daemon memory with the image model freed (idle_unload {args.idle_unload} s): "
                         f"{memory(daemon.pid)}")  # fmt: skip
            new = pics / "new" / "reload.jpg"
            new.parent.mkdir(exist_ok=True)
            from PIL import Image

            Image.new("RGB", (1600, 1200), "teal").save(new)
            deadline = time.monotonic() + 120
            while b"loaded the image model again" not in log_path.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.5)
            reload = [line for line in log_path.read_text().splitlines() if "loaded the image model again" in line]
            lines.append(f"  reload on the next file: {reload[-1].split('again ')[-1] if reload else 'not seen'}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
    lines += [
        f"  imgd search through the daemon ({args.count} images): {describe(via_daemon)}",
        f"    same query again (text-vector cache hit): {describe(cached)}",
        f"    `imgd --help` (process start, imports, Click; no query): {describe(floor)}",
        f"  socket round trip, 1 text term (cached vector): {describe(one)}",
        f"  socket round trip, 3 terms: 2 texts + 1 negative (cached vectors): {describe(three)}",
        f"    3 terms cost {(statistics.median(three) - statistics.median(one)) * 1000:.2f} ms more (medians)",
        f"  imgd search --direct ({args.count} images): {describe(direct)}",
    ]
    return lines


if __name__ == "__main__":
    main()
