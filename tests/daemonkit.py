"""Drive a real `imgd run` subprocess for tests: start, wait for states, query, stop, check invariants."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

from imgd.daemon.api import client
from imgd.daemon.errors import DaemonNotRunning, ImgdError
from imgd.daemon.paths import default_socket
from imgd.daemon.store.catalog import Catalog

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
    """One `imgd run` child with its own state folder, runtime folder and log file.

    Use it as a context manager: `with DaemonProcess(...) as daemon: daemon.start(); ...`. The block
    starts the child itself (when, and how often, is the test's business); leaving it, by the end or
    by a failed assertion, kills whatever child is still running, so no test leaves a daemon behind.
    """

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
            # The random test model scores unrelated pictures 0.986-0.997: at the default 0.975 every image
            # would be a near-duplicate of every other (no real library is), and the daemon's duplicate
            # upkeep would link each new file to a thousand others. 0.9993 is where it tells copies apart.
            "IMGD_DUPES_THRESHOLD": "0.9993",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "HF_HUB_OFFLINE": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.flags = ["-v"]  # before `run`: -v logs each file's decision, -vv events and timings too

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(signal.SIGKILL)  # a test that wanted a clean stop has asserted its exit code already

    @property
    def socket(self) -> Path:
        return default_socket(self.state_dir, str(self.runtime))

    def start(self, wait: bool = True) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            [*IMGD, *self.flags, "run", *map(str, self.roots)], env=self.env, stdout=log, stderr=subprocess.STDOUT
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

    def status(self, duplicates: bool = False) -> dict[str, Any]:
        return client.status(self.socket, timeout=30, duplicates=duplicates)

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

    def content_hash(self, path: str | Path | bytes) -> str | None:
        """The hash of the content the catalog holds for path, or None."""
        catalog = self.catalog()
        try:
            record = catalog.get_file(os.fsdecode(path))
            if record is None or record.content_id is None:
                return None
            row = catalog.conn.execute("SELECT hash FROM contents WHERE id = ?", (record.content_id,)).fetchone()
            return row[0] if row else None
        finally:
            catalog.close()

    def catalog_paths(self) -> dict[str, int | None]:
        catalog = self.catalog()
        try:
            return {r.path: r.content_id for r in catalog.all_files() if r.status == "ok"}
        finally:
            catalog.close()


def image_files(*roots: Path) -> set[str]:
    """Regular files with an image extension, as the daemon sees them: no symlinks, FIFOs or hidden names."""
    exts = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    found = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.splitext(name)[1].lower() in exts and not name.startswith(".") and _regular(path):
                    found.add(path)
    return found


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=20).hexdigest()


def check_invariants(
    state_dir: Path,
    roots: list[Path],
    model: Path,
    failed: Iterable[str | Path] = (),
    invisible: Iterable[str | Path] = (),
    searches: int = 200,
) -> dict[str, int]:
    """Catalog == disk, each path once, one vector per content, index == catalog, self-search first.

    `failed` are image files that must be recorded as failed (and nothing else may be); `invisible`
    are image files the daemon cannot see (under a folder it may not list). Every catalogued file must
    also be fresh: same size, mtime and bytes as on disk. Every content is searched by its own vector
    in the saved index, and `searches` paths (all, if fewer) go through the real search path.
    Returns the counts it checked, lost/duplicated/stale included (all zero, or it raised).
    """
    import numpy as np
    from imgd.daemon.config import load
    from imgd.daemon.embedders import load_embedder
    from imgd.daemon.protocol import Options, SearchRequest, Term
    from imgd.daemon.service.library import open_searcher
    from imgd.daemon.store.index import VectorIndex

    bad = {os.fspath(p) for p in failed}
    hidden = {os.fspath(p) for p in invisible}
    catalog = Catalog(state_dir / "catalog.db", readonly=True)
    try:
        with catalog.snapshot():
            every = list(catalog.all_files())
            records = [r for r in every if r.status == "ok"]
            paths = [r.path for r in records]
            on_disk = image_files(*roots) - hidden
            assert bad <= on_disk, f"expected failures not on disk: {sorted(bad - on_disk)}"
            lost = sorted(on_disk - bad - set(paths))
            extra = sorted(set(paths) - (on_disk - bad))
            failed_now = {r.path for r in every if r.status == "failed"}
            hashes = dict(catalog.conn.execute("SELECT id, hash FROM contents").fetchall())
            stale = []
            for record in records:
                if record.path in extra:
                    continue
                info = os.stat(record.path)
                same_stat = (record.size, record.mtime_ns) == (info.st_size, info.st_mtime_ns)
                if not same_stat or hashes.get(record.content_id) != _digest(record.path):
                    stale.append(record.path)
            counts = {
                "lost": len(lost),
                "duplicated": len(paths) - len(set(paths)),
                "stale": len(extra) + len(stale) + len(failed_now ^ bad),
            }
            assert counts["duplicated"] == 0, "a path appears twice"
            assert not lost and not extra, f"catalog and disk disagree: lost {lost[:10]}, stale {extra[:10]}"
            assert failed_now == bad, f"failed entries differ: {sorted(failed_now ^ bad)[:10]}"
            assert not stale, f"catalogued with other bytes than on disk: {stale[:10]}"
            assert not [r for r in every if r.status not in ("ok", "failed")], "entries left marked missing"
            contents = catalog.content_ids()
            assert sorted({r.content_id for r in records}) == sorted(contents.tolist()), "orphan or dangling content"
            media = sorted(r[0] for r in catalog.conn.execute("SELECT content_id FROM media"))
            assert media == sorted(contents.tolist()), "a content without its metadata row, or a row without content"
            dim = int(catalog.get_meta("dim") or 0)
            per_content = catalog.conn.execute(
                "SELECT content_id, count(*), min(length(vector)), max(length(vector)) FROM vectors GROUP BY content_id"
            ).fetchall()
            assert sorted(r[0] for r in per_content) == sorted(contents.tolist()), "a content without its vector"
            assert {(n, lo, hi) for _, n, lo, hi in per_content} <= {(1, dim * 2, dim * 2)}, (
                "a photo without exactly one vector of the model's size"
            )
            index, header = VectorIndex.read(state_dir / "index.faiss")
            assert header.generation == catalog.generation, "saved index is stale after a clean stop"
            assert sorted(index.ids().tolist()) == sorted(catalog.vector_ids().tolist()), (
                "index and catalog hold other vectors"
            )
            ids = np.empty(0, dtype=np.int64)
            for chunk_ids, vectors in catalog.iter_vectors():
                ids = np.concatenate([ids, chunk_ids])
                # The stored vector is what a search by a known image uses; one batched FAISS call per chunk.
                # An IVF's 8-bit scores only pick the candidates that the catalog's vectors then re-score:
                # a vector among its own candidates comes first.
                exact = index.kind == "exact"
                scores, found = index._index.search(vectors, min(4 if exact else 40, len(index)))
                for row, content_id in enumerate(chunk_ids):
                    top = scores[row][0] - 1e-5 if exact else -np.inf
                    assert int(content_id) in found[row][scores[row] >= top], f"{content_id} not first"
    finally:
        catalog.close()
    if paths and searches:
        config = load(None, {"state_dir": state_dir, "model": str(model)}, env={})
        embedder = load_embedder(str(model), device="cpu")
        searcher = open_searcher(config, lambda name: embedder)
        step = max(1, len(paths) // searches)
        try:
            for path in sorted(paths)[::step]:
                hits = searcher.search(SearchRequest(terms=(Term("image", path),), options=Options(k=1)))
                assert (
                    hits
                    and searcher.catalog.get_file(hits[0]["path"]).content_id
                    == searcher.catalog.get_file(path).content_id
                ), f"{path} does not find itself first"
        finally:
            searcher.catalog.close()
    return {"files": len(paths), "failed": len(bad), "contents": len(ids), **counts}
