"""The words models on OpenVINO: the same boxes and words as ONNX Runtime, chosen by measuring, with a fallback.

Real models throughout (RapidOCR's PP-OCRv4 ONNX files, on ONNX Runtime and compiled by OpenVINO).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from imgd.daemon.ingest import wordsruntime
from imgd.daemon.ingest.words import WordReader, _gate_input, _gate_picture
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("openvino")
pytestmark = pytest.mark.slow

SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
RECEIPT = ["HARDWARE STORE", "Hammer 12.99", "Nails 4.50", "Screws 3.25", "TOTAL 20.74", "Paid by card"]


def letters(lines: list[str]) -> str:
    """The lines' characters without spaces: the recogniser often reads 'HARDWARE STORE' as one word."""
    return "".join(lines).replace(" ", "")


def receipt(turn: float = 0) -> Image.Image:
    """A receipt of six lines, turned slightly, as the words tests render them."""
    page = Image.new("RGB", (720, 560), (245, 242, 235))
    draw = ImageDraw.Draw(page)
    face = ImageFont.truetype(str(SANS), 28)
    for row, line in enumerate(RECEIPT):
        draw.text((50, 40 + row * 80), line, fill=(25, 25, 25), font=face)
    return page.rotate(turn, expand=True, fillcolor=(245, 242, 235), resample=Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def readers() -> dict[str, WordReader]:
    """One reader forced onto each runtime, its models loaded."""
    found = {name: WordReader(threads=1, runtime=name) for name in ("onnx", "openvino")}
    for reader in found.values():
        reader._models()
    return found


def test_openvino_finds_the_same_boxes_and_reads_the_receipt_word_for_word(readers):
    assert readers["openvino"].runtimes == {"detector": "openvino", "recogniser": "openvino"}
    assert readers["onnx"].runtimes == {"detector": "onnx", "recogniser": "onnx"}
    assert isinstance(readers["openvino"]._models().text_det.infer, wordsruntime.OvModel)
    picture = receipt(turn=2)
    batch, shape = _gate_input(_gate_picture(picture))
    boxes = {}
    for name, reader in readers.items():
        detector = reader._models().text_det
        boxes[name] = detector.postprocess_op(detector.infer(batch)[0], shape)[0]
    assert len(boxes["onnx"]) == len(RECEIPT)
    assert np.abs(boxes["openvino"] - boxes["onnx"]).max() <= 1  # the same boxes, to a pixel
    read = {name: [line.text for line in reader.read(picture)] for name, reader in readers.items()}
    assert read["openvino"] == read["onnx"]
    assert letters(read["openvino"]) == letters(RECEIPT)  # word for word, every character


def test_each_thread_runs_its_own_infer_request(readers, caplog):
    from concurrent.futures import ThreadPoolExecutor

    caplog.set_level(logging.WARNING, logger="imgd")
    reader = readers["openvino"]
    pictures = [receipt(turn=turn) for turn in (0, 1, 2, 3)] * 2
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: [line.text for line in reader.read(p)], pictures))
    assert all(letters(r) == letters(RECEIPT) for r in results)
    # Read through OpenVINO all along: a request shared by threads fails ("busy") and falls back.
    assert not reader._models().text_det.infer._failed and not reader._models().text_rec.session._failed
    assert "failed running" not in caplog.text


def test_the_choice_is_measured_once_recorded_and_then_served_without_timing(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="imgd")
    reader = WordReader(threads=1, state_dir=tmp_path)
    reader._models()
    (record_file,) = (tmp_path / "models").glob("words-runtime-*.json")
    record = json.loads(record_file.read_text())
    assert record["key"] == wordsruntime.machine_key(1)
    for model in ("detector", "recogniser"):
        timed = record["results"][model]
        assert timed["onnx"] > 0 and timed["openvino"] > 0  # both runtimes timed on this machine
        faster = "openvino" if timed["openvino"] * wordsruntime.MARGIN <= timed["onnx"] else "onnx"
        assert record["pick"][model] == faster == reader.runtimes[model]
    assert sum("words models:" in r.getMessage() for r in caplog.records) == 1  # one log line

    def timed_again(*_args: object) -> None:
        raise AssertionError("the recorded choice is timed again")

    monkeypatch.setattr(wordsruntime, "_fastest_ms", timed_again)
    again = WordReader(threads=1, state_dir=tmp_path)
    again._models()
    assert again.runtimes == reader.runtimes
    # The record decides: one that says ONNX Runtime keeps OpenVINO out without compiling it.
    record["pick"] = {"detector": "onnx", "recogniser": "onnx"}
    record_file.write_text(json.dumps(record))
    monkeypatch.setattr(wordsruntime, "_compile", timed_again)
    kept = WordReader(threads=1, state_dir=tmp_path)
    kept._models()
    assert kept.runtimes == {"detector": "onnx", "recogniser": "onnx"}


