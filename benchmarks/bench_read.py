"""The file reader before and after issue 23's RAW-rate fix, interleaved: 1 MiB reads joined vs one buffer.

Reads every file of --folder (the raw-preview folder bench_raw.py writes) --rounds times with each
reader, alternating which goes first, and prints the median and p10 ms per file.

    python benchmarks/bench_read.py --folder /tmp/stills/pics/raw-preview --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench_raw import chunked_read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    from imgd.daemon.ingest import imaging

    files = sorted(args.folder.iterdir())
    readers = [("whole", imaging.read_bytes), ("chunked", chunked_read)]
    times: dict[str, list[float]] = {name: [] for name, _ in readers}
    for number in range(args.rounds):
        for name, read in readers if number % 2 else readers[::-1]:
            for path in files:
                started = time.perf_counter()
                read(str(path))
                times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        ordered = sorted(values)
        print(
            f"{name:8} median {1000 * statistics.median(values):6.1f} ms  "
            f"p10 {1000 * ordered[len(ordered) // 10]:6.1f} ms  n={len(values)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
