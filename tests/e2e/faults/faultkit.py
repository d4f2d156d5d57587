"""Fault injection helpers shared by tests/e2e/faults and benchmarks/soak.py.

Every scenario drives a real `imgd run` subprocess over real folders, breaks something (a SIGKILL,
a full disk, a hostile file), lets the daemon settle and ends with daemonkit.check_invariants.
The scenario functions take their sizes as arguments: the tests call them with CI sizes, the soak
script with long-run sizes, and both get back the figures they print.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import picture
from daemonkit import IMGD, DaemonProcess, check_invariants, image_files, wait_until
from imgd.daemon.api import client
from imgd.daemon.errors import ImgdError
from imgd.daemon.store.records import FileRecord
from PIL import Image

KILLS = int(os.environ.get("IMGD_SOAK_KILLS", "0") or 0)  # >0: kills per phase instead of the CI counts


# -- images ---------------------------------------------------------------------------------------


def png_bytes(seed: int, size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(seed: int, size: tuple[int, int] = (96, 64)) -> bytes:
    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def noise_png(seed: int, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A large, slow-to-decode picture: picture(seed) under pixel noise, which PNG cannot compress away."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.asarray(picture(seed, size), dtype=np.int16)
    noisy = np.clip(base + rng.integers(-12, 13, size=base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_atomic(path: Path | bytes, data: bytes) -> None:
    """Write beside the target under a hidden name, then rename: how editors and rsync save."""
    path = os.fsencode(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, b"." + name + b".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def digest(path: str | Path | bytes) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=20).hexdigest()


# -- the daemon -----------------------------------------------------------------------------------


class FaultDaemon(DaemonProcess):
    """DaemonProcess with a command prefix (unshare, setpriv), kills, log marks and catalog probes."""

    def __init__(self, tmp: Path, model: Path, roots: list[Path], prefix: list[str] | None = None, **env: str) -> None:
        super().__init__(tmp, model, roots, **env)
        self.prefix = list(prefix or [])
        self.kills = 0

    def start(self, wait: bool = True) -> FaultDaemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        command = [*IMGD, "-v", "run", *map(os.fsdecode, self.roots)]
        self.proc = subprocess.Popen([*self.prefix, *command], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_until(self.answers, timeout=180, what="the daemon to answer on its socket")
        return self

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or saved."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)
        self.proc = None
        self.kills += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def mark(self) -> int:
        return len(self.log())

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    def record(self, path: str | Path | bytes) -> FileRecord | None:
        catalog = self.catalog()
        try:
            return catalog.get_file(os.fsdecode(path))
        finally:
            catalog.close()

    def ok_count(self) -> int:
        if not (self.state_dir / "catalog.db").exists():
            return 0
        try:
            catalog = self.catalog()
        except ImgdError:  # created but the schema is not committed yet
            return 0
        try:
            return catalog.counts()["files"]
        finally:
            catalog.close()

    def wait_fresh(self, path: str | Path | bytes, timeout: float = 120.0) -> None:
        """Wait until path is indexed with exactly the bytes it holds now."""
        wait_until(
            lambda: self.content_hash(path) == digest(path), timeout=timeout, what=f"{os.fsdecode(path)!r} indexed"
        )

    def wait_failed(self, path: str | Path | bytes, timeout: float = 120.0) -> FileRecord:
        def failed() -> FileRecord | None:
            record = self.record(path)
            return record if record is not None and record.status == "failed" else None

        return wait_until(failed, timeout=timeout, what=f"{os.fsdecode(path)!r} recorded as failed")

    def wait_persisted(self, timeout: float = 60.0) -> None:
        """Wait until the saved index reflects the catalog (the daemon persists every few seconds)."""
        from imgd.daemon.store.index import IndexFileError, VectorIndex

        def saved() -> bool:
            catalog = self.catalog()
            try:
                generation = catalog.generation
            finally:
                catalog.close()
            try:
                _, header = VectorIndex.read(self.state_dir / "index.faiss")
            except IndexFileError:
                return False
            return header.generation == generation

        wait_until(saved, timeout=timeout, interval=0.2, what="the index to be saved")

    def check_live(self, failed: Any = (), invisible: Any = (), timeout: float = 180.0) -> dict[str, int]:
        """The invariants against a running daemon: idle, index saved, then the same checks as after a stop."""
        self.wait_idle(timeout=timeout)
        self.wait_persisted()
        return check_invariants(self.state_dir, self.roots, self.model, failed=failed, invisible=invisible)

    def settle_and_check(self, failed: Any = (), invisible: Any = (), timeout: float = 300.0) -> dict[str, int]:
        """Let the daemon go idle, stop it cleanly, and check every invariant."""
        self.wait_idle(timeout=timeout)
        code = self.stop()
        assert code == 0, f"daemon exited with {code}:\n{self.log()[-3000:]}"
        return check_invariants(self.state_dir, self.roots, self.model, failed=failed, invisible=invisible)

    def tracebacks(self) -> int:
        return self.log().count("Traceback (most recent call last)")


# -- watching for a file to appear (to kill the daemon mid-save) ----------------------------------

IN_CREATE = 0x100
_EVENT = struct.Struct("iIII")


class CreateWatch:
    """inotify on one folder, from the test: SIGKILL within microseconds of a file appearing."""

    def __init__(self, folder: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_CREATE) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def wait(self, match: Callable[[bytes], bool], timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            offset = 0
            while offset < len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if match(name):
                    return name
        return None

    def close(self) -> None:
        os.close(self.fd)


# -- busy writers ---------------------------------------------------------------------------------


@dataclass
class Churn:
    """A thread that creates, deletes, renames and rewrites images under a root until stopped."""

    root: Path
    seed: int
    rate: float = 100.0  # operations per second, at most
    mix: tuple[float, float, float] = (0.1, 0.1, 0.1)  # delete, rename, rewrite; the rest create
    folders: int = 8
    ops: dict[str, int] = field(default_factory=lambda: {"create": 0, "delete": 0, "rename": 0, "rewrite": 0})

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="churn", daemon=True)
        self.live: list[Path] = []
        self.counter = 0
        self.error: BaseException | None = None

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        if self.error is not None:
            raise self.error

    def _fresh(self) -> Path:
        self.counter += 1
        return self.root / f"sub{self.rng.randrange(self.folders)}" / f"c{self.seed}-{self.counter:06d}.png"

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
                time.sleep(1.0 / self.rate)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by stop()
            self.error = exc

    def step(self) -> None:
        roll = self.rng.random()
        delete, rename, rewrite = self.mix
        if self.live and roll < delete:
            victim = self.live.pop(self.rng.randrange(len(self.live)))
            victim.unlink()
            self.ops["delete"] += 1
        elif self.live and roll < delete + rename:
            index = self.rng.randrange(len(self.live))
            target = self._fresh()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.live[index], target)
            self.live[index] = target
            self.ops["rename"] += 1
        elif self.live and roll < delete + rename + rewrite:
            write_atomic(self.rng.choice(self.live), png_bytes(self.rng.randrange(1 << 30)))
            self.ops["rewrite"] += 1
        else:
            path = self._fresh()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(self.rng.randrange(1 << 30)))
            self.live.append(path)
            self.ops["create"] += 1


# -- crash scenarios ------------------------------------------------------------------------------


def crash_during_catchup_and_burst(
    tmp: Path,
    model: Path,
    catchup_kills: int,
    burst_kills: int,
    files: int,
    seed: int,
    rate: float = 80.0,
    **env: str,
) -> dict[str, Any]:
    """SIGKILL at random moments, restarting each time with no repair step.

    First `files` images exist before the start and the daemon is killed `catchup_kills` times while it
    catches up; then a writer creates, deletes, renames and rewrites files throughout while the daemon
    is killed `burst_kills` times more. Finally it settles and every invariant must hold.
    """
    rng = random.Random(seed)
    root = tmp / "pics"
    for i in range(files):
        path = root / f"d{i % 20:02d}" / f"img{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(seed * 100_000 + i))
    mid_catchup = 0
    churn = Churn(root, seed, rate=rate)
    with FaultDaemon(tmp, model, [root], **env) as daemon:
        for k in range(catchup_kills):
            daemon.start(wait=False)
            if rng.random() < 0.3:  # early: while loading, walking the folders or opening the catalog
                time.sleep(rng.uniform(0.0, 4.0))
            else:  # once the catalog has grown past a random mark, so the kill lands mid-batch
                have = daemon.ok_count()
                # Capped at files: a catch-up that finished before this kill would otherwise wait forever.
                target = min(files, have + rng.randint(1, max(1, (files - have) // (catchup_kills - k + 1))))
                wait_until(lambda t=target: daemon.ok_count() >= t or not daemon.alive(), timeout=300, interval=0.02)
                time.sleep(rng.uniform(0.0, 0.3))
            mid_catchup += daemon.ok_count() < files
            daemon.kill()
        daemon.start()
        with churn:
            for _ in range(burst_kills):
                time.sleep(rng.uniform(0.3, 3.0))
                daemon.kill()
                daemon.start(wait=rng.random() < 0.5)  # half the time the next kill lands during start-up
            if daemon.alive():
                wait_until(daemon.answers, timeout=180)
        figures = daemon.settle_and_check(timeout=600)
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
    return {
        "kills": daemon.kills,
        "kills_mid_catchup": mid_catchup,
        "ivf_builds": daemon.log().count("search index is now approximate"),
        "burst_operations": sum(churn.ops.values()),
        **{f"burst_{op}": n for op, n in churn.ops.items()},
        **figures,
    }


def crash_during_persist(tmp: Path, model: Path, kills: int, seed: int) -> dict[str, Any]:
    """Persist every tick while files keep arriving; SIGKILL the moment the index temp file appears."""
    rng = random.Random(seed)
    root = tmp / "pics"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(60):
        (root / f"base{i:03d}.png").write_bytes(png_bytes(seed * 1000 + i))
    mid_save = 0
    with FaultDaemon(tmp, model, [root], IMGD_PERSIST_INTERVAL="0.1") as daemon:
        daemon.start()
        watch = CreateWatch(daemon.state_dir)
        try:
            with Churn(root, seed, rate=40.0, mix=(0.05, 0.05, 0.05)):
                # At least one kill must land mid-save (its temp file still there): a few more tries if not.
                while daemon.kills < kills or (not mid_save and daemon.kills < kills + 10):
                    name = watch.wait(lambda n: n.startswith(b".index.faiss.") and n.endswith(b".tmp"), timeout=120)
                    assert name is not None, "the daemon never saved its index"
                    time.sleep(rng.choice([0.0, 0.0, 0.0005, 0.002]))
                    daemon.kill()
                    mid_save += (daemon.state_dir / os.fsdecode(name)).exists()
                    daemon.start()
        finally:
            watch.close()
        figures = daemon.settle_and_check(timeout=600)
    leftovers = [p.name for p in daemon.state_dir.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary index files left behind: {leftovers}"
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
    return {"kills": daemon.kills, "kills_mid_save": mid_save, **figures}


# -- hostile inputs -------------------------------------------------------------------------------


@dataclass
class Expect:
    """What the daemon must make of what a hostile-input maker wrote."""

    ok: list[bytes] = field(default_factory=list)  # indexed, with their current bytes
    failed: list[bytes] = field(default_factory=list)  # recorded as failed, never indexed
    ignored: list[bytes] = field(default_factory=list)  # never in the catalog at all


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A few hundred bytes whose header promises width x height pixels: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + width * 3) * 4, 9)  # the first rows only; the header is the threat
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def jpeg_bomb(seed: int) -> bytes:
    """A real JPEG whose frame header is patched to claim 65000 x 65000 pixels."""
    data = bytearray(jpeg_bytes(seed))
    marker = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, marker + 5, 65000, 65000)
    return bytes(data)


def _write(folder: bytes, name: bytes, data: bytes) -> bytes:
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def make_zero_byte(folder: bytes, seed: int) -> Expect:
    return Expect(failed=[_write(folder, b"empty.jpg", b"")])


def make_truncated_jpeg(folder: bytes, seed: int) -> Expect:
    data = jpeg_bytes(seed, (400, 300))
    return Expect(failed=[_write(folder, b"truncated.jpg", data[: len(data) // 2])])


def make_random_bytes(folder: bytes, seed: int) -> Expect:
    return Expect(failed=[_write(folder, b"noise.jpg", random.Random(seed).randbytes(20000))])


def make_html_as_png(folder: bytes, seed: int) -> Expect:
    page = b"<!DOCTYPE html><html><head><title>Not found</title></head><body>404</body></html>\n" * 20
    return Expect(failed=[_write(folder, b"saved-page.png", page)])


def make_decompression_bombs(folder: bytes, seed: int) -> Expect:
    return Expect(
        failed=[
            _write(folder, b"bomb.png", png_bomb(30000, 30000)),
            _write(folder, b"bomb-max.png", png_bomb(65535, 65535)),
            _write(folder, b"bomb.jpg", jpeg_bomb(seed)),
        ]
    )


def make_unusual_valid_images(folder: bytes, seed: int) -> Expect:
    """Valid but uncommon encodings, each of another picture: all must be indexed."""
    out = []
    buffer = io.BytesIO()
    grey = picture(seed, (96, 64)).convert("L")
    deep = Image.frombytes("I;16", grey.size, bytes(b for v in grey.tobytes() for b in (v, v)))  # 16-bit
    deep.save(buffer, format="PNG")
    out.append(_write(folder, b"deep16.png", buffer.getvalue()))
    buffer = io.BytesIO()
    picture(seed + 1, (96, 64)).convert("CMYK").save(buffer, format="JPEG")
    out.append(_write(folder, b"cmyk.jpg", buffer.getvalue()))
    buffer = io.BytesIO()
    palette = picture(seed + 2, (96, 64)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(buffer, format="GIF", transparency=0)
    out.append(_write(folder, b"palette-transparent.gif", buffer.getvalue()))
    buffer = io.BytesIO()
    frames = [picture(seed + 3 + i, (96, 64)) for i in range(4)]
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out.append(_write(folder, b"animated.webp", buffer.getvalue()))
    return Expect(ok=out)


def make_fifo(folder: bytes, seed: int) -> Expect:
    path = os.path.join(folder, b"pipe.jpg")
    os.mkfifo(path)
    return Expect(ignored=[path])


def make_odd_names(folder: bytes, seed: int) -> Expect:
    names = [
        b"with space.jpg",
        b"new\nline.jpg",
        "emoji \U0001f4f7 caf\u00e9.png".encode(),
        b"latin1-\xe9t\xe9\xff.jpg",  # not valid UTF-8
    ]
    return Expect(ok=[_write(folder, name, png_bytes(seed + i, (48, 32))) for i, name in enumerate(names)])


def make_symlink_loops(folder: bytes, seed: int) -> Expect:
    os.symlink(b".", os.path.join(folder, b"loop"))
    os.symlink(b"..", os.path.join(folder, b"up"))
    os.symlink(b"b.jpg", os.path.join(folder, b"a.jpg"))
    os.symlink(b"a.jpg", os.path.join(folder, b"b.jpg"))
    os.symlink(b"self.jpg", os.path.join(folder, b"self.jpg"))
    return Expect(ignored=[os.path.join(folder, n) for n in (b"a.jpg", b"b.jpg", b"self.jpg")])


def make_symlinks_outside(folder: bytes, seed: int, outside: bytes) -> Expect:
    os.makedirs(outside, exist_ok=True)
    target = _write(outside, b"private-%d.jpg" % seed, jpeg_bytes(seed))
    os.makedirs(os.path.join(outside, b"album"), exist_ok=True)
    _write(os.path.join(outside, b"album"), b"inside-%d.png" % seed, png_bytes(seed + 1))
    os.symlink(target, os.path.join(folder, b"link.jpg"))
    os.symlink(os.path.join(outside, b"album"), os.path.join(folder, b"album-link"))
    return Expect(
        ignored=[os.path.join(folder, b"link.jpg"), os.path.join(folder, b"album-link", b"inside-%d.png" % seed)]
    )


def make_hardlink(folder: bytes, seed: int) -> Expect:
    first = _write(folder, b"original.png", png_bytes(seed))
    second = os.path.join(folder, b"hardlink.png")
    os.link(first, second)
    return Expect(ok=[first, second])


HOSTILE: dict[str, Callable[[bytes, int], Expect]] = {
    "zero_byte": make_zero_byte,
    "truncated_jpeg": make_truncated_jpeg,
    "random_bytes": make_random_bytes,
    "html_as_png": make_html_as_png,
    "decompression_bombs": make_decompression_bombs,
    "unusual_valid_images": make_unusual_valid_images,
    "fifo": make_fifo,
    "odd_names": make_odd_names,
    "symlink_loops": make_symlink_loops,
    "hardlink": make_hardlink,
}


def expect_settled(daemon: FaultDaemon, expect: Expect, probe: bytes, timeout: float = 120.0) -> None:
    """Every ok file indexed, every bad one failed, then a normal file dropped afterwards indexed too."""
    for path in expect.ok:
        daemon.wait_fresh(path, timeout)
    for path in expect.failed:
        daemon.wait_failed(path, timeout)
    with open(probe, "wb") as fh:
        fh.write(png_bytes(zlib.crc32(probe), (40, 30)))
    daemon.wait_fresh(probe, timeout)
    for path in expect.ignored:
        assert daemon.record(path) is None, f"{path!r} must not be catalogued"
    assert daemon.alive(), daemon.log()[-3000:]
    assert daemon.status()["daemon"]["running"]


def race_replace_while_embedding(daemon: FaultDaemon, folder: Path, rounds: int, seed: int) -> int:
    """Write a batch of large files, then replace them around the moment the daemon reads and embeds them.

    The daemon waits settle_seconds (0.5 s here), then reads, decodes (slow: big noisy PNGs) and embeds
    the batch; replacements land before, during and after that. Whatever the timing, each path must end
    up indexed with its final bytes. Returns the number of files replaced.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    replaced = 0
    for r in range(rounds):
        paths = [folder / f"swap{r}-{i}.png" for i in range(4)]
        first = [noise_png(seed + 100 * r + i, (1800, 1350)) for i in range(len(paths))]
        second = [noise_png(seed + 100 * r + 50 + i, (1800, 1350)) for i in range(len(paths))]
        for path, data in zip(paths, first, strict=True):
            path.write_bytes(data)
        time.sleep(rng.uniform(0.4, 0.9))
        for i, (path, data) in enumerate(zip(paths, second, strict=True)):
            if i % 2:
                write_atomic(path, data)  # rename over it, as editors and rsync do
            else:
                with open(path, "r+b") as fh:  # rewrite in place, as some tools do
                    fh.truncate(0)
                    fh.write(data)
            replaced += 1
            time.sleep(rng.uniform(0.0, 0.1))
        for path in paths:
            daemon.wait_fresh(path)
    return replaced


