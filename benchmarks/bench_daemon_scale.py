"""The daemon itself over a large library: start-up, reconcile, memory, idle CPU, `rm -rf` and `mv` of 10k files.

    python benchmarks/bench_daemon_scale.py --contents 100000
    python benchmarks/bench_daemon_scale.py --contents 1000000 --model benchmarks/out/vit-b-32

Builds once (reused by later runs, under benchmarks/out/scale-N) a tree of N tiny files, 1,000 to a
folder, 10 folders to a group (root/gGGG/dDD/N.jpg), and a catalog that already holds every one of
them with a synthetic 512-dim vector (ViT-B/32's size) and its metadata, recorded under the model the
daemon loads, so the daemon finds the library indexed and embeds nothing. Then runs the real `imgd run`
(the random ViT-B/32 of tests/clipkit.py; `--backend`, default onnx, the runtime a user's daemon serves,
exported once into benchmarks/out/scale-models and shared by every run's state folder, so no run pays the
export and no daemon holds torch) three times on a copy of that catalog:

1. without an index file (as after an upgrade or a damaged file): time to the first answer to a search,
   the latency of searches while the index is built (exact scans of the catalog), a new picture searchable
   during the build and after it, the time until the built index is swapped in, to reconciled (idle), RSS
   over time; then `rm -rf` of 10 folders (10,000 files)
   until every row and content is gone, a `mv` of a 10,000-file group until the catalog has the new paths,
   idle CPU over 20 s, and the time SIGTERM takes;
2. with the index file the first run saved: time to first answer and to reconciled, steady RSS;
3. without an index file again, SIGTERM a second after the first answer (during the index build): the
   time until the process exits;
4. (`--runs 4`, issue 21's start-up) with an index file made here from the seed catalog: time to the first
   answer and to reconciled, then SIGTERM at several moments, each in a fresh daemon: while the model
   loads, a second after the first answer (mid-reconcile), when idle, and without an index file a second
   after the first answer (the index build, then a save at shutdown).

The words pass is off (IMGD_WORDS_ENABLED=0): the tree's files are 8-byte stand-ins, not pictures.

The catalog is watched read-only from here (one count per poll); the daemon is asked its status once a
second at most, so the harness itself stays off the daemon's hot path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
import numpy as np

DIM = 512
PER_FOLDER = 1000
FOLDERS_PER_GROUP = 10
BACKEND = "onnx"  # --backend
IDLE_UNLOAD = 30.0  # the daemon frees its image model this long after the last picture (the default is 300 s)


def file_path(root: Path, n: int) -> Path:
    folder = n // PER_FOLDER
    return root / f"g{folder // FOLDERS_PER_GROUP:03d}" / f"d{folder % FOLDERS_PER_GROUP:02d}" / f"{n}.jpg"


def model_identity(model: Path) -> tuple[str, int, str | None]:
    """The name, dim and weights' fingerprint the daemon will record, from the model it loads."""
    from imgd.daemon.embedders import load_embedder

    embedder = load_embedder(str(model), device="cpu", backend="torch")
    return embedder.name, embedder.dim, getattr(embedder, "fingerprint", None)


