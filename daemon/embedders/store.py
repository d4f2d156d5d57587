"""Exported models under state_dir/models: one folder per weights fingerprint, and a note per model
name saying which fingerprint its files had, so a start-up finds its ONNX files without torch.

    models/<fingerprint>/manifest.json, image.onnx, text.onnx, tokenizer.json
    models/names/<hash of the model name>.json   {model, fingerprint, folder, files: [[path, size, mtime_ns]]}

A folder is published by one rename, so a reader sees a whole export or none; the manifest lists
each file's size, and a missing or short file makes the export count as absent (it is rebuilt).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..paths import looks_like_path

log = logging.getLogger(__name__)

FORMAT = 1


def model_folder(name: str) -> Path | None:
    """Where a model's files are: the folder itself, or its snapshot in the hub cache (no network)."""
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return Path(expanded).resolve()
    if looks_like_path(name):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo in (name, f"sentence-transformers/{name}") if "/" not in name else (name,):
        with contextlib.suppress(Exception):
            found = try_to_load_from_cache(repo, "modules.json")
            if isinstance(found, str):
                return Path(found).parent
    return None


def folder_files(folder: Path) -> list[list[Any]]:
    """Every file under the model folder with its size and mtime: a change means a new fingerprint."""
    files = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(top, name)
            with contextlib.suppress(OSError):
                info = os.stat(path)
                files.append([os.path.relpath(path, folder), info.st_size, info.st_mtime_ns])
    return files


class ModelStore:
    """The models folder of one state folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _note_path(self, model: str) -> Path:
        return self.root / "names" / f"{hashlib.sha256(model.encode()).hexdigest()[:24]}.json"

    def lookup(self, model: str) -> str | None:
        """The fingerprint of `model` if its files are unchanged since it was last computed."""
        folder = model_folder(model)
        if folder is None:
            return None
        try:
            note = json.loads(self._note_path(model).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(note, dict) or note.get("model") != model or note.get("folder") != str(folder):
            return None
        if note.get("files") != folder_files(folder):
            return None
        fingerprint = note.get("fingerprint")
        return fingerprint if isinstance(fingerprint, str) else None

    def remember(self, model: str, fingerprint: str) -> None:
        """Note the fingerprint of `model`'s files as they are now, so the next start need not hash them."""
        folder = model_folder(model)
        if folder is None:
            return
        note = {"model": model, "fingerprint": fingerprint, "folder": str(folder), "files": folder_files(folder)}
        path = self._note_path(model)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(note))
            os.replace(tmp, path)

    def folder(self, fingerprint: str) -> Path:
        return self.root / fingerprint

    def manifest(self, fingerprint: str) -> dict[str, Any] | None:
        """The manifest of a complete export, or None when it is absent or a file is missing or short."""
        folder = self.folder(fingerprint)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            return None
        if manifest.get("fingerprint") != fingerprint:
            return None
        for tower in ("image", "text"):
            part = manifest.get(tower)
            if part is None:
                continue
            for name, size in part.get("files", {}).items():
                try:
                    if (folder / name).stat().st_size != size:
                        return None
                except OSError:
                    return None
        return manifest

    def staging(self, fingerprint: str) -> Path:
        """A fresh private folder to export into; publish() moves it into place."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f".tmp-{fingerprint}-{os.getpid()}-{time.monotonic_ns()}"
        path.mkdir(mode=0o700)
        return path

    def publish(self, staging: Path, fingerprint: str) -> Path:
        """Put a finished export in place in one rename, setting aside a damaged one it replaces."""
        target = self.folder(fingerprint)
        self.discard(fingerprint)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process published the same fingerprint first: same weights, same files.
            shutil.rmtree(staging, ignore_errors=True)
            if self.manifest(fingerprint) is None:
                raise
        with contextlib.suppress(OSError):
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return target

    def discard(self, fingerprint: str) -> None:
        """Remove an export (a damaged one): first rename it away, so no reader picks up half of it."""
        target = self.folder(fingerprint)
        if not target.exists():
            return
        aside = self.root / f".old-{fingerprint}-{os.getpid()}-{time.monotonic_ns()}"
        with contextlib.suppress(OSError):
            os.rename(target, aside)
            shutil.rmtree(aside, ignore_errors=True)
