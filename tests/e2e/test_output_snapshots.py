"""Golden snapshots of what the imgd command line prints: every listing command in each output mode.

Taken on the code as it stood before the modules moved, so that the move can show that `index`,
`search`, `similar`, `dupes`, `failed`, `status` and `config` still print the same bytes.

The library is built once per module: fixed pictures (conftest.picture), fixed EXIF dates and cameras,
exact copies, a re-encoded smaller copy, a burst, a file that is no image, names that are not ASCII or
not UTF-8, and fixed mtimes; it is indexed with the fixed-seed tiny CLIP (conftest.tiny_model). That
model's random weights make its scores meaningless, but the same on every run. Folders are listed in
name order while indexing (see sorted_scandir), so content ids do not depend on the file system's order.

Only what has to vary is normalised: the library's temporary folder (<LIB>), the model's folder
(<MODEL>), the index run's seconds, and status's pid, uptime, times, rates and inotify counts. Both
real paths are longer than the 34 columns `imgd config` pads a value to, so the placeholders move no
comment there (a very short --basetemp would). Scores are not rounded: torch runs on one thread here
(see one_torch_thread), and so they are the same to the last bit on every run of one CPU; another CPU's
vector unit may move a JSON score's last decimal, so those compare within SCORE_TOLERANCE.

Each case is compared with output_snapshots/<name>.txt, a mismatch shown as a unified diff; with
IMGD_UPDATE_SNAPSHOTS=1 the files are written instead. File sizes in the output depend on Pillow's
encoders, so a Pillow upgrade may change them: that is not a regression of the command line.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import picture, write_image
from daemonkit import DaemonProcess
from imgd.cli.main import cli
from PIL import Image, ImageEnhance

SNAPSHOTS = Path(__file__).parent / "output_snapshots"
# Read at import: the isolated_env fixture (tests/conftest.py) clears every IMGD_* variable per test.
UPDATE = os.environ.get("IMGD_UPDATE_SNAPSHOTS") == "1"

# Where the tiny random model tells copies from unrelated pictures (tests/integration/test_dupes.py, TINY_THRESHOLD);
# at the default 0.975 it calls every picture a copy of every other (the `dupes_default` case shows that).
THRESHOLD = "0.9993"
MTIME_START = 1_650_000_000  # 2022-04-15 05:20:00 UTC; the files' mtimes are a day apart from there
QUERY = "a red car"

AGO = r"\d+(?:\.\d+)? ?(?:s|min|h) ago"
# What varies between runs in `imgd status`: each figure by its JSON key, and its text form in the lines.
STATUS_TEXT = {
    "pid": (r"\(pid \d+,", "(pid <pid>,"),
    "uptime_s": (r" up \d+s\)", " up <uptime_s>s)"),
    "last_persist": (rf"last persisted: {AGO}", "last persisted: <last_persist> ago"),
    "last_reconcile": (rf"last reconciled: {AGO}", "last reconciled: <last_reconcile> ago"),
    "rate": (r", \d+\.\d images/s", ", <rate> images/s"),
    "eta_s": (r", about \d+s left", ", about <eta_s>s left"),
    "used": (r"inotify watches: \d+ of", "inotify watches: <used> of"),
    "max": (r"(inotify watches: \S+) of \d+", r"\1 of <max>"),
    "catalog": (r"on disk: catalog \d+(?:\.\d)? \w+,", "on disk: catalog <catalog>,"),
}
STATUS = ("pid", "uptime_s", "last_persist", "last_reconcile", "rate", "eta_s", "used", "max")
# The size on disk counts the catalog's write-ahead log, of any length while a connection is open (the
# daemon's, or a reader left open by an earlier case in this process): a run-to-run figure.
DAEMON_STATUS = (*STATUS, "catalog")


@dataclass(frozen=True)
class Case:
    """One command line; <LIB> stands for the library's folder, in the arguments as in the snapshot."""

    name: str
    argv: tuple[str, ...]
    volatile: tuple[str, ...] = ()  # status figures that vary between runs, by JSON key (STATUS_TEXT)

    def args(self, root: Path) -> list[str]:
        return [arg.replace("<LIB>", str(root)) for arg in self.argv]