def build(base: Path, count: int, model: Path) -> tuple[Path, Path]:
    """The tree and its indexed catalog, made once per size (a marker file says it is complete)."""
    from imgd.daemon.ingest import imaging
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.store.records import ImageMeta

    root, seed = base / "library", base / "seed" / "catalog.db"
    if (base / "complete").exists():
        return root, seed
    shutil.rmtree(base, ignore_errors=True)
    seed.parent.mkdir(parents=True)
    started = time.monotonic()
    name, dim, fingerprint = model_identity(model)
    if dim != DIM:
        raise SystemExit(f"{model} gives {dim}-dim vectors, not {DIM}")
    catalog = Catalog(seed)
    catalog.ensure_model(name, dim, fingerprint=fingerprint)
    mixture = clip_like(count)
    meta = ImageMeta("jpeg", 640, 480)
    block = 10_000
    for first in range(0, count, block):
        vectors = mixture.sample(min(block, count - first), seed=first)
        with catalog.transaction():
            for offset, vector in enumerate(vectors):
                n = first + offset
                path = file_path(root, n)
                path.parent.mkdir(parents=True, exist_ok=True)
                data = n.to_bytes(8, "little")
                path.write_bytes(data)
                info = path.stat()
                # The engine's own digest: a file re-read (after a move it could not pair) is known content.
                content_id = catalog.add_content(imaging.digest_bytes(data), vector, 640, 480, meta)
                catalog.set_file(str(path), info.st_size, info.st_mtime_ns, content_id)
        common.log(f"built {first + len(vectors)} of {count} ({time.monotonic() - started:.0f} s)")
    catalog.close()
    (base / "clustered").write_text("bench_search.Mixture\n")
    (base / "complete").write_text(f"{count}\n")
    return root, seed


