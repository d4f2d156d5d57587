"""A serving process's memory with both towers open and a batch embedded: RSS, anonymous and file-backed.

python benchmarks/bench_tower_memory.py openvino|onnx   (state: benchmarks/out/ov-warm-state, bench_ov_warm.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

from imgd.daemon.embedders import load_embedder
from PIL import Image


def rss(tag: str) -> None:
    keys = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    lines = Path("/proc/self/status").read_text().splitlines()
    print(tag, {line.split(":")[0]: int(line.split()[1]) // 1024 for line in lines if line.startswith(keys)})


def main() -> None:
    model = str(Path("benchmarks/out/vit-b-32").resolve())
    state = Path("benchmarks/out/ov-warm-state")
    embedder = load_embedder(model, "cpu", "auto", 32, backend=sys.argv[1], state_dir=state)
    embedder.encode_texts(["a dog"])
    rss("text open")
    pictures = [embedder.prepare(Image.new("RGB", (640, 480), (i * 8, 40, 40))) for i in range(32)]
    embedder.encode_images(pictures)
    rss("image batch 32")
    embedder.encode_images(pictures[:8])
    rss("image batch 8")


if __name__ == "__main__":
    main()
