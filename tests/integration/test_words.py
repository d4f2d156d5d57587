"""Words in pictures, read by the real OCR models (RapidOCR's PP-OCRv4) from pictures rendered with Debian's fonts.

OCR costs about a second per picture with words here, so the corpus is a handful of pictures read once
per session (`imgd index`), and every test asks it questions. The random tiny CLIP ranks by nothing
in particular, so wherever a receipt must come first the words alone carry it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import DaemonProcess, wait_until
from imgd.cli.main import cli
from imgd.daemon.store.catalog import Catalog
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = Path("/usr/share/fonts/truetype")
SANS = FONTS / "dejavu" / "DejaVuSans.ttf"
MONO = FONTS / "liberation" / "LiberationMono-Regular.ttf"
SERIF = FONTS / "liberation" / "LiberationSerif-Regular.ttf"

pytestmark = pytest.mark.slow


def render(lines: list[str], font: Path, size: tuple[int, int] = (640, 480), turn: int = 0) -> Image.Image:
    """Dark lines of text on a light page, turned `turn` degrees."""
    face = ImageFont.truetype(str(font if font.exists() else SANS), 30)
    page = Image.new("RGB", size, (245, 242, 235))
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(lines):
        draw.text((40, 30 + row * 60), line, fill=(20, 20, 20), font=face)
    return page.rotate(turn, expand=True, fillcolor=(245, 242, 235)) if turn else page


def photo(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A picture without words: soft coloured blobs."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(20, 90)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


CORPUS = {
    "receipt.png": (["HARDWARE STORE", "Hammer 12.99", "Nails 4.50", "TOTAL 17.49"], SANS, 0),
    "ticket.png": (["PARKING TICKET", "Zone B", "Valid until 18:30"], MONO, 180),
    "menu.png": (["Café Noir", "Crème brûlée"], SERIF, 0),
    "invoice.png": (["INVOICE INV-2023", "Due in 30 days"], SANS, 90),
}


@pytest.fixture(scope="session")
def words_library(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, list[str]]:
    """The corpus indexed once, its words read: (state folder, the CLI's leading arguments)."""
    root = tmp_path_factory.mktemp("words")
    pics = root / "pics"
    pics.mkdir()
    for name, (lines, font, turn) in CORPUS.items():
        render(lines, font, turn=turn).save(pics / name)
    photo(1).save(pics / "beach.png")
    write_image(pics / "grid.jpg", seed=3, size=(300, 200))
    state = root / "state"
    base = ["--state-dir", str(state), "--model", str(tiny_model), "--device", "cpu"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGD_BACKEND", "torch")
        patch.setenv("XDG_CONFIG_HOME", str(root / "config"))
        result = CliRunner().invoke(cli, [*base, "index", str(pics)])
    assert result.exit_code == 0, result.output
    return pics, base


def ask(base: list[str], *args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(cli, [*base, "search", "--direct", "--json", *args])
    hits = json.loads(result.stdout) if result.exit_code == 0 else []
    return result.exit_code, hits, result.stderr


def names(hits: list[dict]) -> list[str]:
    return [os.path.basename(hit["path"]) for hit in hits]


def test_words_keeps_the_pictures_that_hold_the_phrase_and_shows_the_matched_line(words_library):
    _, base = words_library
    code, hits, _ = ask(base, "a document", "--words", "hardware")
    assert code == 0
    assert names(hits) == ["receipt.png"]
    assert any("HARDWARE" in line for line in hits[0]["words"])


@pytest.mark.parametrize("phrase", ["hardw", "HaRdWaRe", "total 17.49", "ardware st"])
def test_a_substring_another_case_and_spacing_match(words_library, phrase):
    _, base = words_library
    code, hits, _ = ask(base, "a document", "--words", phrase)
    assert (code, names(hits)) == (0, ["receipt.png"])


def test_upside_down_and_sideways_pictures_are_read(words_library):
    _, base = words_library
    assert names(ask(base, "x", "--words", "parking")[1]) == ["ticket.png"]
    assert names(ask(base, "x", "--words", "INV-2023")[1]) == ["invoice.png"]


def test_accents_and_case_fold_on_both_sides(words_library):
    _, base = words_library
    for phrase in ("cafe noir", "CAFÉ", "creme brulee"):
        assert names(ask(base, "x", "--words", phrase)[1]) == ["menu.png"], phrase


def test_a_picture_without_words_is_never_listed(words_library):
    pics, base = words_library
    catalog = Catalog(pics.parent / "state" / "catalog.db", readonly=True)
    try:
        read, found = catalog.words_read_count()
        assert (read, found) == (6, 4)  # every picture read, words in the four pages only
    finally:
        catalog.close()
    for args in (["--words", "ing"], ["--words-match", "hardware OR parking OR cafe OR invoice"]):
        listed = names(ask(base, "a photo", "-k", "50", *args)[1])
        assert "beach.png" not in listed and "grid.jpg" not in listed


def test_the_gate_runs_the_detector_only_on_pictures_with_strokes_and_those_with_words_are_read(tmp_path):
    from imgd.daemon.ingest.words import WordReader, read_file

    reader = WordReader(threads=1)
    detector = reader._models().text_det
    infer, calls = detector.infer, []
    detector.infer = lambda batch: calls.append(batch.shape) or infer(batch)
    soft = photo(2, (1024, 768)).filter(ImageFilter.GaussianBlur(3))
    soft.save(tmp_path / "soft.jpg", quality=90)
    render(*CORPUS["receipt.png"][:2]).save(tmp_path / "receipt.jpg", quality=90)
    assert read_file(reader, str(tmp_path / "soft.jpg"), (tmp_path / "soft.jpg").read_bytes(), 10**8) == []
    assert calls == []  # skipped by the stroke test: the detector never ran
    lines = read_file(reader, str(tmp_path / "receipt.jpg"), (tmp_path / "receipt.jpg").read_bytes(), 10**8)
    assert calls[0][2:] == (352, 480)  # the gate's detector on the small picture, then the full read
    assert any("HARDWARE" in line.text for line in lines)


def test_a_search_fuses_the_words_with_the_ranking_and_no_words_turns_it_off(words_library):
    _, base = words_library
    code, hits, _ = ask(base, "receipt from the hardware store")
    assert code == 0 and names(hits)[0] == "receipt.png"
    assert "words" in hits[0]
    code, plain, _ = ask(base, "receipt from the hardware store", "--no-words")
    assert code == 0 and not any("words" in hit for hit in plain)
    assert sorted(names(plain)) == sorted(names(hits))  # the same six pictures, another order


def test_text_output_puts_the_matched_words_after_the_path(words_library):
    _, base = words_library
    result = CliRunner().invoke(cli, [*base, "search", "--direct", "x", "--words", "parking"])
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert line.split("  ")[1].endswith("ticket.png") and "PARKING" in line.split("  ", 2)[2]
    paths = CliRunner().invoke(cli, [*base, "search", "--direct", "-f", "x", "--words", "parking"])
    assert paths.stdout.strip().endswith("ticket.png") and "PARKING" not in paths.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--words", ""], "--words needs at least 3"),
        (["--words", "ab"], "--words needs at least 3"),
        (["--words", " é "], "--words needs at least 3"),
        (["--words-match", "hammer AND"], "not valid FTS5 syntax"),
        (["--words-match", '"open'], "not valid FTS5 syntax"),
    ],
)
def test_bad_words_are_one_sentence_and_exit_2(words_library, args, says):
    _, base = words_library
    result = CliRunner().invoke(cli, [*base, "search", "--direct", "x", *args])
    assert result.exit_code == 2
    assert says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_daemon_reads_the_words_and_answers_like_the_direct_path(tmp_path, tiny_model, words_library):
    pics, base = words_library
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        status = daemon.wait_idle(timeout=300)
        assert status["words"]["pending"] == 0 and status["words"]["found"] == 4
        ours = ["--state-dir", str(daemon.state_dir), "--model", str(tiny_model), "--device", "cpu"]
        env = {"XDG_RUNTIME_DIR": str(daemon.runtime)}
        for args in (["x", "--words", "hardw"], ["receipt from the hardware store"], ["x", "--words-match", "zone"]):
            through = CliRunner().invoke(cli, [*ours, "search", *args], env=env)
            direct = CliRunner().invoke(cli, [*ours, "search", "--direct", *args], env=env)
            assert through.exit_code == direct.exit_code == 0, through.output + direct.output
            assert through.stdout == direct.stdout
        bad = CliRunner().invoke(cli, [*ours, "search", "x", "--words-match", "zone AND"], env=env)
        assert bad.exit_code == 2 and "not valid FTS5 syntax" in bad.stderr
        text = CliRunner().invoke(cli, [*ours, "status"], env=env).stdout
        assert "words:" not in text  # nothing waits


def test_a_read_only_open_of_a_catalog_from_before_words_finds_none(tmp_path):
    kept = tmp_path / "catalog.db"
    kept.write_bytes((Path(__file__).parents[1] / "data" / "catalog-v3.db").read_bytes())
    reader = Catalog(kept, readonly=True)
    try:
        assert reader.schema_version < 5
        assert reader.words_read_count() == (0, 0)
        assert reader.words_matching('"hardware"') == []
        assert reader.word_lines([1, 2, 3]) == {}
    finally:
        reader.close()
    writer = Catalog(kept)  # the upgrade: every content waits to be read
    try:
        assert writer.words_backlog_count() == writer.count_contents() == 3
    finally:
        writer.close()


def test_the_gallery_gets_the_matched_lines_of_a_hit(words_library, tiny_model):
    from imgd.daemon import config as config_module
    from imgd.daemon.embedders import load_embedder
    from imgd.daemon.protocol import Options, Term
    from imgd.web.backend import Backend

    pics, _ = words_library
    config = config_module.load(
        None, {"state_dir": pics.parent / "state", "model": str(tiny_model), "device": "cpu"}, env={}
    )
    backend = Backend(config, lambda name: load_embedder(name, device="cpu", batch_size=8))
    try:
        hits = backend.search((Term("text", "receipt from the hardware store"),), Options(k=6))
    finally:
        backend.close()
    assert hits[0].path.endswith("receipt.png") and any("HARDWARE" in line for line in hits[0].words)
    assert not any(hit.words for hit in hits if hit.path.endswith(("beach.png", "grid.jpg")))


# -- the words child ------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The processes any thread of `pid` started, from /proc (the words child is started by a pool thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def words_children(pid: int) -> list[int]:
    def cmdline(child: int) -> str:
        try:
            return Path(f"/proc/{child}/cmdline").read_text()
        except OSError:
            return ""

    return [child for child in children(pid) if "wordschild" in cmdline(child)]


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its (new) parent has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def in_hand(child) -> int | None:  # noqa: ANN001 - a WordsChild
    """The pid of the words child while it has a picture in hand (asked, not answered), else None."""
    running = child._running
    return running.proc.pid if running is not None and running.ended is None and running.pending else None


def test_a_child_killed_or_hung_mid_batch_loses_nothing_and_one_that_ends_it_alone_is_read_without_words(
    tmp_path, make_config, embedder, caplog
):
    from imgd.daemon.service.library import open_library

    pics = tmp_path / "pics"
    pics.mkdir()
    for name, (lines, font, turn) in CORPUS.items():
        render(lines, font, turn=turn).save(pics / name)
    caplog.set_level(logging.INFO, logger="imgd")
    library = open_library(make_config(words_runtime="onnx", decode_threads=2), embedder)
    try:
        engine = library.engine
        engine.reconcile([str(pics)])
        child = engine.words_child

        def once(sig: int) -> threading.Thread:
            def send() -> None:
                os.kill(wait_until(lambda: in_hand(child), timeout=120, what="a picture in the child's hand"), sig)

            thread = threading.Thread(target=send)
            thread.start()
            return thread

        # Killed with two pictures in hand (the OOM killer, a segfault): both are read again, alone.
        killer = once(signal.SIGKILL)
        assert engine.read_words(limit=2) == 2
        killer.join()
        assert library.catalog.words_read_count() == (2, 2)  # both read, words found in both
        stopped = r"the words reader stopped \(killed by SIGKILL\) with [12] picture\(s\) in hand"
        assert re.search(stopped, caplog.text)

        # Hung (stopped): no answer within its timeout, killed, and what it held is read again.
        child.timeout = 3.0
        stopper = once(signal.SIGSTOP)
        started = time.monotonic()
        assert engine.read_words(limit=1) == 1
        stopper.join()
        assert library.catalog.words_read_count() == (3, 3) and time.monotonic() - started < 60
        assert "the words reader stopped (no answer in 3 s)" in caplog.text
        assert "recorded with no words" not in caplog.text

        # A picture that ends every child it is given (here: each is killed once it has it in hand) is recorded
        # as read with no words, in one line, and the pass goes on with a new child.
        hostile = threading.Event()

        def kill_every_child() -> None:
            while not hostile.is_set():
                pid = in_hand(child)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)

        killer = threading.Thread(target=kill_every_child)
        killer.start()
        try:
            assert engine.read_words(limit=1) == 1
        finally:
            hostile.set()
            killer.join()
        assert library.catalog.words_read_count() == (4, 3)
        assert len(re.findall(r"cannot read the words of .*: the words reader stopped on it alone", caplog.text)) == 1
        photo(5).save(pics / "later.png")
        render(["LATER RECEIPT"], SANS).save(pics / "later-receipt.png")
        engine.reconcile([str(pics)])
        assert engine.read_all_words() == 2 and library.catalog.words_read_count() == (6, 4)
        assert library.catalog.words_matching('"laterreceipt"')
        pid = child.pid
        assert pid is not None
    finally:
        library.close()
    assert child.pid is None
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped by close()