def test_openvino_slower_on_the_probe_leaves_the_model_on_onnx_runtime(tmp_path, monkeypatch):
    # The timing alone is replaced (a machine where OpenVINO is slower); the models and the check are real.
    monkeypatch.setattr(wordsruntime, "_fastest_ms", lambda runs, batch: {"onnx": 40.0, "openvino": 38.0})
    reader = WordReader(threads=1, state_dir=tmp_path)
    reader._models()
    assert reader.runtimes == {"detector": "onnx", "recogniser": "onnx"}  # 5% faster is within the noise
    assert not isinstance(reader._models().text_det.infer, wordsruntime.OvModel)


def test_a_model_whose_outputs_disagree_with_onnx_runtime_is_refused(tmp_path, monkeypatch):
    # Each model's file swapped for the other's, compiled by the real OpenVINO: the outputs disagree.
    compile_model = wordsruntime._compile
    swap = {"ch_PP-OCRv4_det_infer.onnx": "ch_PP-OCRv4_rec_infer.onnx"}
    swap.update({b: a for a, b in swap.items()})
    monkeypatch.setattr(wordsruntime, "_compile", lambda folder, file, *rest: compile_model(folder, swap[file], *rest))
    reader = WordReader(threads=1, state_dir=tmp_path, runtime="openvino")
    lines = reader.read(receipt())
    assert reader.runtimes == {"detector": "onnx", "recogniser": "onnx"}
    assert letters([line.text for line in lines]) == letters(RECEIPT)


def test_openvino_failing_to_compile_leaves_onnx_runtime_reading(tmp_path, monkeypatch, caplog):
    def broken(*_args: object) -> None:
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp: cannot compile")

    monkeypatch.setattr(wordsruntime, "_compile", broken)
    caplog.set_level(logging.INFO, logger="imgd")
    reader = WordReader(threads=1, state_dir=tmp_path)
    lines = reader.read(receipt())
    assert reader.runtimes == {"detector": "onnx", "recogniser": "onnx"}
    assert letters([line.text for line in lines]) == letters(RECEIPT)
    failures = [r.getMessage() for r in caplog.records if "OpenVINO cannot run" in r.getMessage()]
    assert len(failures) == 2 and "cannot compile" in failures[0]  # one line per model
    assert not list((tmp_path / "models").glob("words-runtime-*.json"))  # a failure is tried again next load


def test_openvino_failing_at_a_call_hands_the_model_back_to_onnx_runtime(readers, caplog):
    class Broken:
        def create_infer_request(self) -> None:
            raise RuntimeError("device lost")

    onnx = readers["onnx"]._models().text_det.infer
    model = wordsruntime.OvModel(Broken(), onnx, "detector")
    batch, _ = _gate_input(_gate_picture(receipt()))
    caplog.set_level(logging.WARNING, logger="imgd")
    for _ in range(3):
        assert np.array_equal(model(batch)[0], onnx(batch)[0])
    assert sum("failed running the words detector" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_the_words_runtime_key_reaches_the_pass_and_its_child_reads_on_it(tmp_path: Path, runtime: str) -> None:
    # `[words] runtime` (IMGD_WORDS_RUNTIME) names the runtime and skips the measurement; the tests set onnx.
    from imgd.daemon import config as config_module
    from imgd.daemon.ingest.wordspass import WordsPass

    config = config_module.load(None, {"state_dir": tmp_path}, env={"IMGD_WORDS_RUNTIME": runtime})
    assert config.words_runtime == runtime
    words_pass = WordsPass.__new__(WordsPass)
    words_pass.config = config
    words_pass.should_stop = lambda: False
    receipt().save(tmp_path / "receipt.png")
    child = words_pass.words_child
    try:
        lines = child.read_file(str(tmp_path / "receipt.png"), 10**8)
        assert child.runtimes == {"detector": runtime, "recogniser": runtime}  # as loaded in the child
        assert letters([line.text for line in lines]) == letters(RECEIPT)
    finally:
        words_pass.close_words_child()


def test_the_child_measures_once_keeps_the_choice_in_the_state_folder_and_the_next_child_serves_it(tmp_path, caplog):
    from imgd.daemon.ingest.wordschild import WordsChild

    caplog.set_level(logging.INFO, logger="imgd")
    receipt().save(tmp_path / "receipt.png")
    first = WordsChild(1, tmp_path, "auto")
    try:
        first.read_file(str(tmp_path / "receipt.png"), 10**8)
    finally:
        first.close()
    (record_file,) = (tmp_path / "models").glob("words-runtime-*.json")  # written by the child
    record = json.loads(record_file.read_text())
    assert record["pick"] == first.runtimes
    assert all("onnx" in timed for timed in record["results"].values())  # measured: both runtimes timed
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("words models:")]
    assert len(logged) == 1 and " ms" in logged[0]  # the child's log line, logged by the parent
    record_file.write_text(json.dumps({**record, "results": {}}))  # a measurement again would fill these in
    second = WordsChild(1, tmp_path, "auto")
    try:
        second.read_file(str(tmp_path / "receipt.png"), 10**8)
    finally:
        second.close()
    assert second.runtimes == first.runtimes and json.loads(record_file.read_text())["results"] == {}
