"""The words pass per picture: its second decode (gate_decode) and the words gate, one thread, after a warm-up.

python benchmarks/bench_words_gate_split.py
"""

import glob
import time
from pathlib import Path

from imgd.daemon.ingest.words import WordReader, gate_decode

files = sorted(glob.glob("benchmarks/out/corpus-60/*.jpg"))
r = WordReader(threads=1)
d0 = Path(files[0]).read_bytes()
im, _ = gate_decode(files[0], d0, 10**9)
r.has_words(im)
tg = td = 0
c0 = time.process_time()
for f in files[1:41]:
    d = Path(f).read_bytes()
    t = time.perf_counter()
    im, size = gate_decode(f, d, 10**9)
    t1 = time.perf_counter()
    r.has_words(im)
    t2 = time.perf_counter()
    td += t1 - t
    tg += t2 - t1
per = 1000 / 40
cpu = (time.process_time() - c0) * per
print(f"40 pictures, 1 thread: decode {td * per:.0f} ms, gate {tg * per:.0f} ms each; CPU {cpu:.0f} ms; {im.size}")
