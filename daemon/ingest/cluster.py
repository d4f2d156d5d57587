"""Reading and embedding on a Ray cluster (`imgd index --cluster ADDRESS`): a library beyond one machine.

Ray is an optional extra (`pip install 'imgd[cluster]'`). Each worker is a Ray actor that loads the
embedder once, with the runtime chosen as for a local run, and reads, hashes, decodes and embeds a
few files at a time with the engine's own `load_file`; what it found (digest, vectors, metadata, or
why a file could not be read) comes back to this process, which alone writes the catalog and the
index, exactly as after local embedding. Workers open files by the paths this process sees: on a
cluster beyond this machine the library must be at the same paths on every node (shared storage).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ImgdError
from ..store.records import FileStat, ImageMeta
from . import video
from .engine import Engine, Item
from .loading import _Loaded, load_file

log = logging.getLogger(__name__)

LOCAL = ("auto", "local")  # addresses that start a cluster on this machine for the run (auto: unless one runs)
TASK_FILES = 8  # photos a task reads and embeds: small enough to spread 60 files evenly over the workers
IN_FLIGHT = 2  # tasks queued per worker, so a worker never waits for the next one to arrive
WORKER_CPUS = 1  # each worker reads and embeds on one CPU, so a node runs one worker per core
CONNECT_TIMEOUT = 5.0  # seconds to wait for a cluster's address to answer at all
RETRIES = 3  # a worker lost mid-run (node gone, process killed) is restarted and its task run again


class ClusterUnavailable(ImgdError):
    """Ray is not installed, or the cluster cannot be reached or lost its workers."""


def import_ray() -> Any:
    """Ray, or one sentence on how to get it: it is an optional extra."""
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(
            "--cluster needs Ray, which is not installed; install it with: pip install 'imgd[cluster]'."
        ) from None
    return ray


def check(address: str) -> None:
    """Say at once, before the model loads, that Ray is missing or that nothing answers at address."""
    import_ray()
    if address not in LOCAL:
        _reachable(address)


@dataclass
class Embedded:
    """What a worker sends back for one file: never its pixels, only what the catalog keeps."""

    digest: str | None
    error: str | None
    meta: ImageMeta | None
    width: int
    height: int
    vectors: np.ndarray | None  # one row per picture (a video's frames); None when it could not be read
    times: list[float] | None = None  # a video's frame times
    duration: float = 0.0


def load_embedder(config: Config, threads: int = 0) -> Any:
    """The configured model, loaded the way a local run loads it (the backend measured fastest for `auto`),
    its runtime on `threads` threads (0: one per core)."""
    from ..embedders import load_configured

    return load_configured(config, threads=threads)


class Worker:
    """One Ray actor's state: the model, loaded once, and the files it is handed a few at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # One thread on the worker's one CPU: workers share a node's cores, so a model on every core in
        # each of them would oversubscribe the node (Ray sets OMP_NUM_THREADS=1 for torch likewise).
        self.embedder = load_embedder(config, threads=WORKER_CPUS)

    def ready(self) -> str:
        """The model's name, once it is loaded: the driver waits for every worker before timing."""
        return self.embedder.name

    def embed(self, stats: list[FileStat]) -> list[Embedded]:
        """Read, decode and embed these files in one forward pass; each file's failure is its own."""
        loaded = [load_file(stat, None, self.config, self.embedder) for stat in stats]
        images = [i for item in loaded for i in (item.frames.images if item.frames else [item.image]) if item.count]
        vectors = self.embedder.encode_images(images) if images else None
        out, position = [], 0
        for item in loaded:
            rows = None
            if item.count:
                rows, position = vectors[position : position + item.count], position + item.count
            frames = item.frames
            out.append(
                Embedded(
                    item.digest,
                    item.error,
                    item.meta,
                    item.width,
                    item.height,
                    rows,
                    frames.times if frames else None,
                    frames.duration if frames else 0.0,
                )
            )
        return out


