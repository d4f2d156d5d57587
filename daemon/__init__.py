"""The imgd engine: catalog, index, embedder, watcher and daemon; never prints, never exits."""

import os

# Before torch or FAISS load their OpenMP runtime: idle OpenMP threads sleep instead of spinning.
# Spinning threads make every small operation wait for a descheduled peer whenever the cores are
# shared (a desktop, a Nice=10 service, our own decode threads): beside two busy processes one
# ViT-B/32 text query took 876 ms spinning and 180 ms passive; on an idle machine passive costs
# ~20% (benchmarks/RESULTS.md, bench_threads.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
