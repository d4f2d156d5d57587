"""The imgd engine: catalog, index, embedder, watcher and daemon; never prints, never exits."""

import os

# Before torch or FAISS load their OpenMP runtime: idle OpenMP threads sleep instead of spinning.
# Spinning threads make every small operation wait for a descheduled peer whenever the cores are
# shared (a desktop, a Nice=10 service, our own decode threads): measured here under load, one
# ViT-B/32 text query took 0.77 s spinning and 0.09 s passive (benchmarks/RESULTS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