def race_delete_before_embedding(daemon: FaultDaemon, folder: Path, rounds: int, seed: int) -> int:
    """Write a batch of large files and delete them around the moment they are read; nothing may remain."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    deleted = 0
    for r in range(rounds):
        paths = [folder / f"gone{r}-{i}.png" for i in range(4)]
        data = [noise_png(seed + 7000 + 100 * r + i, (1800, 1350)) for i in range(len(paths))]
        for path, blob in zip(paths, data, strict=True):
            path.write_bytes(blob)
        time.sleep(rng.uniform(0.4, 0.9))
        for path in paths:
            path.unlink()
            deleted += 1
            time.sleep(rng.uniform(0.0, 0.1))
    daemon.wait_idle()
    assert not list(folder.iterdir())
    for r in range(rounds):
        for i in range(4):
            path = folder / f"gone{r}-{i}.png"
            wait_until(lambda p=path: daemon.record(p) is None, timeout=60, what=f"{path} forgotten")
    return deleted


def many_folders(tmp: Path, model: Path, root: Path, count: int) -> dict[str, Any]:
    """`count` empty folders, half before the daemon starts and half while it runs; files in both still count."""

    def make(prefix: str, n: int) -> float:
        started = time.monotonic()
        for i in range(0, n, 1000):
            parent = root / f"{prefix}{i // 1000:03d}"
            parent.mkdir()
            for j in range(min(1000, n - i)):
                (parent / f"e{j:04d}").mkdir()
        return time.monotonic() - started

    half = count // 2
    seconds = make("before", half)
    with FaultDaemon(tmp, model, [root]) as daemon:
        daemon.start()
        seconds += make("after", count - half)
        last = root / f"after{(count - half - 1) // 1000:03d}" / "e0000" / "probe.png"
        last.write_bytes(png_bytes(31337))
        daemon.wait_fresh(last, timeout=600)
        first = root / f"before{(half - 1) // 1000:03d}" / "e0999" / "probe.png"
        first.write_bytes(png_bytes(31338))
        daemon.wait_fresh(first, timeout=600)
        figures = daemon.settle_and_check(timeout=900)
    assert "Traceback" not in daemon.log()
    return {"folders": count, "mkdir_seconds": round(seconds, 1), **figures}


def cli_searches(daemon: FaultDaemon, stop: threading.Event, errors: list[str], counts: list[int]) -> None:
    """`imgd search` as a user runs it, through the daemon, in a loop."""
    env = {k: v for k, v in daemon.env.items() if k != "IMGD_SETTLE_SECONDS"}
    while not stop.is_set():
        result = subprocess.run([*IMGD, "search", "--json", "-k", "5", "a photo"], env=env, capture_output=True)
        if result.returncode != 0:
            errors.append(result.stderr.decode(errors="replace").strip())
        counts[0] += 1


def burst_with_searches(tmp: Path, model: Path, count: int) -> dict[str, Any]:
    """`count` tiny PNGs written as fast as the disk allows while socket and CLI searches loop; each embedded once."""
    root = tmp / "pics"
    root.mkdir()
    (root / "seed.png").write_bytes(png_bytes(1))
    daemon = FaultDaemon(tmp, model, [root])
    blobs = [png_bytes(10_000 + i) for i in range(count)]
    stop = threading.Event()
    errors: list[str] = []
    cli_errors: list[str] = []
    counts, cli_counts = [0], [0]
    threads = [
        threading.Thread(target=search_errors, args=(daemon.socket, stop, ["a photo", "red", "sky"], errors, counts)),
        threading.Thread(target=cli_searches, args=(daemon, stop, cli_errors, cli_counts)),
    ]
    with daemon:
        try:
            daemon.start()
            daemon.wait_fresh(root / "seed.png")
            for thread in threads:
                thread.start()
            started = time.monotonic()
            for i, blob in enumerate(blobs):
                folder = root / "burst" / f"d{i // 500:02d}"
                if i % 500 == 0:
                    folder.mkdir(parents=True)
                (folder / f"b{i:05d}.png").write_bytes(blob)
            written = time.monotonic() - started
            wait_until(lambda: daemon.ok_count() == count + 1, timeout=900, interval=1, what=f"{count} files indexed")
            indexed = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(120)
        assert not errors, errors[:5]
        assert not cli_errors, cli_errors[:5]
        assert counts[0] > 0 and cli_counts[0] > 0
        figures = daemon.settle_and_check(timeout=600)
        embedded = [line for line in daemon.log().splitlines() if "/burst/" in line and " indexed " in f" {line}"]
        assert len(embedded) == count, "every file is embedded exactly once"
        assert not [line for line in daemon.log().splitlines() if line.startswith("INFO updated")]
    return {
        "written_s": round(written, 1),
        "indexed_s": round(indexed, 1),
        "searches": counts[0] + cli_counts[0],
        "search_errors": len(errors) + len(cli_errors),
        **figures,
    }


# -- how people really move files: sync tools, organisers, two watched folders, restores ---------------


def embedded_lines(text: str) -> list[str]:
    """Forward passes in a daemon log: 'indexed X' and 'updated X' (known bytes end '..., not embedded)')."""
    passes = ("INFO indexed ", "INFO updated ")
    return [line for line in text.splitlines() if line.startswith(passes) and not line.endswith(", not embedded)")]


def watcher_workloads(tmp: Path, model: Path, files: int, seed: int, polling: bool = False) -> dict[str, Any]:
    """Every way of moving files that once slipped past the watcher, against one daemon on two roots.

    `files` images start in Downloads. Each step waits until the catalog equals the disk, then counts the
    forward passes it caused; content the catalog already held must never be embedded again:
    1. moved between the two watched roots (mv ~/Downloads/*.png ~/Pictures/);
    2. organised as exiftool does: make YYYY/MM, rename one file into it, next file;
    3. a quarter of them replaced by a rename from a hidden temp name (.x.png -> x.png) or out of a hidden
       staging folder (.staging/x.png -> x.png): each must be re-hashed, and embedded exactly once;
    4. the root replaced: mv Pictures Pictures-old && mkdir Pictures, then new images in the new one
       (embedded once each); then rm -rf Pictures && cp -a backup Pictures, a backup taken before step 4
       (its contents left the catalog with Pictures-old: each embedded once).
    Ends with check_invariants (catalog == disk, every hash fresh). Returns the figures.
    """
    rng = random.Random(seed)
    pics, downloads = tmp / "Pictures", tmp / "Downloads"
    pics.mkdir(parents=True)
    downloads.mkdir(parents=True)
    for i in range(files):
        (downloads / f"dl{i:05d}.png").write_bytes(png_bytes(seed * 100_000 + i))
    env = {"IMGD_POLLING": "always"} if polling else {}
    daemon = FaultDaemon(tmp, model, [pics, downloads], **env)
    figures: dict[str, Any] = {"mode": "polling" if polling else "inotify", "files_moved": 0}
    for_nothing: dict[str, int] = {}

    def settled(step: str, expected_passes: int = 0) -> None:
        wait_until(
            lambda: set(daemon.catalog_paths()) == image_files(pics, downloads),
            timeout=300,
            interval=0.3,
            what=f"the catalog to equal the disk after {step}",
        )
        daemon.wait_idle(timeout=300)
        passes = len(embedded_lines(daemon.log_since(mark)))
        for_nothing[step] = passes - expected_passes
        assert passes >= expected_passes, f"{step}: {passes} forward passes, {expected_passes} new images"

    with daemon:
        daemon.start()
        daemon.wait_idle(timeout=300)

        mark = daemon.mark()
        for name in sorted(os.listdir(downloads)):
            os.rename(downloads / name, pics / name)
        figures["files_moved"] += files
        settled("cross_root_move")

        mark = daemon.mark()
        for i, name in enumerate(sorted(os.listdir(pics))):
            folder = pics / str(2000 + i // 12) / f"{i % 12 + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            os.rename(pics / name, folder / name)
        figures["files_moved"] += files
        settled("organiser")

        mark = daemon.mark()
        everything = sorted(Path(p) for p in image_files(pics))
        victims = rng.sample(everything, max(2, files // 4))
        staging = pics / ".staging"
        staging.mkdir()
        for n, path in enumerate(victims):
            data = png_bytes(seed * 100_000 + 50_000 + n)
            temp = path.with_name(f".{path.name}") if n % 2 else staging / path.name
            temp.write_bytes(data)
            os.rename(temp, path)
        for path in victims:
            daemon.wait_fresh(path, timeout=120)
        figures["replaced_from_hidden"] = len(victims)
        settled("replace_from_hidden", expected_passes=len(victims))

        backup = tmp / "backup"
        subprocess.run(["cp", "-a", str(pics), str(backup)], check=True)
        mark = daemon.mark()
        os.rename(pics, tmp / "Pictures-old")
        pics.mkdir()
        for n in range(3):
            (pics / f"new{n}.png").write_bytes(png_bytes(seed * 100_000 + 90_000 + n))
        settled("root_moved_away_and_remade", expected_passes=3)

        # Idle means the contents that left with Pictures-old are dropped: the restore brings back
        # bytes the catalog no longer holds, each to be embedded exactly once.
        mark = daemon.mark()
        shutil.rmtree(pics)
        subprocess.run(["cp", "-a", str(backup), str(pics)], check=True)
        settled("root_deleted_and_restored", expected_passes=len(image_files(backup)))
        figures["roots_replaced"] = 2
        figures.update(daemon.settle_and_check(timeout=300))
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
    figures["reembedded_for_nothing"] = sum(for_nothing.values())
    assert figures["reembedded_for_nothing"] == 0, f"content already indexed was embedded again: {for_nothing}"
    return figures


# -- privileges and kernel limits -----------------------------------------------------------------


NOBODY = 65534


def can_drop_privileges() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "true"], capture_output=True
    )
    return probe.returncode == 0


def unprivileged_prefix() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def watch_limit_prefix(limit: int) -> list[str] | None:
    """Run the daemon in its own user namespace with a small inotify watch limit.

    fs.inotify.max_user_watches is per user and this machine is shared: lowering it for root would
    starve every other process's watches. A private user namespace has its own limit
    (/proc/sys/user/max_inotify_watches) that counts only the processes inside it.
    """
    if shutil.which("unshare") is None:
        return None
    script = f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"'
    prefix = ["unshare", "--user", "--map-root-user", "sh", "-c", script, "imgd"]
    probe = subprocess.run([*prefix, "cat", "/proc/sys/user/max_inotify_watches"], capture_output=True, text=True)
    return prefix if probe.returncode == 0 and probe.stdout.strip() == str(limit) else None


@contextmanager
def small_filesystem(mountpoint: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` at mountpoint, unmounted afterwards; raises PermissionError if mount is refused."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)], capture_output=True
    )
    if result.returncode != 0:
        raise PermissionError(result.stderr.decode(errors="replace").strip() or "mount refused")
    try:
        yield mountpoint
    finally:
        for _ in range(25):
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:  # still busy (a file left open somewhere): detach it now, it goes when the last user does
            subprocess.run(["umount", "--lazy", str(mountpoint)], capture_output=True)


def fill_disk(path: Path) -> int:
    """Write until the filesystem says ENOSPC; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            while True:
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def search_errors(
    socket: Path, stop: threading.Event, queries: list[str], errors: list[str], counts: list[int]
) -> None:
    """Search through the socket in a loop until stopped; every error is collected."""
    rng = random.Random(len(queries))
    while not stop.is_set():
        try:
            client.search(socket, rng.choice([1, 5, 20]), text=rng.choice(queries))
            counts[0] += 1
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            errors.append(f"{type(exc).__name__}: {exc}")


def unreadable_inputs(model: Path) -> dict[str, Any]:
    """A file and a folder the daemon may not read: it runs as 'nobody' (setpriv), since root reads anything."""
    tmp = Path(tempfile.mkdtemp(prefix="imgd-perm-"))  # pytest's own tmp folder is private to root
    try:
        os.chmod(tmp, 0o755)
        source, model = model, tmp / "model"
        shutil.copytree(source, model)
        root = tmp / "pics"
        (root / "normal").mkdir(parents=True)
        for i in range(3):
            (root / "normal" / f"n{i}.png").write_bytes(png_bytes(700 + i))
        for sub in ("state", "run", "config", "home"):
            (tmp / sub).mkdir()
        for dirpath, dirnames, filenames in os.walk(tmp):
            for name in [*dirnames, *filenames, "."]:
                os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
        with FaultDaemon(tmp, model, [root], prefix=unprivileged_prefix(), HOME=str(tmp / "home")) as daemon:
            daemon.start()
            daemon.wait_idle()
            locked = root / "locked.jpg"
            locked.write_bytes(png_bytes(1))
            os.chown(locked, NOBODY, NOBODY)
            os.chmod(locked, 0)
            hidden_dir = root / "locked-dir"
            hidden_dir.mkdir()
            hidden = hidden_dir / "inside.jpg"
            hidden.write_bytes(png_bytes(2))
            os.chmod(hidden_dir, 0)
            record = daemon.wait_failed(locked)
            assert "permission denied" in (record.error or "")
            probe = root / "after.png"
            probe.write_bytes(png_bytes(3))
            os.chown(probe, NOBODY, NOBODY)
            daemon.wait_fresh(probe)
            daemon.send(signal.SIGHUP)  # a full rescan walks into the locked folder too
            wait_until(lambda: "cannot list folder" in daemon.log(), timeout=120, what="the folder to be skipped")
            os.chmod(locked, 0o644)  # fixed by the user: the chmod alone must get it indexed
            daemon.wait_fresh(locked)
            figures = daemon.settle_and_check(invisible=[hidden])
            assert "Traceback" not in daemon.log()
    finally:
        for dirpath, dirnames, _ in os.walk(tmp):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"unreadable_inputs": 2, **figures}


def watch_limit_at_start(tmp: Path, model: Path) -> dict[str, Any]:
    """A tree that needs more inotify watches than the limit allows when the daemon starts: it must poll."""
    prefix = watch_limit_prefix(4)
    if prefix is None:
        return {"skipped": "cannot create a user namespace with its own inotify watch limit"}
    root = tmp / "pics"
    for i in range(10):
        (root / f"sub{i}").mkdir(parents=True)
        (root / f"sub{i}" / "a.png").write_bytes(png_bytes(400 + i))
    with FaultDaemon(tmp, model, [root], prefix=prefix) as daemon:
        daemon.start()  # it answers before its watches are set: wait for them
        wait_until(lambda: "imgd running: watching" in daemon.log(), timeout=120, what="the watches")
        assert "fs.inotify.max_user_watches" in daemon.log()
        assert [f["mode"] for f in daemon.status()["folders"]] == ["polling"]
        for i in range(10):
            (root / f"sub{i}" / "late.png").write_bytes(png_bytes(500 + i))
        for i in range(10):
            daemon.wait_fresh(root / f"sub{i}" / "late.png", timeout=120)
        figures = daemon.settle_and_check()
    return {"mode": "polling", **figures}


def hostile_round(tmp: Path, model: Path, seed: int, race_rounds: int) -> dict[str, Any]:
    """Every hostile input of HOSTILE, links out of the tree and the two races, against one running daemon."""
    root = tmp / "pics"
    (root / "normal").mkdir(parents=True)
    for i in range(5):
        (root / "normal" / f"n{i}.png").write_bytes(png_bytes(seed + 900 + i))
    failed: set[bytes] = set()
    tried = 0
    with FaultDaemon(tmp, model, [root], IMGD_PERSIST_INTERVAL="0.5") as daemon:
        daemon.start()
        daemon.wait_idle()
        makers = {name: (lambda f, s, m=maker: m(f, s)) for name, maker in HOSTILE.items()}
        makers["links_out"] = lambda f, s: make_symlinks_outside(f, s, os.fsencode(tmp / "outside"))
        for name, make in makers.items():
            folder = os.path.join(os.fsencode(root), name.encode())
            os.makedirs(folder)
            expect = make(folder, seed + len(name))
            expect_settled(daemon, expect, os.path.join(folder, b"probe-after.png"))
            failed.update(expect.failed)
            tried += len(expect.ok) + len(expect.failed) + len(expect.ignored)
        tried += race_replace_while_embedding(daemon, root / "replaced", race_rounds, seed + 11)
        tried += race_delete_before_embedding(daemon, root / "deleted", race_rounds, seed + 12)
        figures = daemon.settle_and_check(failed=map(os.fsdecode, failed))
    assert "Traceback" not in daemon.log()
    return {"inputs_tried": tried, **figures}
