"""The export child's timeline: export, then auto's measurement with each candidate's steps timed, on a fresh folder.

Runs exportchild.main in this process with its log lines and choice._time, choice._open_cost and
onnx.load_onnx stamped with seconds since start.

    python benchmarks/bench_export_timeline.py benchmarks/out/vit-b-32 /tmp/fresh-models
"""

from __future__ import annotations

import functools
import logging
import sys
import time

from imgd.daemon.embedders import choice, exportchild
from imgd.daemon.embedders import onnx as onnx_module

START = time.perf_counter()


class Stamped(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{time.perf_counter() - START:7.2f} {record.name}: {record.getMessage()}"


def stamp(module: object, name: str) -> None:
    real = getattr(module, name)

    @functools.wraps(real)
    def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        found = real(*args, **kwargs)
        now = time.perf_counter()
        print(f"{now - START:7.2f} [{name} took {now - started:.2f} s]", file=sys.stderr)
        return found

    setattr(module, name, timed)


def main() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(Stamped())
    logging.basicConfig = lambda **_: None  # exportchild's own setup would replace the stamped handler
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    for noisy in ("urllib3", "filelock", "fsspec", "PIL", "torch", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("_time", "_open_cost"):
        stamp(choice, name)
    stamp(onnx_module, "load_onnx")
    exportchild.main([sys.argv[1], sys.argv[2], "--measure"])
    print(f"{time.perf_counter() - START:7.2f} done", file=sys.stderr)


if __name__ == "__main__":
    main()
