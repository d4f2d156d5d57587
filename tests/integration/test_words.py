"""Words in pictures, read by the real OCR models (RapidOCR's PP-OCRv4) from pictures rendered with Debian's fonts.

OCR costs about a second per picture with words here, so the corpus is a handful of pictures read once
per session (`imgd index`), and every test asks it questions. The random tiny CLIP ranks by nothing
in particular, so wherever a receipt must come first the words alone carry it.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_image
from daemonkit import DaemonProcess
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