def clip_like(count: int):  # noqa: ANN201 - bench_search.Mixture, imported late like the rest
    """Vectors that cluster as CLIP's do: random ones do not, and over them IVF gains nothing, so the daemon
    kept an exact float32 index (2 GB at 1M) that no real library would have."""
    from bench_search import Mixture

    return Mixture(dim=DIM, centres=max(10, count // 300))


def recluster(base: Path, count: int) -> None:
    """A tree built before its vectors were CLIP-like: rewrite the seed's vectors in place (files unchanged)."""
    seed = base / "seed" / "catalog.db"
    if (base / "clustered").exists() or not (base / "complete").exists():
        return
    mixture, started = clip_like(count), time.monotonic()
    conn = sqlite3.connect(seed)
    ids = [row[0] for row in conn.execute("SELECT id FROM vectors ORDER BY id")]
    for first in range(0, len(ids), 20_000):
        part = ids[first : first + 20_000]
        vectors = mixture.sample(len(part), seed=first).astype(np.float16)
        with conn:
            conn.executemany(
                "UPDATE vectors SET vector = ? WHERE id = ?", zip((v.tobytes() for v in vectors), part, strict=True)
            )
    conn.close()
    (base / "seed" / "index.faiss").unlink(missing_ok=True)
    (base / "clustered").write_text("bench_search.Mixture\n")
    common.log(f"made the seed's {len(ids)} vectors CLIP-like ({time.monotonic() - started:.0f} s)")


class Probe:
    """Samples the daemon's RSS every 0.2 s in a thread; counts rows through a read-only connection."""

    def __init__(self, pid: int, catalog: Path) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()
        self.conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _status(self, key: str) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _sample(self) -> None:
        while not self.stopped.wait(0.2):
            self.samples.append((time.monotonic(), self._status("VmRSS:")))

    @property
    def rss(self) -> int:
        return self._status("VmRSS:")

    @property
    def peak(self) -> int:
        return self._status("VmHWM:")

    def count(self, sql: str, *args: object) -> int:
        return int(self.conn.execute(sql, args).fetchone()[0])

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.conn.close()


def mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def wait(predicate, timeout: float, interval: float = 0.2) -> float | None:  # noqa: ANN001 - a local helper
    """Seconds until predicate() holds, or None after timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    return None


class Run:
    """One `imgd run` over the library with its own state folder."""

    def __init__(
        self, work: Path, root: Path, model: Path, seed: Path, keep_index: bool, index_file: Path | None = None
    ) -> None:
        from imgd.daemon.paths import default_socket

        self.state = work / "state"
        if not keep_index:
            shutil.rmtree(self.state, ignore_errors=True)
            self.state.mkdir(parents=True)
            shutil.copy(seed, self.state / "catalog.db")
            if index_file is not None:
                shutil.copy(index_file, self.state / "index.faiss")
        models = common.OUT / "scale-models"  # the export (made by the first run) outlives each state folder
        models.mkdir(parents=True, exist_ok=True)
        if not (self.state / "models").exists():
            (self.state / "models").symlink_to(models)
        self.env = {
            **common.imgd_env(work, self.state, model),
            "IMGD_DEVICE": "cpu",
            "IMGD_BACKEND": BACKEND,
            "IMGD_SETTLE_SECONDS": "1",
            "IMGD_WORDS_ENABLED": "0",
            "IMGD_IDLE_UNLOAD": str(IDLE_UNLOAD),
        }
        self.socket = default_socket(self.state, str(work / "run"))
        self.log = work / "daemon.log"
        self.root = root
        self.started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imgd.cli.main", "run", str(root)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.probe = Probe(self.proc.pid, self.state / "catalog.db")

    def status(self) -> dict | None:
        from imgd.daemon.api import client
        from imgd.daemon.errors import ImgdError

        if self.proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {self.proc.returncode}; see {self.log}")
        try:
            return client.status(self.socket, timeout=30)
        except ImgdError:
            return None

    def answers(self) -> bool:
        from imgd.daemon.api import client
        from imgd.daemon.errors import ImgdError

        if self.proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {self.proc.returncode}; see {self.log}")
        try:
            client.search(self.socket, 5, text="a photo")
            return True
        except ImgdError:
            return False

    def idle(self) -> bool:
        status = self.status()
        return bool(status and status["daemon"]["state"] == "idle" and status["queue"]["pending"] == 0)

    def settled(self) -> bool:
        """Idle twice, a second apart."""
        return self.idle() and (time.sleep(1.0) or self.idle())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> float:
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")
        finally:
            self.probe.close()
        return time.monotonic() - started


def report(label: str, value: str) -> None:
    print(f"  {label:<52}{value}", flush=True)


def timed_search(run: Run) -> tuple[float, bool]:
    """One text search's latency, and whether its answer came from a scan of the catalog (the index being built)."""
    from imgd.daemon.api import client
    from imgd.daemon.protocol import Options, SearchRequest, Term

    started = time.monotonic()
    request = SearchRequest(terms=(Term("text", "a photo"),), options=Options(k=10))
    reply = client.request(run.socket, request.to_message(), timeout=120)
    return time.monotonic() - started, bool(reply.get("exact_scan"))


def new_picture(path: Path, seed: int) -> Path:
    """A real (small) picture for the daemon to embed: the tree's files are 8-byte stand-ins."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def searchable(run: Run, path: Path, timeout: float = 600) -> float | None:
    """Seconds from now until a search by `path` answers `path` first (it must be embedded and in the index)."""
    from imgd.daemon.api import client
    from imgd.daemon.errors import ImgdError

    def found() -> bool:
        try:
            hits = client.search(run.socket, 1, image=str(path))
        except ImgdError:
            return False
        return bool(hits) and hits[0]["path"] == str(path)

    return wait(found, timeout, 0.1)


def start_build(run: Run, root: Path) -> None:
    """Issue 21, session 5: the index built from the catalog while searches scan it, without an index file."""
    status = run.status() or {}
    report("  index at the first answer", str(status.get("search")))
    for number in range(3):
        took, scanned = timed_search(run)
        report(
            f"  search {number + 1} after the first: latency", f"{took:.2f} s ({'exact scan' if scanned else 'index'})"
        )
    if "scan" in ((run.status() or {}).get("search") or {}):
        report("  peak RSS before a new picture (image model closed)", mb(run.probe.peak))
        picture = new_picture(root / "new-during-build.png", 1)
        found = searchable(run, picture)
        still = "scan" in ((run.status() or {}).get("search") or {})
        report(
            "  new file during the build -> searchable (by scan)",
            f"{found:.1f} s{'' if still else ' (the build ended meanwhile)'}" if found is not None else "not in 10 min",
        )
    built = wait(lambda: "scan" not in ((run.status() or {}).get("search") or {}), 1800, 1.0)
    report(
        "start -> index built and swapped in",
        f"{time.monotonic() - run.started:.1f} s" if built is not None else "not in 30 min",
    )
    report("  index then", str((run.status() or {}).get("search")))
    report("  RSS now / peak so far", f"{mb(run.probe.rss)} / {mb(run.probe.peak)}")
    rss_timeline(run)
    took, scanned = timed_search(run)
    report("  a search now: latency", f"{took:.3f} s ({'exact scan' if scanned else 'index'})")
    picture = new_picture(root / "new-after-build.png", 2)
    found = searchable(run, picture)
    report("  new file -> searchable (index)", f"{found:.1f} s" if found is not None else "not in 10 min")
    for name in ("new-during-build.png", "new-after-build.png"):
        (root / name).unlink(missing_ok=True)


def first_run(run: Run, root: Path, count: int) -> None:
    from imgd.daemon.store.core import prefix_range

    answer = wait(run.answers, 600, 0.25)
    report("start -> first search answered", f"{answer:.1f} s" if answer is not None else "never")
    start_build(run, root)
    reconciled = wait(run.settled, 1800, 1.0)
    report("start -> reconciled and idle", f"{time.monotonic() - run.started:.1f} s" if reconciled else "not in 30 min")
    status = run.status() or {}
    report("index", str(status.get("search")))
    report("RSS now / peak so far", f"{mb(run.probe.rss)} / {mb(run.probe.peak)}")
    probe = run.probe
    files0, contents0 = probe.count("SELECT count(*) FROM files"), probe.count("SELECT count(*) FROM contents")

    # rm -rf of 10 folders of 1,000 files each (one group's folders, one by one as a user would).
    group = root / "g000"
    started = time.monotonic()
    subprocess.run(["rm", "-rf", *sorted(map(str, group.iterdir()))], check=True)
    rm_took = time.monotonic() - started
    gone_rows = wait(lambda: probe.count("SELECT count(*) FROM files") <= files0 - 10_000, 1800)
    gone_contents = wait(lambda: probe.count("SELECT count(*) FROM contents") <= contents0 - 10_000, 1800)
    done = time.monotonic() - started
    report("rm -rf 10 folders (10,000 files): rm itself", f"{rm_took:.1f} s")
    if gone_rows is None or gone_contents is None:
        left = probe.count("SELECT count(*) FROM files") - (files0 - 10_000)
        report("  rows still there after 30 min", str(left))
    else:
        report("  -> every row gone", f"{gone_rows + rm_took:.1f} s ({10_000 / (gone_rows + rm_took):.0f} files/s)")
        report("  -> every content and vector dropped (grace 3 s)", f"{done:.1f} s")
    wait(run.settled, 600, 1.0)
    report("  -> idle again", f"{time.monotonic() - started:.1f} s")

    # mv of a 10,000-file group inside the root.
    source, dest = root / "g001", root / "g001-moved"
    low, high = prefix_range(str(dest))
    started = time.monotonic()
    os.rename(source, dest)
    moved = wait(
        lambda: probe.count("SELECT count(*) FROM files WHERE path >= ? AND path < ?", low, high) >= 10_000, 1800
    )
    report(
        "mv of a 10,000-file folder -> rows at the new paths",
        f"{moved:.1f} s" if moved is not None else "not in 30 min",
    )
    wait(run.settled, 600, 1.0)
    report("  -> idle again", f"{time.monotonic() - started:.1f} s")
    failed = probe.count("SELECT count(*) FROM files WHERE status != 'ok'")
    added = probe.count("SELECT count(*) FROM contents") - (contents0 - 10_000)
    report("  failed rows / contents added (0 = no re-embedding)", f"{failed} / {added}")
    os.rename(dest, source)  # put the tree back (the daemon follows), as run 2 expects it

    wait(run.settled, 600, 1.0)
    time.sleep(5)
    cpu0, t0 = probe.cpu_seconds(), time.monotonic()
    time.sleep(20)
    idle_cpu = (probe.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    report("idle CPU over 20 s", f"{idle_cpu * 100:.1f}% of a core")
    report("steady RSS / peak RSS", f"{mb(run.probe.rss)} / {mb(run.probe.peak)}")
    report("SIGTERM -> exited", f"{run.stop():.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contents", type=int, default=100_000, help="library size (default 100,000)")
    parser.add_argument(
        "--model", type=Path, default=common.DEFAULT_MODEL, help="the ViT-B/32 folder (built if absent)"
    )
    parser.add_argument("--runs", default="1,2,3", help="which of the three runs (default all)")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "openvino", "torch"])
    args = parser.parse_args()
    global BACKEND
    BACKEND = args.backend
    if args.contents < 20_000:
        raise SystemExit("--contents must be at least 20,000 (the events touch 20,000 files)")
    model = common.ensure_model(args.model.resolve())
    base = common.OUT / f"scale-{args.contents}"
    recluster(base, args.contents)
    root, seed = build(base, args.contents, model)
    restore(root, seed)  # the files an earlier run removed, as the seed catalog knows them
    print(f"machine: {common.cpu_model()}, {os.cpu_count()} cores; library {args.contents:,} contents", flush=True)
    runs = {int(r) for r in args.runs.split(",")}
    work = base / "work"
    if 1 in runs:
        print("run 1: no index file", flush=True)
        first_run(Run(work, root, model, seed, keep_index=False), root, args.contents)
    if 2 in runs:
        print("run 2: the index file of run 1", flush=True)
        run = Run(work, root, model, seed, keep_index=True)
        answer = wait(run.answers, 600, 0.25)
        report("start -> first search answered", f"{answer:.1f} s" if answer is not None else "never")
        wait(run.settled, 1800, 1.0)
        report("start -> reconciled and idle", f"{time.monotonic() - run.started:.1f} s")
        time.sleep(10)
        report("steady RSS / peak RSS", f"{mb(run.probe.rss)} / {mb(run.probe.peak)}")
        settled_rss(run)
        report("SIGTERM -> exited", f"{run.stop():.1f} s")
    if 4 in runs:
        restore(root, seed)
        print("run 4: start-up with an index file; SIGTERM at several moments", flush=True)
        startup_runs(work, root, model, seed)
    if 3 in runs:
        restore(root, seed)
        print("run 3: no index file, SIGTERM during start-up", flush=True)
        run = Run(work, root, model, seed, keep_index=False)
        answer = wait(run.answers, 600, 0.25)
        report("start -> first search answered", f"{answer:.1f} s" if answer is not None else "never")
        time.sleep(1.0)
        status = run.status() or {}
        report("state when signalled", f"{status.get('daemon', {}).get('state')}, index {status.get('search')}")
        report("SIGTERM -> exited", f"{run.stop(timeout=60):.1f} s")
    return 0


def rss_timeline(run: Run) -> None:
    """Where the highest sampled RSS fell, and RSS over time (the log's lines around then say what ran)."""
    samples = list(run.probe.samples)
    if samples:
        at, top = max(samples, key=lambda sample: sample[1])
        report("  highest sampled RSS at", f"{at - run.started:.1f} s after start ({mb(top)})")
        marks = [(t - run.started, rss) for t, rss in samples[:: max(1, len(samples) // 40)]]
        report("  RSS over time (s: MB)", ", ".join(f"{t:.0f}: {rss >> 20}" for t, rss in marks))


def settled_rss(run: Run) -> None:
    """RSS once `idle_unload` has freed the image model, then once the start-up passes (duplicates) are done:
    issue 21's steady figure. Done means under 5% of a core over 10 s (at most 20 minutes)."""
    time.sleep(IDLE_UNLOAD + 5)
    report(f"RSS after idle_unload ({IDLE_UNLOAD:.0f} s)", mb(run.probe.rss))
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        cpu0, t0 = run.probe.cpu_seconds(), time.monotonic()
        time.sleep(10)
        if (run.probe.cpu_seconds() - cpu0) / (time.monotonic() - t0) < 0.05:
            break
    report("start -> passes done (under 5% of a core)", f"{time.monotonic() - run.started:.0f} s")
    report("  RSS then / peak", f"{mb(run.probe.rss)} / {mb(run.probe.peak)}")
    samples = list(run.probe.samples)
    if samples:  # where the peak falls: the log's lines around that time say what ran
        at, top = max(samples, key=lambda sample: sample[1])
        report("  highest sampled RSS at", f"{at - run.started:.1f} s after start ({mb(top)})")
        marks = [(t - run.started, rss) for t, rss in samples[:: max(1, len(samples) // 40)]]
        report("  RSS over time (s: MB)", ", ".join(f"{t:.0f}: {rss >> 20}" for t, rss in marks))


def seed_index(seed: Path) -> Path:
    """The index file a daemon would have saved for the seed catalog (IVF at this size), made once."""
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.store.index import VectorIndex

    path = seed.with_name("index.faiss")
    if not path.exists():
        catalog = Catalog(seed, readonly=True)
        try:
            index = VectorIndex.build(catalog, DIM)
            index.rebuild_if_due()  # not background: the structure a long-running daemon ends with
            index.save(path)
        finally:
            catalog.close()
    return path


def signalled(run: Run, label: str, after_answer: float | None) -> None:
    """SIGTERM `after_answer` s after the first answer (None: while the model loads, 3 s after start)."""
    if after_answer is None:
        time.sleep(3.0)
        state = "starting (no answer yet)" if not run.answers() else "answering already"
    else:
        wait(run.answers, 600, 0.25)
        time.sleep(after_answer)
        status = run.status() or {}
        state = f"{status.get('daemon', {}).get('state')}, index {status.get('search', {}).get('kind')}"
    took = run.stop(timeout=60)
    report(f"SIGTERM {label} -> exited", f"{took:.2f} s ({state})")


def startup_runs(work: Path, root: Path, model: Path, seed: Path) -> None:
    """Issue 21's start-up figures: first answer and reconciled with an index file, SIGTERM at several moments."""
    index_file = seed_index(seed)
    run = Run(work, root, model, seed, keep_index=False, index_file=index_file)
    answer = wait(run.answers, 600, 0.25)
    report("index file present: start -> first search answered", f"{answer:.1f} s" if answer is not None else "never")
    wait(run.idle, 1800, 0.5)
    report("  start -> reconciled (worker idle)", f"{time.monotonic() - run.started:.1f} s")
    report("  RSS now / peak", f"{mb(run.probe.rss)} / {mb(run.probe.peak)}")
    time.sleep(2.0)
    report("SIGTERM when idle -> exited", f"{run.stop(timeout=60):.2f} s")
    signalled(Run(work, root, model, seed, keep_index=False, index_file=index_file), "while the model loads", None)
    signalled(Run(work, root, model, seed, keep_index=False, index_file=index_file), "1 s after the first answer", 1.0)
    signalled(Run(work, root, model, seed, keep_index=False), "no index file, 1 s after the first answer", 1.0)


def restore(root: Path, seed: Path) -> None:
    """Make again the files the first run removed, with the mtimes of their seed rows: unchanged for a seed copy."""
    from imgd.daemon.store.core import prefix_range

    conn = sqlite3.connect(f"file:{seed}?mode=ro", uri=True)
    try:
        low, high = prefix_range(str(root / "g000"))
        for key, mtime_ns in conn.execute("SELECT path, mtime_ns FROM files WHERE path >= ? AND path < ?", (low, high)):
            path = Path(os.fsdecode(key))
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(int(path.stem).to_bytes(8, "little"))
            if path.stat().st_mtime_ns != mtime_ns:
                os.utime(path, ns=(mtime_ns, mtime_ns))
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
