"""Drive a real `imgd run` subprocess for tests: start, wait for states, query, stop, check invariants."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgd.daemon import client
from imgd.daemon.catalog import Catalog
from imgd.daemon.errors import DaemonNotRunning, ImgdError

IMGD = [sys.executable, "-m", "imgd.cli.main"]


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class DaemonProcess:
    """One `imgd run` child with its own state folder, runtime folder and log file."""

    def __init__(self, tmp: Path, model: Path, roots: list[Path], **env: str) -> None:
        self.state_dir = tmp / "state"
        self.runtime = tmp / "run"
        self.log_path = tmp / "daemon.log"
        self.model = model
        self.roots = roots
        self.env = {
            **os.environ,
            "IMGD_STATE_DIR": str(self.state_dir),
            "IMGD_MODEL": str(model),
            "IMGD_DEVICE": "cpu",
            "IMGD_SETTLE_SECONDS": "0.5",
            "IMGD_PERSIST_INTERVAL": "2",
            "IMGD_BATCH_SIZE": "16",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "HF_HUB_OFFLINE": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.runtime / "imgd" / "imgd.sock"

    def start(self, wait: bool = True) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            [*IMGD, "-v", "run", *map(str, self.roots)], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if wait:
            wait_until(self.answers, timeout=120, what="the daemon to answer on its socket")
        return self

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            client.status(self.socket, timeout=5)
            return True
        except (DaemonNotRunning, ImgdError):
            return False

    def status(self) -> dict[str, Any]:
        return client.status(self.socket, timeout=30)

    def wait_idle(self, timeout: float = 120.0) -> dict[str, Any]:
        """Idle twice in a row, so a burst still arriving is not mistaken for the end."""

        def idle() -> dict[str, Any] | None:
            status = self.status()
            return status if status["daemon"]["state"] == "idle" and status["queue"]["pending"] == 0 else None

        wait_until(lambda: idle() and (time.sleep(0.7) or idle()), timeout=timeout, what="the daemon to go idle")
        return self.status()

    def search_image(self, path: Path, k: int = 1) -> list[dict[str, Any]]:
        return client.search(self.socket, k, image=str(path))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def catalog(self) -> Catalog:
        return Catalog(self.state_dir / "catalog.db", readonly=True)

    def catalog_paths(self) -> dict[str, int | None]:
        catalog = self.catalog()
        try:
            return {r.path: r.content_id for r in catalog.all_files() if r.status == "ok"}
        finally:
            catalog.close()


def image_files(*roots: Path) -> set[str]:
    exts = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    found = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.update(
                os.path.join(dirpath, f)
                for f in filenames
                if os.path.splitext(f)[1].lower() in exts and not f.startswith(".")
            )
    return found


def check_invariants(state_dir: Path, roots: list[Path], model: Path) -> None:
    """Catalog == disk, each path once, one vector per content, index == catalog, self-search first."""
    from imgd.daemon.config import load
    from imgd.daemon.embedder import load_embedder
    from imgd.daemon.index import VectorIndex
    from imgd.daemon.library import open_searcher

    catalog = Catalog(state_dir / "catalog.db", readonly=True)
    try:
        records = [r for r in catalog.all_files() if r.status == "ok"]
        paths = [r.path for r in records]
        assert len(paths) == len(set(paths)), "a path appears twice"
        assert set(paths) == image_files(*roots), "catalog and disk disagree"
        contents = catalog.content_ids()
        assert sorted({r.content_id for r in records}) == sorted(contents.tolist()), "orphan or dangling content"
        index, header = VectorIndex.read(state_dir / "index.faiss")
        assert header.generation == catalog.generation, "saved index is stale after a clean stop"
        assert sorted(index.ids().tolist()) == sorted(contents.tolist()), "index and catalog hold other vectors"
    finally:
        catalog.close()
    config = load(None, {"state_dir": state_dir, "model": str(model)}, env={})
    embedder = load_embedder(str(model), device="cpu")
    searcher = open_searcher(config, lambda name: embedder)
    for path in paths:
        hits = searcher.query(1, image=path)
        assert (
            hits and searcher.catalog.get_file(hits[0].path).content_id == searcher.catalog.get_file(path).content_id
        ), f"{path} does not find itself first"
