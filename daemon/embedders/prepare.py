"""The one-time ONNX export, run in a child process so that no serving process ever imports torch.

torch stays loaded for the life of a process that imported it (1.7 GB of RSS in a daemon that
exported on its first run, against 0.85 GB otherwise), so the daemon, `search --direct` and the
gallery hand the export to `python -m imgd.daemon.embedders.prepare` and read its files when it exits.
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
    log.info("preparing model '%s' for this machine, once (about 15 s for clip-ViT-B-32)", model)
    started = time.monotonic()
    command = [sys.executable, "-m", "imgd.daemon.embedders.prepare", model, str(store.root)]
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


def main(argv: list[str]) -> int:
    """The child: export, then print one JSON line saying which fingerprint was written, or why not."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .export import ensure_exported

    model, root, force = argv[0], Path(argv[1]), "--force" in argv[2:]
    try:
        _folder, manifest = ensure_exported(ModelStore(root), model, "cpu", force=force)
        reply: dict[str, Any] = {"fingerprint": manifest["fingerprint"]}
        if "--measure" in argv[2:]:
            _measure(model, root, manifest["fingerprint"])
    except ModelUnavailable as exc:
        reply = {"error": str(exc), "kind": "model"}
    except OnnxUnavailable as exc:
        reply = {"error": str(exc), "kind": "onnx", "fingerprint": exc.fingerprint}
    sys.stdout.write(json.dumps(reply) + "\n")
    return 0


def _measure(model: str, root: Path, fingerprint: str) -> None:
    """Record `auto`'s measurement for the fresh export; a failure here leaves it to the serving process."""
    from .choice import machine_key, measure, read_record
    from .onnx import load_onnx

    if read_record(root, machine_key(fingerprint)) is not None:
        return
    try:
        measure(lambda runtime: load_onnx(model, root.parent, runtime=runtime), root, machine_key(fingerprint))
    except (OnnxUnavailable, ModelUnavailable) as exc:
        logging.getLogger(__name__).warning("could not measure the runtimes here (%s)", exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