def case(name: str, *argv: str, volatile: tuple[str, ...] = ()) -> Case:
    return Case(name, argv, volatile)


# `index` runs in the module's fixture, first on the new library and then again on the unchanged one.
INDEX_CASES = [
    case("index", "index", "<LIB>/pics"),
    case("index_again", "index", "<LIB>/pics"),
]

CASES = [
    # search: the output modes
    case("search_text", "search", "--direct", QUERY),
    case("search_json", "search", "--direct", "--json", "-k", "5", QUERY),
    case("search_jsonl", "search", "--direct", "--jsonl", "-k", "5", QUERY),
    case("search_paths", "search", "--direct", "-f", "-k", "5", QUERY),
    case("search_null", "search", "--direct", "-0", "-k", "5", QUERY),
    # search: filters, cut-offs and order
    case("search_camera", "search", "--direct", "--json", "--camera", "canon", QUERY),
    case("search_dates", "search", "--direct", "--jsonl", "--after", "2022-05", "--before", "2024", QUERY),
    case("search_in_type", "search", "--direct", "--in", "<LIB>/pics/photos", "--type", "png,webp", QUERY),
    case("search_portrait", "search", "--direct", "--jsonl", "--portrait", QUERY),
    case("search_min_score", "search", "--direct", "--min-score", "-0.16", QUERY),
    case("search_auto", "search", "--direct", "--auto", QUERY),
    case("search_sort_date", "search", "--direct", "--jsonl", "-k", "20", "--sort", "date", QUERY),
    case("search_sort_path", "search", "--direct", "-k", "20", "--sort", "path", QUERY),
    case("search_like", "search", "--direct", "-k", "3", "--like", "<LIB>/pics/photos/city.jpg"),
    case(
        "search_weighted",
        *("search", "--direct", "-k", "4", "2:" + QUERY, "--not", "people"),
        *("--not-like", "<LIB>/pics/shots/IMG_0001.jpg"),
    ),
    case("search_no_match", "search", "--direct", "--min-score", "1", QUERY),
    # similar
    case("similar_text", "similar", "--direct", "<LIB>/pics/photos/beach.jpg"),
    case("similar_json", "similar", "--direct", "--json", "-k", "3", "<LIB>/pics/photos/beach.jpg"),
    case("similar_paths", "similar", "--direct", "-f", "-k", "3", "<LIB>/pics/shots/IMG_0002.jpg"),
    case("similar_uncatalogued", "similar", "--direct", "--jsonl", "-k", "3", "<LIB>/outside/probe.jpg"),
    # dupes
    case("dupes_text", "dupes", "--direct", "--threshold", THRESHOLD),
    case("dupes_json", "dupes", "--direct", "--json", "--threshold", THRESHOLD),
    case("dupes_jsonl", "dupes", "--direct", "--jsonl", "--threshold", THRESHOLD),
    case("dupes_paths", "dupes", "--direct", "-f", "--threshold", THRESHOLD),
    case("dupes_not_keeper", "dupes", "--direct", "-f", "--not-keeper", "--threshold", THRESHOLD),
    case(
        "dupes_null_in",
        *("dupes", "--direct", "-0", "--not-keeper", "--in", "<LIB>/pics/downloads", "--threshold", THRESHOLD),
    ),
    case("dupes_bursts", "dupes", "--direct", "--bursts", "--threshold", THRESHOLD),
    case("dupes_bursts_json", "dupes", "--direct", "--json", "--bursts", "--threshold", THRESHOLD),
    case("dupes_none", "dupes", "--direct", "--threshold", THRESHOLD, "<LIB>/pics/shots"),
    case("dupes_default", "dupes", "--direct"),
    # failed, status, config
    case("failed_text", "failed"),
    case("failed_json", "failed", "--json"),
    case("status_failed", "status", "--failed"),
    case("status_text", "status", volatile=DAEMON_STATUS),
    case("status_json", "status", "--json", volatile=DAEMON_STATUS),
    case("config", "config"),
    case("config_defaults", "config", "--defaults"),
]

