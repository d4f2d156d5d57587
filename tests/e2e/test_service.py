"""`imgd run` as systemd runs it: a real subprocess, a real notify socket, real signals."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import DaemonProcess, check_invariants, wait_until

pytestmark = pytest.mark.slow


class NotifySocket:
    """What systemd listens on for a Type=notify service: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="test-notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.extend((time.monotonic(), line) for line in data.decode().splitlines())

    def lines(self, prefix: str) -> list[str]:
        return [line for _, line in list(self.messages) if line.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_imgd_run_notifies_systemd_rescans_on_sighup_and_stops_cleanly_on_sigint(tmp_path, tiny_model):
    pics, extra = tmp_path / "pics", tmp_path / "extra"
    for i in range(3):
        write_image(pics / f"p{i}.png", seed=i)
    write_image(extra / "e.png", seed=10)
    config = tmp_path / "config" / "imgd" / "config.toml"  # DaemonProcess's XDG_CONFIG_HOME
    config.parent.mkdir(parents=True)
    config.write_text(f'[watch]\npaths = ["{extra}"]\n')
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = DaemonProcess(
        tmp_path,
        tiny_model,
        [pics],
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC="2000000",  # systemd's WatchdogSec=2: ping every half of it
        IMGD_RECONCILE_INTERVAL="0",  # no periodic rescan: only SIGHUP asks for one
    )
    with closing(notify), daemon:
        daemon.start()
        status = daemon.wait_idle()
        # [watch] paths from the config file are watched besides the arguments.
        assert status["folders"] == [{"path": str(extra), "mode": "inotify"}, {"path": str(pics), "mode": "inotify"}]
        assert status["counts"]["files"] == 4
        wait_until(lambda: len(notify.lines("WATCHDOG=1")) >= 3, timeout=10, what="watchdog pings")
        assert notify.lines("READY=1"), notify.messages
        wait_until(lambda: notify.lines("STATUS=idle"), timeout=15, what="a STATUS line")
        pings = [at for at, line in notify.messages if line == "WATCHDOG=1"]
        assert max(b - a for a, b in zip(pings, pings[1:], strict=False)) < 2.0, "pings within WatchdogSec"

        # Status: sizes, last save (persist every 2 s), and rate/ETA while a burst is indexed.
        wait_until(lambda: daemon.status()["last_persist"], timeout=15, what="an index save")
        status = daemon.status()
        index_file = daemon.state_dir / "index.faiss"
        assert status["last_persist"] == pytest.approx(index_file.stat().st_mtime, abs=1.0)
        assert status["disk"]["index"] == index_file.stat().st_size > 0
        assert status["disk"]["catalog"] >= (daemon.state_dir / "catalog.db").stat().st_size > 0
        staging = tmp_path / "staging"
        for i in range(150):
            write_image(staging / f"b{i:03d}.png", seed=100 + i, size=(48, 32))
        for name in sorted(os.listdir(staging)):
            os.rename(staging / name, pics / name)
        busy = wait_until(
            lambda: (s := daemon.status())["queue"]["rate"] > 0 and s["queue"]["eta_s"] is not None and s,
            timeout=60,
            interval=0.05,
            what="a rate and an ETA while indexing",
        )
        assert busy["daemon"]["state"] == "indexing" and busy["queue"]["pending"] > 0
        queue = busy["queue"]
        assert queue["eta_s"] == pytest.approx(queue["pending"] / queue["rate"], rel=0.05, abs=0.11)  # both rounded
        first_save = status["last_persist"]
        daemon.wait_idle()
        wait_until(lambda: _saved_generation(index_file) == _catalog_generation(daemon), timeout=30, what="a save")
        status = daemon.status()
        assert status["last_persist"] > first_save
        assert status["last_persist"] == pytest.approx(index_file.stat().st_mtime, abs=1.0)

        # A change no watch reports: a write through a hard link outside the watched folders.
        target = pics / "p1.png"
        os.link(target, tmp_path / "hardlink.png")
        write_image(tmp_path / "hardlink-new.png", seed=77)
        with open(tmp_path / "hardlink.png", "r+b") as fh:  # the same inode, written in place
            fh.write((tmp_path / "hardlink-new.png").read_bytes())
            fh.truncate()
        time.sleep(2.0)  # four settle times: an event would have been handled by now
        assert daemon.content_hash(target) != _digest(target), "no event was expected for this write"
        before = daemon.status()["last_reconcile"]
        mark = len(daemon.log())
        daemon.send(signal.SIGHUP)
        wait_until(lambda: daemon.content_hash(target) == _digest(target), timeout=30, what="the SIGHUP rescan")
        assert f"updated {target}" in daemon.log()[mark:]
        assert daemon.status()["last_reconcile"] > before
        # The old content is held for a short grace (a move's second half may still come), then dropped.
        daemon.wait_idle()
        wait_until(lambda: _orphans(daemon) == 0, timeout=30, what="the replaced content to be dropped")

        assert daemon.stop(signal.SIGINT) == 0
        assert "stopped" in daemon.log()[mark:]
        assert notify.lines("STOPPING=1")
        check_invariants(daemon.state_dir, [extra, pics], tiny_model)


def _saved_generation(path: Path) -> int:
    from imgd.daemon.store.index import VectorIndex

    return VectorIndex.read(path)[1].generation  # saves replace the file atomically: never half-written


def _catalog_generation(daemon: DaemonProcess) -> int:
    catalog = daemon.catalog()
    try:
        return catalog.generation
    finally:
        catalog.close()


def _orphans(daemon: DaemonProcess) -> int:
    catalog = daemon.catalog()
    try:
        referenced = {r.content_id for r in catalog.all_files()}
        return len(set(catalog.content_ids().tolist()) - referenced)
    finally:
        catalog.close()


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()
