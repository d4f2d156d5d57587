"""Where imgd's indexing time goes: an in-process run of open_library + engine.reconcile, stage by stage.

Wraps (in this process only, daemon code untouched) the stages the engine calls: read, hash, decode,
prepare (decode threads), and in the main thread the sentence-transformers preprocessing, the model
forward and the catalog/index commit. Prints each stage's summed time, its share of the wall clock,
and how much of the wall the model was actually running. Variants change only the Config or the
torch thread count, to test a fix before touching daemon/:

    python benchmarks/profile_index.py --count 96 --decode-threads 2
    python benchmarks/profile_index.py --count 96 --decode-threads 1 --cprofile out/index.prof
    python benchmarks/profile_index.py --count 60 --backend auto   # an exported runtime (state: --state)

With an exported runtime, "st_preprocess" is imgd's own numpy preprocessing (Tower.inputs) and
"model_forward" the runtime's session.run.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import common


class Stages:
    """Thread-safe record of (stage, thread, start, end) intervals."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                with self._lock:
                    self.spans.append((name, threading.current_thread().name, started, ended))

        return timed

    def totals(self) -> dict[str, tuple[int, float]]:
        sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for name, _, start, end in self.spans:
            sums[name][0] += 1
            sums[name][1] += end - start
        return {k: (int(v[0]), v[1]) for k, v in sums.items()}

    def union(self, name: str) -> float:
        """Seconds during which at least one call of the stage was running."""
        spans = sorted((s, e) for n, _, s, e in self.spans if n == name)
        total, cur_s, cur_e = 0.0, None, None
        for s, e in spans:
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    total += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            total += cur_e - cur_s
        return total

    def overlap(self, a: str, b: str) -> float:
        """Summed seconds of stage b's calls that ran while a call of stage a was running."""
        a_spans = sorted((s, e) for n, _, s, e in self.spans if n == a)
        total = 0.0
        for n, _, s, e in self.spans:
            if n != b:
                continue
            for as_, ae in a_spans:
                if ae <= s:
                    continue
                if as_ >= e:
                    break
                total += min(e, ae) - max(s, as_)
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=96, help="corpus size (default 96)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default benchmarks/out/corpus-COUNT)")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="model folder (built if absent)")
    parser.add_argument("--decode-threads", type=int, default=0, help="Config.decode_threads (0 = one per core)")
    parser.add_argument("--batch-size", type=int, default=32, help="Config.batch_size")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0 = leave)")
    parser.add_argument("--omp-wait-policy", choices=["ACTIVE", "PASSIVE"], help="override imgd's default")
    parser.add_argument("--cprofile", type=Path, help="also write a cProfile of the main thread here")
    parser.add_argument("--json", type=Path, help="write the stage table here")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "openvino", "auto"])
    parser.add_argument("--state", type=Path, default=common.OUT / "ov-warm-state", help="exports for --backend")
    args = parser.parse_args()

    model_dir = common.ensure_model(args.model)
    folder = common.ensure_corpus(args.count, args.corpus)
    paths = sorted(folder.glob("*.jpg"))
    common.warm_page_cache(paths)

    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    # imgd.daemon first, as in the CLI and the daemon: it sets OMP_WAIT_POLICY before torch loads OpenMP.
    importlib.import_module("imgd.daemon")
    import torch
    from imgd.daemon.config import Config
    from imgd.daemon.ingest import imaging
    from imgd.daemon.service.library import open_library

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    stages = Stages()
    if args.backend == "torch":
        from imgd.daemon.embedders.torch import ClipEmbedder

        embedder = ClipEmbedder(str(model_dir), device="cpu", batch_size=args.batch_size)
        module = embedder._model[0]
        module.preprocess = stages.wrap("st_preprocess", module.preprocess)
        module.forward = stages.wrap("model_forward", module.forward)
    else:
        from imgd.daemon.embedders import load_embedder

        embedder = load_embedder(
            str(model_dir), "cpu", batch_size=args.batch_size, backend=args.backend, state_dir=args.state
        )
        embedder.encode_images([])  # open the tower, then time its parts
        tower = embedder._image
        tower.inputs = stages.wrap("st_preprocess", tower.inputs)
        tower.session.run = stages.wrap("model_forward", tower.session.run)
    imaging.read_bytes = stages.wrap("read", imaging.read_bytes)
    imaging.digest_bytes = stages.wrap("hash", imaging.digest_bytes)
    imaging.decode = stages.wrap("decode", imaging.decode)
    imaging.decode_with_meta = stages.wrap("decode", imaging.decode_with_meta)  # what the engine calls
    embedder.prepare = stages.wrap("prepare", embedder.prepare)
    embedder.encode_images = stages.wrap("encode_images", embedder.encode_images)

    with tempfile.TemporaryDirectory(prefix="imgd-profile-") as state:
        config = Config(state_dir=Path(state), decode_threads=args.decode_threads, batch_size=args.batch_size)
        library = open_library(config, embedder)
        engine = library.engine
        engine._commit = stages.wrap("commit", engine._commit)
        profiler = cProfile.Profile() if args.cprofile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        summary = engine.reconcile([str(folder)])
        engine.save_index()
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - started
        library.close()
    if profiler:
        args.cprofile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(args.cprofile))

    totals = stages.totals()
    threads = config.threads()
    lines = [
        f"machine: {common.machine_line()}",
        f"backend {getattr(embedder, 'backend', 'torch')} {getattr(embedder, 'precision', '')}, "
        f"{len(paths)} pictures, decode threads {threads}, torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', '(default)')}, "
        f"batch {args.batch_size}: added {summary.added}, failed {summary.failed}",
        f"reconcile + save: {wall:.1f} s wall, {len(paths) / wall:.2f} img/s",
        f"{'stage':<16}{'calls':>7}{'sum s':>9}{'ms/img':>9}{'% wall':>8}",
    ]
    order = ("read", "hash", "decode", "prepare", "encode_images", "st_preprocess", "model_forward", "commit")
    for name in order:
        calls, seconds = totals.get(name, (0, 0.0))
        lines.append(f"{name:<16}{calls:>7}{seconds:>9.2f}{seconds / len(paths) * 1000:>9.1f}{seconds / wall:>8.0%}")
    forward = stages.union("model_forward")
    decode_during = stages.overlap("model_forward", "decode") + stages.overlap("model_forward", "prepare")
    commit_other = totals.get("commit", (0, 0.0))[1] - totals.get("encode_images", (0, 0.0))[1]
    lines += [
        f"model forward running: {forward:.1f} s of {wall:.1f} s wall ({forward / wall:.0%}); "
        f"main thread waiting or elsewhere: {wall - stages.union('commit'):.1f} s",
        f"decode+prepare seconds that ran during a forward: {decode_during:.1f} s",
        f"commit minus encode (SQLite + FAISS add): {commit_other:.2f} s",
        "(sum s of thread-pool stages adds up the decode threads; ms/img = sum / pictures)",
    ]
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"wall_s": wall, "totals": totals, "forward_union_s": forward}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
