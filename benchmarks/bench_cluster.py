"""`imgd index` locally vs on a local Ray cluster (`--cluster local`), net of start-up, on one corpus.

Each contender is `imgd --backend B index [--cluster local] CORPUS --quiet` as a subprocess in a fresh
state folder (the model's export hard-linked in, as a second run finds it), wall clock. Its start-up is
the same command on an empty folder: process start and model load locally; with --cluster also Ray's
start (a local cluster of decode_threads CPUs, no dashboard, usage stats off) and every worker
loading the model. The net time is the corpus run less the empty run; the rate is pictures per net
second, and the ratio is the cluster's net rate over the local one. Rounds alternate the contenders
so that load from other processes falls on both alike.

    python benchmarks/bench_cluster.py --count 60 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import log


def run_imgd(model: Path, folder: Path, backend: str, models: Path | None, workers: int) -> float:
    """Wall seconds of one `imgd index` of folder into a fresh state folder."""
    with tempfile.TemporaryDirectory(prefix="imgd-bench-") as state:
        if models is not None:
            common.link_models(models, Path(state))
        command = [
            sys.executable,
            "-m",
            "imgd.cli.main",
            "--state-dir",
            state,
            "--model",
            str(model),
            "--backend",
            backend,
            "index",
        ]
        command += ["--cluster", "local"] if workers else []
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        if workers:  # the local cluster's size (a local run keeps its default: one decode thread per core)
            env["IMGD_DECODE_THREADS"] = str(workers)
        started = time.perf_counter()
        subprocess.run([*command, str(folder), "--quiet"], check=True, env=env)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch", "openvino"])
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL)
    parser.add_argument("--workers", type=int, default=2, help="the local cluster's workers (CPUs)")
    args = parser.parse_args()

    model = common.ensure_model(args.model)
    corpus = common.ensure_corpus(args.count)
    models = common.exported_models(model) if args.backend != "torch" else None
    pictures = sorted(corpus.glob("*.jpg"))[: args.count]
    common.warm_page_cache(pictures)
    empty = Path(tempfile.mkdtemp(prefix="imgd-empty-"))
    log(common.machine_line())
    runs: dict[str, dict[str, list[float]]] = {name: {"empty": [], "corpus": []} for name in ("local", "cluster")}
    for number in range(args.rounds):
        for name in ("local", "cluster"):
            for kind, folder in (("empty", empty), ("corpus", corpus)):
                seconds = run_imgd(model, folder, args.backend, models, args.workers if name == "cluster" else 0)
                runs[name][kind].append(seconds)
                log(f"round {number + 1}: {name} {kind} {seconds:.1f} s")
    result: dict[str, object] = {"machine": common.machine_line(), "count": len(pictures), "backend": args.backend}
    result["workers"] = args.workers
    rates = {}
    for name, times in runs.items():
        start = statistics.median(times["empty"])
        whole = statistics.median(times["corpus"])
        net = whole - start
        rates[name] = len(pictures) / net
        result[name] = {
            "startup_s": round(start, 1),
            "whole_s": round(whole, 1),
            "net_s": round(net, 1),
            "rate_per_s": round(rates[name], 2),
            "runs": {kind: [round(t, 1) for t in values] for kind, values in times.items()},
        }
    result["ratio_net"] = round(rates["cluster"] / rates["local"], 2)
    result["cluster_overhead_s"] = round(
        result["cluster"]["startup_s"] - result["local"]["startup_s"],  # type: ignore[index]
        1,
    )
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
