"""The text tower's memory and the cost of reopening it: a query, release, three reopen-and-query rounds.

python benchmarks/bench_text_release.py openvino|onnx   (state: benchmarks/out/ov-warm-state, bench_ov_warm.py)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from imgd.daemon.embedders import load_embedder


def rss() -> None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "RssAnon", "RssFile")):
            print("  ", line.strip())


def timed_query(embedder, text: str, what: str) -> None:  # noqa: ANN001 - any embedder
    started = time.perf_counter()
    embedder.encode_texts([text])
    print(what, round(time.perf_counter() - started, 3))


def main() -> None:
    model = str(Path("benchmarks/out/vit-b-32").resolve())
    state = Path("benchmarks/out/ov-warm-state")
    embedder = load_embedder(model, "cpu", "auto", 32, backend=sys.argv[1], state_dir=state)
    timed_query(embedder, "a dog", "first text")
    timed_query(embedder, "a cat", "second text")
    rss()
    embedder.release_texts()
    rss()
    for number in range(3):
        timed_query(embedder, f"a cow {number}", "after release")
        if number < 2:
            embedder.release_texts()
    rss()


if __name__ == "__main__":
    main()
