"""The gallery at 100k images: query to the first screenful of 24 thumbnails in a real browser.

The catalog holds N synthetic vectors (empty files on disk, as in bench_query.py) and 48 real
4000x3000 (12 MP) JPEGs from corpus.py whose vectors lie near the query's, so the top results are
real photos whose thumbnails must be decoded. A real daemon (`imgd run`, on its IVF index) answers
the searches; `imgd web` runs as its own process; Debian's Chromium, driven by Playwright, types
the query and the clock stops when 24 thumbnails have loaded (naturalWidth > 0).

- cold: the thumbnail cache emptied and a fresh browser context (no HTTP cache) before the query;
- warm: the thumbnails on disk, again a fresh browser context;
- the query's text vector is cached in the daemon in both (the very first query is reported apart).
The corpus files are in the OS page cache (they were just written), so "cold" is decoding, not disk.

    .venv/bin/python benchmarks/bench_gallery.py --count 100000 --rounds 5
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import browserkit  # noqa: E402
import common  # noqa: E402
import corpus  # noqa: E402
import numpy as np  # noqa: E402
from bench_search import Mixture  # noqa: E402
from clipkit import build_clip  # noqa: E402
from imgd.daemon.ingest import imaging  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

QUERY = "a red kite over the beach at dusk"
REAL = 48
# Submit the query the way a person does, then wait in the page for 24 loaded thumbnails.
FIRST_SCREEN = """async ([query, count]) => {
  const started = performance.now();
  document.getElementById('q').value = query;
  document.getElementById('search').requestSubmit();
  await new Promise(resolve => {
    const check = () => {
      const imgs = [...document.querySelectorAll('#grid .card img')].slice(0, count);
      if (imgs.length === count && imgs.every(i => i.complete && i.naturalWidth > 0)) resolve();
      else requestAnimationFrame(check);
    };
    check();
  });
  return performance.now() - started;
}"""


def query_vector(model: Path) -> np.ndarray:
    from imgd.daemon.embedders import load_embedder

    embedder = load_embedder(str(model), device="cpu")
    return np.asarray(embedder.encode_texts([QUERY])[0], dtype=np.float32)


def make_catalog(state: Path, pics: Path, real: list[Path], model: str, count: int, query: np.ndarray) -> None:
    """count synthetic contents plus the real photos, whose vectors sit close to the query's."""
    dim = len(query)
    mixture = Mixture(dim=dim, centres=max(10, count // 300))
    catalog = Catalog(state / "catalog.db")
    catalog.ensure_model(model, dim)
    rng = np.random.default_rng(7)
    with catalog.transaction():
        for path in real:
            noisy = query + 0.35 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
            data = path.read_bytes()
            with Image.open(path) as image:
                width, height = ImageOps.exif_transpose(image).size if image.getexif().get(0x0112) else image.size
            st = path.stat()
            content = catalog.add_content(imaging.digest_bytes(data), noisy / np.linalg.norm(noisy), width, height)
            catalog.set_file(str(path), st.st_size, st.st_mtime_ns, content)
    chunk = 10_000
    for start in range(0, count, chunk):
        vectors = mixture.sample(min(chunk, count - start), seed=start)
        with catalog.transaction():
            for offset, vector in enumerate(vectors):
                path = pics / "synthetic" / f"{(start + offset) // 1000:03d}" / f"img{start + offset:07d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                st = path.stat()
                content = catalog.add_content(f"synthetic-{start + offset}", vector, 1, 1)
                catalog.set_file(str(path), st.st_size, st.st_mtime_ns, content)
    catalog.close()


def rss(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def get(port: int, path: str, cookie: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers={"Cookie": cookie})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="synthetic images besides the 48 real ones")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, default=ROOT / "benchmarks" / "out" / "vit-b-32")
    args = parser.parse_args()

    model = build_clip(args.model, size="vit-b-32")
    sources = corpus.generate(ROOT / "benchmarks" / "out" / f"corpus-{REAL}", REAL, jobs=1)
    imgd = str(Path(sys.executable).with_name("imgd"))
    with tempfile.TemporaryDirectory(prefix="imgd-bench-gallery-") as tmp:
        tmp_path = Path(tmp)
        state, pics = tmp_path / "state", tmp_path / "pics"
        real = [pics / "real" / p.name for p in sources]
        (pics / "real").mkdir(parents=True)
        for source, target in zip(sources, real, strict=True):
            shutil.copy2(source, target)
        env = common.imgd_env(tmp_path, state, model)
        started = time.perf_counter()
        make_catalog(state, pics, real, str(model.resolve()), args.count, query_vector(model))
        print(
            f"catalog: {args.count} synthetic + {REAL} real 12 MP JPEGs, built in {time.perf_counter() - started:.0f}s"
        )

        daemon_log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen([imgd, "run", str(pics)], env=env, stdout=daemon_log, stderr=subprocess.STDOUT)
        web = None
        try:
            while True:
                if daemon.poll() is not None:
                    raise SystemExit((tmp_path / "daemon.log").read_text())
                probe = subprocess.run([imgd, "status", "--json"], env=env, capture_output=True, text=True)
                if '"state": "idle"' in probe.stdout and (
                    '"kind": "approximate"' in probe.stdout or args.count < 40_000
                ):
                    break
                time.sleep(1)
            web = subprocess.Popen([imgd, "web", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True)
            url = web.stdout.readline().split()[-1]
            port = int(re.search(r":(\d+)/", url).group(1))
            token = url.split("token=")[1]
            cookie = f"imgd_token_{port}={token}"
            time.sleep(2)
            rss_start = rss(web.pid)

            with browserkit.chromium() as browser:

                def screenful(cold: bool) -> float:
                    if cold:
                        shutil.rmtree(state / "thumbs", ignore_errors=True)
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_function("() => document.getElementById('status').textContent.includes('images')")
                    elapsed = page.evaluate(FIRST_SCREEN, [QUERY, 24])
                    names = page.locator("#grid .card .name").all_inner_texts()[:24]
                    assert all(n.startswith("IMG_") for n in names), names  # real photos, not synthetic
                    context.close()
                    return elapsed

                first = screenful(cold=True)
                cold, warm = [], []
                for _ in range(args.rounds):
                    cold.append(screenful(cold=True))
                    warm.append(screenful(cold=False))

            searches = []
            for _ in range(10):
                begun = time.perf_counter()
                status, body = get(port, f"/api/search?q={QUERY.replace(' ', '%20')}&limit=24", cookie)
                searches.append((time.perf_counter() - begun) * 1000)
                assert status == 200, body
            ids = re.findall(rb'"id":"([0-9a-f-]+)"', get(port, "/api/search?q=kite&limit=96", cookie)[1])
            ids = [i.decode() for i in ids]
            for item in ids:
                get(port, f"/thumb/{item}", cookie)
            grid = sorted((state / "thumbs").rglob("*.jpg"))
            grid_bytes = [p.stat().st_size for p in grid]
            view_bytes = []
            for item in ids[:8]:
                view_bytes.append(len(get(port, f"/view/{item}", cookie)[1]))
            time.sleep(10)
            rss_idle = rss(web.pid)
        finally:
            if web is not None:
                web.send_signal(signal.SIGTERM)
                web.wait(30)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            daemon_log.close()

    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(f"first query ever (text not yet encoded, thumbnails cold): {first:.0f} ms")
    print(
        f"cold thumbnail cache: median {statistics.median(cold):.0f} ms "
        f"(min {min(cold):.0f}, max {max(cold):.0f}, {len(cold)} runs)"
    )
    print(
        f"warm thumbnail cache: median {statistics.median(warm):.0f} ms "
        f"(min {min(warm):.0f}, max {max(warm):.0f}, {len(warm)} runs)"
    )
    print(f"/api/search alone (24 results, text cached): median {statistics.median(searches):.0f} ms")
    print(
        f"grid thumbnails: {len(grid_bytes)} files, mean {statistics.mean(grid_bytes) / 1024:.1f} KiB "
        f"-> {statistics.mean(grid_bytes) * 1000 / 1e6:.1f} MB per 1,000 images"
    )
    print(f"full-view renditions (1600 px): mean {statistics.mean(view_bytes) / 1024:.0f} KiB")
    print(f"gallery RSS: {rss_start:.0f} MiB after start, {rss_idle:.0f} MiB idle after the runs")


if __name__ == "__main__":
    main()
