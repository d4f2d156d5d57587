"""Memory and lock time of saving and loading a big index file (issue 21, session 4).

    python benchmarks/bench_save.py --file benchmarks/out/mem-1000000-0.3/index-new.faiss

Loads the given index file (VectorIndex.read: hashed then parsed a few MB at a time), saves it to a
new file beside this script's output (benchmarks/out/save-bench/), and loads that back, reporting for
each stage the seconds, RSS added and peak RSS added (VmHWM reset before each stage), and for the save
the longest time another thread waited for the index's lock (it asks every millisecond): what a search
or an added file waits meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import bench_memory
import common


def main() -> None:
    from imgd.daemon.store.index import VectorIndex

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = Path(__file__).parent / "out" / "save-bench"
    out.mkdir(parents=True, exist_ok=True)
    target = out / "index.faiss"
    result: dict[str, object] = {"file_mb": bench_memory.mb(args.file.stat().st_size), "load_avg": os.getloadavg()}
    loaded, (index, _) = bench_memory.measured("load", lambda: VectorIndex.read(args.file))
    result["load"] = loaded
    result["rss_loaded_mb"] = bench_memory.mb(common.rss_bytes())

    waits: list[float] = []
    done = threading.Event()

    def asker() -> None:
        while not done.is_set():
            asked = time.monotonic()
            with index._lock:
                pass
            waits.append(time.monotonic() - asked)
            time.sleep(0.001)

    thread = threading.Thread(target=asker)
    thread.start()
    index.dirty = True
    result["save"], _ = bench_memory.measured("save", lambda: index.save(target))
    done.set()
    thread.join()
    result["save"]["lock_wait_max_s"] = round(max(waits), 2)
    common.log(f"longest wait for the lock during the save: {max(waits):.2f} s")
    index.close()
    index = None  # freed before the reload
    result["reload"], _ = bench_memory.measured("reload", lambda: VectorIndex.read(target))
    target.unlink()
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
