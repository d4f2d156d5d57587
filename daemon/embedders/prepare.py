"""The one-time ONNX export, run in a child process so that no serving process ever imports torch.

torch stays loaded for the life of a process that imported it (1.7 GB of RSS in a daemon that
exported on its first run, against 0.85 GB otherwise), so the daemon, `search --direct` and the
gallery hand the export to `python -m imgd.daemon.embedders.exportchild` and read its files when it exits.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ModelUnavailable
from .runtime import OnnxUnavailable
from .store import ModelStore

log = logging.getLogger(__name__)

IN_CHILD = True  # tests that patch the exporter in this process set it False
EXPORT_TIMEOUT_S = 1800.0


def export(store: ModelStore, model: str, force: bool = False, measure: bool = False) -> tuple[Path, dict[str, Any]]:
    """Export `model` into `store` (again when `force`) and return its folder and manifest.

    `measure`: the child also runs `auto`'s measurement after the export and records it, so the serving
    process never loads (or keeps mapped) the runtimes that lost.
    """
    if not IN_CHILD:
        from .export import ensure_exported

        return ensure_exported(store, model, "cpu", force=force)
    log.info("preparing model '%s' for this machine, once (about 45 s for clip-ViT-B-32 on two cores)", model)
    started = time.monotonic()
    command = [sys.executable, "-m", "imgd.daemon.embedders.exportchild", model, str(store.root)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("PYTHONPROFILEIMPORTTIME", None)  # the child's import log is not this process's
    try:
        done = subprocess.run(
            [*command, *(["--force"] if force else []), *(["--measure"] if measure else [])],
            capture_output=True,
            text=True,
            env=env,
            timeout=EXPORT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise OnnxUnavailable(f"exporting model '{model}' took over {EXPORT_TIMEOUT_S:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        reply = {}
    if not reply:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise OnnxUnavailable(f"the export of model '{model}' failed ({tail[0][:160]})")
    if reply.get("error"):
        if reply.get("kind") == "model":
            raise ModelUnavailable(reply["error"])
        raise OnnxUnavailable(reply["error"], fingerprint=reply.get("fingerprint"))
    manifest = store.manifest(reply["fingerprint"])
    if manifest is None:
        raise OnnxUnavailable(f"the export of model '{model}' left no complete files in {store.root}")
    log.info("prepared model '%s' in %.1f s", model, time.monotonic() - started)
    return store.folder(reply["fingerprint"]), manifest
