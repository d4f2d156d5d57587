"""The long reliability run: 50+ SIGKILLs, every hostile input, a 10,000-file burst, 100,000 folders,
and the ways people move files (sync tools' hidden temp names, organisers, two watched roots, replaced roots).

It drives the same scenarios as tests/e2e/faults (tests/e2e/faults/faultkit.py) with long-run sizes, each in a
fresh folder against a real `imgd run` subprocess, and every scenario ends with
daemonkit.check_invariants: catalog == disk, each path once, one vector per content, the saved index
== the catalog, every image finds itself first, and every catalogued file fresh (same bytes). The
watcher workloads also count forward passes of bytes the catalog already held (re-embedded for nothing,
which must be 0). Any violation raises; the figures printed at the end are only counted when all checks
passed.

    .venv/bin/python benchmarks/soak.py                  # 12.7 minutes on 2 cores (2026-11-27)
    .venv/bin/python benchmarks/soak.py --kills 20 --burst 2000 --dirs 20000   # a shorter run
    .venv/bin/python benchmarks/soak.py --only watcher_workloads_inotify,watcher_workloads_polling

Uses the tiny test CLIP (IMGD_TEST_MODEL_DIR, default /tmp/tinyclip; built if missing). Needs root for
the tmpfs used by the 100,000 folders (falls back to the normal disk) and for the unprivileged
and watch-limit scenarios (skipped without it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "e2e" / "faults")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faultkit  # noqa: E402
from clipkit import build_clip  # noqa: E402

ONLY: set[str] = set()


def scenario(name: str, results: dict[str, Any], run: Callable[[Path], dict[str, Any]]) -> None:
    """Run one scenario in a fresh folder, time it, keep its figures; failures stop the soak."""
    if ONLY and name not in ONLY:
        return
    folder = Path(tempfile.mkdtemp(prefix=f"imgd-soak-{name}-"))
    started = time.monotonic()
    print(f"== {name} ...", flush=True)
    try:
        figures = run(folder)
    except BaseException:
        print(f"!! {name} failed; its folder is kept: {folder}", flush=True)
        raise
    figures["seconds"] = round(time.monotonic() - started, 1)
    results[name] = figures
    print(f"   {json.dumps(figures)}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=54, help="SIGKILLs in all (catch-up, burst, mid-save)")
    parser.add_argument("--files", type=int, default=3000, help="images present before the catch-up")
    parser.add_argument("--burst", type=int, default=10000, help="files in the burst with searches")
    parser.add_argument("--dirs", type=int, default=100000, help="empty folders")
    parser.add_argument("--race-rounds", type=int, default=5, help="rounds of replace/delete races (4 files each)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--ivf-kills", type=int, default=10, help="SIGKILLs while IVF indexes are built and swapped")
    parser.add_argument("--exact-limit", type=int, default=500, help="exact_limit for that scenario (IVF past it)")
    parser.add_argument("--watch-files", type=int, default=300, help="images moved, organised, replaced per mode")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run (default: all)")
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("IMGD_TEST_MODEL_DIR", "/tmp/tinyclip")))
    args = parser.parse_args()
    ONLY.update(name for name in args.only.split(",") if name)

    model = build_clip(args.model)
    per_phase = max(1, args.kills // 3)
    results: dict[str, Any] = {}
    started = time.monotonic()

    scenario(
        "crash_catchup_and_burst",
        results,
        lambda tmp: faultkit.crash_during_catchup_and_burst(
            tmp, model, catchup_kills=per_phase, burst_kills=per_phase, files=args.files, seed=args.seed
        ),
    )
    scenario(
        "crash_over_ivf_builds",
        results,
        lambda tmp: faultkit.crash_during_catchup_and_burst(
            tmp,
            model,
            catchup_kills=args.ivf_kills // 2,
            burst_kills=args.ivf_kills - args.ivf_kills // 2,
            files=args.files,
            seed=args.seed + 1,
            IMGD_EXACT_LIMIT=str(args.exact_limit),
        ),
    )
    scenario(
        "crash_mid_save",
        results,
        lambda tmp: faultkit.crash_during_persist(tmp, model, kills=args.kills - 2 * per_phase, seed=args.seed),
    )
    scenario("hostile_inputs", results, lambda tmp: faultkit.hostile_round(tmp, model, args.seed, args.race_rounds))
    if faultkit.can_drop_privileges():
        scenario("unreadable_inputs", results, lambda tmp: faultkit.unreadable_inputs(model))
    scenario("watch_limit_at_start", results, lambda tmp: faultkit.watch_limit_at_start(tmp, model))
    scenario("burst_with_searches", results, lambda tmp: faultkit.burst_with_searches(tmp, model, args.burst))

    def folders(tmp: Path) -> dict[str, Any]:
        root = tmp / "pics"
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(PermissionError):
                stack.enter_context(faultkit.small_filesystem(root, "1g"))
            root.mkdir(exist_ok=True)
            return faultkit.many_folders(tmp, model, root, args.dirs)

    scenario("many_folders", results, folders)
    for polling in (False, True):
        scenario(
            f"watcher_workloads_{'polling' if polling else 'inotify'}",
            results,
            lambda tmp, p=polling: faultkit.watcher_workloads(tmp, model, args.watch_files, args.seed, polling=p),
        )

    kills = sum(r.get("kills", 0) for r in results.values())
    indexed = sum(r.get("files", 0) for r in results.values())
    bad = sum(r.get("inputs_tried", 0) + r.get("unreadable_inputs", 0) for r in results.values())
    summary = {
        "kills_survived": kills,
        "kills_mid_save": results.get("crash_mid_save", {}).get("kills_mid_save"),
        "ivf_builds": results.get("crash_over_ivf_builds", {}).get("ivf_builds"),
        "files_indexed_and_checked": indexed,
        "hostile_inputs_tried": bad,
        "burst_files": args.burst if "burst_with_searches" in results else None,
        "searches_during_burst": results.get("burst_with_searches", {}).get("searches"),
        "search_errors": results.get("burst_with_searches", {}).get("search_errors"),
        "empty_folders": args.dirs if "many_folders" in results else None,
        **{
            k: sum(r.get(k, 0) for r in results.values())
            for k in ("files_moved", "replaced_from_hidden", "roots_replaced")
        },
        **{k: sum(r.get(k, 0) for r in results.values()) for k in ("lost", "duplicated", "stale")},
        "reembedded_for_nothing": sum(r.get("reembedded_for_nothing", 0) for r in results.values()),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    print(
        "\nsoak passed: every scenario ended with check_invariants (it counts lost/duplicated/stale files); "
        "the watcher workloads also counted forward passes of bytes already indexed"
    )
    print(json.dumps({"summary": summary, "scenarios": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