# Through a real daemon (pointed at an empty state folder, so only the daemon can answer): the same bytes
# as the direct snapshots of these cases, `--direct` left out.
DAEMON_CASES = ["search_text", "search_json", "search_null", "search_like", "similar_uncatalogued", "dupes_text"]
DAEMON_STATUS_CASES = [
    case("daemon_status_text", "status", volatile=DAEMON_STATUS),
    case("daemon_status_json", "status", "--json", volatile=DAEMON_STATUS),
]


# -- the library -----------------------------------------------------------------------------


def original(seed: int) -> Image.Image:
    return picture(seed, (480, 320))


def jpeg(image: Image.Image, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def exif(taken: str, make: str, model: str, offset: str | None = None) -> bytes:
    """EXIF with a capture time (YYYY:MM:DD HH:MM:SS), camera make and model, and an optional UTC offset."""
    data = Image.Exif()
    data[0x010F] = make
    data[0x0110] = model
    sub = data.get_ifd(0x8769)
    sub[0x9003] = taken
    if offset is not None:
        sub[0x9011] = offset
    return data.tobytes()


def build_pictures(root: Path) -> None:
    """The library under root/pics, and root/outside/probe.jpg, which is not in it."""
    pics = root / "pics"
    beach = jpeg(original(1), exif("2021:07:14 10:00:00", "Canon", "EOS R6"))
    files: dict[str, bytes] = {
        "photos/beach.jpg": beach,
        "downloads/beach.jpg": beach,  # an exact copy
        "photos/beach-small.jpg": jpeg(original(1).resize((240, 160))),  # a near copy, no EXIF: its mtime
        "photos/city.jpg": jpeg(original(2), exif("2019:03:02 18:30:00", "FUJIFILM", "X-T3", "+01:00")),
        "photos/café ☕.jpg": jpeg(original(6), exif("2023:08:09 07:08:09", "Apple", "iPhone 15", "-07:00")),
        "photos/broken.png": b"<html>not a png</html>",
    }
    # A burst: three shots a second apart, a fourth a minute later (as in tests/integration/test_dupes.py).
    for i, when in enumerate(("10:00:00", "10:00:01", "10:00:02", "10:01:00")):
        frame = ImageEnhance.Brightness(original(5)).enhance(1.0 + 0.06 * i)
        files[f"shots/IMG_{i:04d}.jpg"] = jpeg(frame, exif(f"2024:05:01 {when}", "SONY", "ILCE-7M3"))
    for name, data in files.items():
        (pics / name).parent.mkdir(parents=True, exist_ok=True)
        (pics / name).write_bytes(data)
    write_image(pics / "photos" / "portrait.png", seed=3, size=(64, 96))
    write_image(pics / "photos" / "square.webp", seed=4, size=(80, 80))
    write_image(Path(os.fsdecode(os.fsencode(pics / "photos") + b"/bad-\xff.png")), seed=8)  # not UTF-8
    (root / "outside").mkdir()
    (root / "outside" / "probe.jpg").write_bytes(jpeg(original(2).resize((240, 160))))
    every = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: os.fsencode(p))
    for day, path in enumerate(every):
        stamp = (MTIME_START + day * 86_400) * 1_000_000_000
        os.utime(path, ns=(stamp, stamp))


