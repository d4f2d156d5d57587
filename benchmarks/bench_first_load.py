"""Where the first `auto` load on an empty state folder spends its CPU, in CPU seconds (robust to a loaded machine).

`load`: load_embedder(backend=auto) on a fresh state folder, then one picture and one text; the CPU of
this process (the measurement, OpenVINO's compile) and of the export child, and the peak RSS of each.
`export`: the export's own steps in this process (imports, model load, fingerprint, each tower's
tracing and its verification against torch).

    python benchmarks/bench_first_load.py load
    python benchmarks/bench_first_load.py export
"""

from __future__ import annotations

import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_model  # noqa: E402

MARKS = [(time.perf_counter(), time.process_time())]


def mark(what: str) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    print(f"  {what}: wall {wall - MARKS[-1][0]:.2f} s, cpu {cpu - MARKS[-1][1]:.2f} s", flush=True)
    MARKS.append((wall, cpu))


def first_load(model: Path, state: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)7.0f ms %(message)s")
    from imgd.daemon.embedders import load_embedder

    embedder = load_embedder(str(model), "cpu", "auto", 32, backend="auto", state_dir=state)
    mark("load_embedder(auto): export child + measurement")
    embedder.encode_images([])
    embedder.encode_texts(["a photo"])
    mark("image and text towers open")
    print(f"  -> {embedder.backend} {embedder.precision}: {embedder.reason}")
    own, child = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own_cpu, child_cpu = own.ru_utime + own.ru_stime, child.ru_utime + child.ru_stime
    print(
        f"  cpu: this process {own_cpu:.1f} s, export child {child_cpu:.1f} s;"
        f" peak RSS {own.ru_maxrss / 1024:.0f} MB, child {child.ru_maxrss / 1024:.0f} MB"
    )


def export_steps(model: Path, state: Path) -> None:
    import torch  # noqa: F401

    mark("import torch")
    import transformers  # noqa: F401

    mark("import transformers")
    import sentence_transformers  # noqa: F401
    from imgd.daemon.embedders import export
    from imgd.daemon.embedders import torch as backend
    from imgd.daemon.embedders.store import ModelStore

    mark("import sentence_transformers (+ imgd)")
    st_model = backend.load_sentence_transformer(str(model), "cpu")
    mark("load the model")
    fingerprint = backend.fingerprint_of(st_model)
    mark("fingerprint")

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            result = fn(*args, **kwargs)
            mark(name)
            return result

        return wrapper

    export._export = timed("trace and write a tower (image first, then text)", export._export)
    export._verify_images = timed("verify the image tower (ONNX Runtime vs torch)", export._verify_images)
    export._verify_texts = timed("verify the text tower", export._verify_texts)
    export.export_model(st_model, fingerprint, ModelStore(state / "models"), "bench")
    mark("publish")


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "load"
    model = ensure_model()
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    with tempfile.TemporaryDirectory(prefix="imgd-first-") as folder:
        (first_load if mode == "load" else export_steps)(model, Path(folder))
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
