"""Decoding camera JPEGs with the 448-pixel draft floor against a 224 one (CPU ms a picture), and hashing.

python benchmarks/bench_draft_floor.py
"""

import glob
import time
from pathlib import Path

from imgd.daemon.ingest import imaging

files = sorted(glob.glob("benchmarks/out/corpus-60/*.jpg"))[:30]
datas = [Path(f).read_bytes() for f in files]
for side in (448, 224, 448, 224):
    t = time.process_time()
    for f, d in zip(files, datas, strict=True):
        im, meta = imaging.decode_with_meta(f, d, 10**9, min_side=side)
    dt = time.process_time() - t
    print(side, im.size, f"{dt / len(files) * 1000:.1f} cpu-ms/img")
t = time.process_time()
for d in datas:
    imaging.digest_bytes(d)
print("hash", f"{(time.process_time() - t) / len(files) * 1000:.1f} ms", len(datas[0]))