class _Listing:
    """What os.scandir returns, from a list: an iterator that is also a context manager."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> _Listing:
        return self

    def __next__(self) -> os.DirEntry[str]:
        return next(self._entries)

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def sorted_scandir(real: Callable[..., object]) -> Callable[..., _Listing]:
    """os.scandir in name order: the scan's order decides content ids and so the "id" in JSON output, and
    the order os.scandir gives depends on the file system (ext4 hashes names, tmpfs keeps creation order)."""

    def scandir(path: object = ".") -> _Listing:
        with real(path) as listing:  # type: ignore[attr-defined]
            return _Listing(sorted(listing, key=lambda entry: os.fsencode(entry.name)))

    return scandir


@dataclass
class Library:
    root: Path
    model: Path
    outputs: dict[str, str] = field(default_factory=dict)  # the index runs' snapshots, by case name

    @property
    def env(self) -> dict[str, str]:
        """Every setting the commands read, inside root: the config and data folders, socket, time zone."""
        return {
            "IMGD_STATE_DIR": str(self.root / "state"),
            "IMGD_MODEL": str(self.model),
            "IMGD_DEVICE": "cpu",
            "IMGD_BACKEND": "torch",
            "IMGD_PRECISION": "float32",  # auto is bfloat16 on a CPU that has it: other vectors
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "data"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "TZ": "UTC",  # dates taken from mtimes are shown in local time
        }

    def placeholders(self, text: str) -> str:
        for path, name in sorted(((self.model, "<MODEL>"), (self.root, "<LIB>")), key=lambda p: -len(str(p[0]))):
            text = text.replace(str(path), name)
        return text


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[pytest.MonkeyPatch]:
    """These variables and no other IMGD_* ones (as tests/conftest.py's isolated_env), the time zone applied."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for var in list(os.environ):
                if var.startswith("IMGD_") and var != "IMGD_TEST_MODEL_DIR":
                    patch.delenv(var)
            for name, value in values.items():
                patch.setenv(name, value)
            time.tzset()
            yield patch
    finally:
        time.tzset()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread while this module runs, so that every score comes out the same to the last bit.

    A vector's last bits depend on how many threads torch splits its products over, and that number
    changes under a command's feet: VectorIndex.search calls faiss.omp_set_num_threads(1), which is the
    OpenMP runtime torch uses too, so a query embedded after a search on the same thread differs (by about
    1e-7) from one embedded before, enough to change the sixth decimal of a JSON score. One thread from the
    start (OMP_NUM_THREADS=1 for the daemon) takes the core count and that history out of the scores.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, one_torch_thread: None) -> Library:
    """The pictures, indexed by `imgd index` twice (the second run finds nothing to do)."""
    library = Library(tmp_path_factory.mktemp("snap"), tiny_model)
    build_pictures(library.root)
    with environment(library.env) as patch:
        patch.setattr(os, "scandir", sorted_scandir(os.scandir))
        for index_case in INDEX_CASES:
            library.outputs[index_case.name] = run(library, index_case)
    return library


@pytest.fixture(autouse=True)
def library_env(isolated_env: None, library: Library) -> Iterator[None]:
    """The library's settings in place of the per-test ones isolated_env set (after it, so they win)."""
    with environment(library.env):
        yield


# -- running and comparing ---------------------------------------------------------------------