def test_the_daemon_reads_on_after_its_words_child_is_killed_mid_batch(tmp_path, tiny_model, words_library):
    pics, _ = words_library
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        assert daemon.proc is not None
        (first,) = wait_until(lambda: words_children(daemon.proc.pid), timeout=120, what="the words child")
        time.sleep(0.5)  # into its batch: the models load in ~2 s, the six pictures take seconds more
        os.kill(first, signal.SIGKILL)
        status = daemon.wait_idle(timeout=300)
        assert status["words"]["pending"] == 0 and status["words"]["found"] == 4  # nothing lost
        assert daemon.proc.poll() is None
        assert "the words reader stopped (killed by SIGKILL)" in daemon.log()
        assert "recorded with no words" not in daemon.log()
        assert words_children(daemon.proc.pid) not in ([], [first])  # another child read them


def test_the_daemon_ends_its_words_child_after_idle_unload_and_starts_one_for_new_pictures(tmp_path, tiny_model):
    pics = tmp_path / "pics"
    pics.mkdir()
    render(*CORPUS["receipt.png"][:2]).save(pics / "receipt.png")
    with DaemonProcess(tmp_path, tiny_model, [pics], IMGD_IDLE_UNLOAD="3") as daemon:
        daemon.start()
        assert daemon.proc is not None
        wait_until(lambda: words_children(daemon.proc.pid), timeout=120, what="the words child")
        assert daemon.wait_idle(timeout=300)["words"]["found"] == 1
        wait_until(lambda: not words_children(daemon.proc.pid), timeout=60, what="the words child to end")
        assert not children(daemon.proc.pid)  # reaped: no zombie left
        assert "ended the words reader after 3 s without pictures to read" in daemon.log()
        render(*CORPUS["ticket.png"][:2]).save(pics / "ticket.png")  # new pictures start a new child
        wait_until(lambda: daemon.status()["words"]["found"] == 2, timeout=300, what="the ticket's words")
        wait_until(lambda: not words_children(daemon.proc.pid), timeout=60, what="the second child to end")


def test_the_words_child_ends_with_the_process_that_started_it_however_that_ends(tmp_path):
    """No orphan: a parent killed with SIGKILL closes the child's stdin, and the child exits at once."""
    import subprocess
    import sys

    render(*CORPUS["receipt.png"][:2]).save(tmp_path / "receipt.png")
    script = (
        "import os, sys\n"
        "from imgd.daemon.ingest.wordschild import WordsChild\n"
        "child = WordsChild(1, None, 'onnx')\n"
        f"assert child.read_file({str(tmp_path / 'receipt.png')!r}, 10**8)\n"
        "print(child.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert Path(f"/proc/{pid}").exists() and children(parent.pid) == [pid]
        parent.kill()
        parent.wait(timeout=30)
        # Reparented to init (or a subreaper) once the parent died: gone, or a zombie its new parent reaps.
        wait_until(lambda: gone(pid), timeout=10, what="the orphaned words child to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
