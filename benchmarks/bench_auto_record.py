"""One first load_embedder(backend=auto) on an empty state folder, then the measurement record it wrote.

python benchmarks/bench_auto_record.py /tmp/fresh-state
"""

import glob
import json
import sys
import time
from pathlib import Path

from imgd.daemon.embedders import load_embedder

state = Path(sys.argv[1])
state.mkdir(parents=True, exist_ok=True)
t = time.time()
e = load_embedder("benchmarks/out/vit-b-32", "cpu", "auto", 32, backend="auto", state_dir=state)
print("took", round(time.time() - t, 1))
for f in glob.glob(str(state / "**/backend-*.json"), recursive=True):
    r = json.loads(Path(f).read_text())
    for x in r["results"]:
        print({k: x.get(k) for k in ("backend", "precision", "images_per_s", "open_s", "hold_mb")})
    print("pick", r["pick"])