def run(library: Library, case: Case, drop: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """Run the case in this process and render it as its snapshot: command, exit status, stdout, stderr."""
    args = [arg for arg in case.args(library.root) if arg not in drop]
    result = CliRunner().invoke(cli, args, prog_name="imgd", env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return normalise(library, case, render(case, result))


def render(case: Case, result: Result) -> str:
    return (
        f"$ imgd {shlex.join(case.argv)}\n"
        f"exit: {result.exit_code}\n"
        f"--- stdout\n{printable(result.stdout_bytes)}"
        f"--- stderr\n{printable(result.stderr_bytes)}"
    )


def printable(data: bytes) -> str:
    """Output as text that keeps every byte: a backslash doubled, a byte that is not UTF-8 as \\xNN, NUL as
    \\0 and a line break, and a last line without its newline marked."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        if char == "\\":
            out.append("\\\\")
        elif char == "\0":
            out.append("\\0\n")
        elif "\udc80" <= char <= "\udcff":
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(char)
    text = "".join(out)
    return text + "\\ no newline at end\n" if text and not text.endswith("\n") else text


INDEX_SECONDS = re.compile(r"^(\d+ added, .*) in \d+\.\ds$", re.MULTILINE)


def normalise(library: Library, case: Case, text: str) -> str:
    text = INDEX_SECONDS.sub(r"\1 in <seconds>s", library.placeholders(text))
    for key in case.volatile:
        text = re.sub(rf'"{key}": -?[0-9][0-9.eE+-]*', f'"{key}": "<{key}>"', text)
        pattern, replacement = STATUS_TEXT[key]
        text = re.sub(pattern, replacement, text)
    return text


JSON_SCORE = re.compile(r'"score": (-?[0-9][0-9.eE+-]*)')
# A score's last bits follow the CPU's vector unit: an AVX-512 CPU's kernels sum in another order than the
# AVX2 one the snapshots were taken on, and a JSON score's sixth decimal moved by one (-0.147158 / -0.147157).
SCORE_TOLERANCE = 5e-6


def same_but_last_bits(expected: str, actual: str) -> bool:
    """The same bytes once JSON scores are compared to SCORE_TOLERANCE: the same ranks, paths and the rest."""
    if JSON_SCORE.sub('"score": _', expected) != JSON_SCORE.sub('"score": _', actual):
        return False
    pairs = zip(JSON_SCORE.findall(expected), JSON_SCORE.findall(actual), strict=True)
    return all(abs(float(a) - float(b)) <= SCORE_TOLERANCE for a, b in pairs)


def check(name: str, actual: str, update: bool = UPDATE) -> None:
    """Compare with output_snapshots/<name>.txt, or write it under IMGD_UPDATE_SNAPSHOTS=1."""
    path = SNAPSHOTS / f"{name}.txt"
    if update:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), f"no snapshot {path.name}; run with IMGD_UPDATE_SNAPSHOTS=1 to take it"
    expected = path.read_bytes().decode("utf-8")
    if actual != expected and not same_but_last_bits(expected, actual):
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True), f"{name} (snapshot)", f"{name} (now)"
        )
        pytest.fail(f"{name}: the output changed\n{''.join(diff)}", pytrace=False)


# -- the tests -----------------------------------------------------------------------------------

pytestmark = pytest.mark.slow


def test_only_a_json_scores_last_bits_may_differ_from_a_snapshot() -> None:
    """The tolerance lets a CPU's rounding through, and nothing else: a path, a rank or a real score change fails."""
    snap = '[{"rank": 1, "score": -0.147158, "path": "<LIB>/a.jpg"}, {"rank": 2, "score": 0.997459, "path": "b"}]'
    assert same_but_last_bits(snap, snap.replace("-0.147158", "-0.147157").replace("0.997459", "0.99746"))
    assert not same_but_last_bits(snap, snap.replace("-0.147158", "-0.147358"))
    assert not same_but_last_bits(snap, snap.replace("a.jpg", "c.jpg"))
    assert not same_but_last_bits(snap, snap.replace('"rank": 2', '"rank": 3'))
    assert not same_but_last_bits(snap, snap[: snap.index(", {")] + "]")


@pytest.mark.parametrize("index_case", INDEX_CASES, ids=lambda c: c.name)
def test_index_summary(library: Library, index_case: Case) -> None:
    check(index_case.name, library.outputs[index_case.name])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output(library: Library, case: Case) -> None:
    check(case.name, run(library, case))


def test_through_the_daemon(library: Library) -> None:
    """A daemon over a copy of the state answers like the direct path, byte for byte; its status too."""
    home = library.root / "daemon"
    shutil.copytree(library.root / "state", home / "state")
    with DaemonProcess(home, library.model, [library.root / "pics"], OMP_NUM_THREADS="1") as daemon:
        daemon.start()
        daemon.wait_idle()
        # The daemon's own state folder (a command asks only the daemon of its state folder), with a model this
        # process cannot load (ONNX on CUDA is refused at once): a search only the daemon can answer.
        only_daemon = {
            "IMGD_STATE_DIR": str(daemon.state_dir),
            "XDG_RUNTIME_DIR": str(daemon.runtime),
            "IMGD_BACKEND": "onnx",
            "IMGD_DEVICE": "cuda",
        }
        by_name = {c.name: c for c in CASES}
        for name in DAEMON_CASES:
            # Compared even under IMGD_UPDATE_SNAPSHOTS=1: these snapshots are the direct path's.
            check(name, run(library, by_name[name], drop=("--direct",), env=only_daemon), update=False)
        # After `dupes`, which waits for the daemon's first duplicate pass: status lists groups, not "being computed".
        ours = {"IMGD_STATE_DIR": str(daemon.state_dir), "XDG_RUNTIME_DIR": str(daemon.runtime)}
        for status_case in DAEMON_STATUS_CASES:
            check(status_case.name, run(library, status_case, env=ours))
        assert daemon.stop() == 0, daemon.log()


def test_every_snapshot_belongs_to_a_case() -> None:
    """A snapshot left behind by a renamed or removed case would never be compared again."""
    names = {c.name for c in (*INDEX_CASES, *CASES, *DAEMON_STATUS_CASES)}
    assert sorted(p.stem for p in SNAPSHOTS.glob("*.txt") if p.stem not in names) == []