class Cluster:
    """The workers of a Ray cluster, reached or started for one run; `engine.remote` while attached."""

    def __init__(self, address: str, config: Config, num_cpus: int | None = None) -> None:
        self.ray = import_ray()
        self.started_here = False
        began = time.monotonic()
        self._connect(address, num_cpus or config.threads())
        try:
            cpus = int(self.ray.cluster_resources().get("CPU", 1))
            actor = self.ray.remote(num_cpus=WORKER_CPUS, max_restarts=RETRIES, max_task_retries=RETRIES)(Worker)
            self.workers = [actor.remote(config) for _ in range(max(1, cpus))]
            self.ray.get([worker.ready.remote() for worker in self.workers])  # every model loaded
        except self.ray.exceptions.RayError as exc:
            self.close()
            raise ClusterUnavailable(f"the cluster's workers could not load the model ({_reason(exc)}).") from None
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began  # what a run pays before the first file is read
        log.info("cluster ready: %d workers in %.1fs", len(self.workers), self.startup_seconds)

    def _connect(self, address: str, num_cpus: int) -> None:
        """Join the cluster at address; `local` (and `auto` when none runs here) starts one on this machine
        with num_cpus workers (decode_threads: as many as a local run reads files with)."""
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}  # its notices are not the user's concern
        if address == "auto":
            try:
                self.ray.init(address="auto", **quiet)
                return
            except ConnectionError:
                pass  # nothing running here: start one for the run
        if address in LOCAL:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
            self.ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                **quiet,
            )
            self.started_here = True
            return
        _reachable(address)
        try:
            self.ray.init(address=address, **quiet)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for an address it cannot reach
            raise ClusterUnavailable(f"cannot reach the Ray cluster at '{address}' ({_reason(exc)}).") from None

    def close(self) -> None:
        """Let the workers go; a cluster started for the run stops with it."""
        for worker in getattr(self, "workers", []):
            self.ray.kill(worker)
        self.workers = []
        self.ray.shutdown()

    def __call__(self, photos: list[Item], videos: list[Item], known: Callable[[str], bool]) -> Iterator[_Loaded]:
        """Hand the files to the workers a few at a time; each comes back loaded, with its vectors."""
        tasks = [photos[i : i + TASK_FILES] for i in range(0, len(photos), TASK_FILES)]
        tasks += [[item] for item in videos]  # a video's frames are a batch of their own
        pending: dict[Any, tuple[int, list[Item]]] = {}  # a task's result -> its worker and files
        busy = [0] * len(self.workers)
        for task in tasks:
            while min(busy) >= IN_FLIGHT:
                yield from self._collect(pending, busy, known)
            number = busy.index(min(busy))  # the least loaded: a slow node is handed less
            pending[self.workers[number].embed.remote([stat for stat, _ in task])] = (number, task)
            busy[number] += 1
        while pending:
            yield from self._collect(pending, busy, known)

    def _collect(
        self, pending: dict[Any, tuple[int, list[Item]]], busy: list[int], known: Callable[[str], bool]
    ) -> Iterator[_Loaded]:
        """The files of the first task to finish."""
        [ref], _ = self.ray.wait(list(pending), num_returns=1)
        number, task = pending.pop(ref)
        busy[number] -= 1
        try:
            results = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # a lost worker was retried RETRIES times already
            raise ClusterUnavailable(
                f"a cluster worker failed ({_reason(exc)}); what was indexed is kept, run again to go on."
            ) from None
        for (stat, previous), got in zip(task, results, strict=True):
            yield _loaded(stat, previous, got, known)


def _loaded(stat: FileStat, previous: Any, got: Embedded, known: Callable[[str], bool]) -> _Loaded:
    """A worker's answer as the engine's loaded file; known bytes keep their vector, as locally."""
    item = _Loaded(stat, previous, got.digest, None, got.width, got.height, got.error, got.meta)
    if got.vectors is not None and not known(got.digest or ""):
        item.vectors = got.vectors
        if got.times is not None:
            item.frames = video.Sampled(got.meta, got.duration, got.times, [], [])
    return item


def _reachable(address: str) -> None:
    """Refuse at once an address nothing listens at: Ray would retry it for minutes, logging as it goes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailable(
            f"--cluster takes 'local', 'auto', ray://HOST:PORT or HOST:PORT, not '{address}'."
        ) from None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at '{address}' ({exc.strerror or exc}); is it running?"
        ) from None


def _reason(exc: BaseException) -> str:
    """The first line of what Ray said, without its traceback."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


@contextmanager
def attached(engine: Engine, address: str, num_cpus: int | None = None) -> Iterator[Cluster]:
    """The engine embeds new files on the cluster at address while inside; the cluster is left after."""
    cluster = Cluster(address, engine.config, num_cpus)
    engine.remote = cluster
    try:
        yield cluster
    finally:
        engine.remote = None
        cluster.close()
