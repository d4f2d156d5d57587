"""The export's child process: export with torch, measure the runtimes for `auto`, say what was written.

Apart from prepare (the parent's side) so that the runtimes it measures, which call prepare.export, are
imported only here, in the child, and the modules import each other in one direction.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelUnavailable
from .runtime import OnnxUnavailable
from .store import ModelStore


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
