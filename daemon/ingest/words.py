"""Reading the words in a picture (OCR): a cheap gate first, then detection, orientation and recognition.

RapidOCR runs the PP-OCRv4 models shipped inside its wheel on ONNX Runtime: a detector (DBNet) finds
the lines, a classifier turns upside-down lines the right way up, and a recogniser reads each line;
a line taller than wide (a picture turned 90 degrees) is turned before it is read. Most pictures
hold no words, and the detector at its own resolution costs 0.2-0.5 s, so a gate runs it first on the
picture shrunk to GATE_SIDE pixels (tens of ms): only a picture in which it finds a line is read in
full, and recognition runs only on the lines the full detection found. Before the detector, a stroke
test on the same small picture (about 2 ms) skips pictures with neither thin high-contrast lines (small
print) nor sharp edges (large letters): skies, soft or blurred scenes, gradients.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..store.words import WordLine
from . import imaging
from .wordsruntime import choose

GATE_SIDE = 480  # the gate's longest side: a screenshot's small print still shows (benchmarks/bench_words.py)
# The stroke test: a pixel is on a stroke when it is darker (or lighter) by more than STROKE_CONTRAST
# than both pixels STROKE_REACH away across it, horizontally or vertically (letters 1-3 px wide at the
# gate's size); a picture with words at the gate's size has at least MIN_STROKES of its pixels on
# strokes (the faintest rendered sign in bench_words.py: 0.08%; smooth photo-like pictures: <= 0.02%).
# Letters too large for that (strokes wider than 3 px at the gate's size: a poster's headline) have
# sharp edges instead: at least MIN_EDGES of the pixels differ by more than EDGE_CONTRAST from the next
# one (a 220 px bold headline on 1600 px: 0.9%; soft photo-like pictures: <= 0.02%).
STROKE_REACH = 2
STROKE_CONTRAST = 24
MIN_STROKES = 0.00035
EDGE_CONTRAST = 48
MIN_EDGES = 0.001
READ_SIDE = 1600  # the full read's longest side: a page of text stays legible, a 24 MP photo costs no more
_THIRD_PARTY_LOGGERS = ("RapidOCR", "OrtInferSession")  # each adds its own stderr handler on import

log = logging.getLogger(__name__)


def _shrunk(image: Image.Image, side: int) -> np.ndarray:
    """The picture at most `side` pixels on its longest side, as the BGR array the models take."""
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _gate_picture(image: Image.Image) -> Image.Image:
    """The picture for the gate: one resize to at most GATE_SIDE, both sides multiples of 32 (the detector's)."""
    scale = min(1.0, GATE_SIDE / max(image.size))
    width = max(32, round(image.width * scale / 32) * 32)
    height = max(32, round(image.height * scale / 32) * 32)
    return image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)


def _gate_input(small: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """The detector's input from the gate's picture: BGR planes, normalised.

    Done here rather than by RapidOCR's preprocessing, which resizes with OpenCV after a float copy
    of the whole picture: three times the cost of the model itself at this size.
    """
    array = np.asarray(small, dtype=np.float32)[:, :, ::-1]  # BGR, as the models were trained
    batch = (array * (1 / 127.5) - 1.0).transpose(2, 0, 1)[None]  # mean 0.5, std 0.5
    return np.ascontiguousarray(batch), (small.height, small.width)


def _gate_detector_input(image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """The gate's detector input for a picture: shrunk, then normalised."""
    return _gate_input(_gate_picture(image))


def has_strokes(small: Image.Image) -> bool:
    """The stroke test: does the picture have enough thin high-contrast lines, or sharp edges, to hold words?"""
    grey = np.asarray(small.convert("L"), dtype=np.int16)
    d = STROKE_REACH
    if min(grey.shape) <= 2 * d:
        return False
    across = np.abs(np.diff(grey, axis=1))[:-1] > EDGE_CONTRAST
    across |= np.abs(np.diff(grey, axis=0))[:, :-1] > EDGE_CONTRAST
    if int(across.sum()) >= MIN_EDGES * grey.size:
        return True
    middle = grey[d:-d, d:-d]
    strokes = np.zeros(middle.shape, dtype=bool)
    for before, after in ((grey[d:-d, : -2 * d], grey[d:-d, 2 * d :]), (grey[: -2 * d, d:-d], grey[2 * d :, d:-d])):
        dark = np.minimum(before, after) - middle  # a dark line on light ground, or a light one on dark
        light = middle - np.maximum(before, after)
        strokes |= np.maximum(dark, light) > STROKE_CONTRAST
    return int(strokes.sum()) >= MIN_STROKES * grey.size


def gate_decode(path: str, data: bytes, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """The picture decoded for the gate, with its full size: a JPEG drafted down as far as GATE_SIDE on
    its longest side allows (a 1024x768 one at 512x384, a 12 MP one at 1/8), not by its shortest side."""
    shortest = GATE_SIDE
    try:
        width, height = Image.open(io.BytesIO(data)).size  # the header only
        shortest = max(1, math.ceil(GATE_SIDE * min(width, height) / max(width, height, 1)))
    except Exception:  # noqa: BLE001, S110 - not for Pillow (RAW): imaging.decode says what is wrong, if anything
        pass
    return imaging.decode(path, data, max_pixels, shortest)


def read_file(reader: WordReader, path: str, data: bytes, max_pixels: int) -> list[WordLine]:
    """The words in a picture file: decoded small for the gate (a JPEG at a fraction of its size), and
    again at READ_SIDE only when the gate found text."""
    image, size = gate_decode(path, data, max_pixels)
    if not reader.has_words(image):
        return []
    if image.size != size and max(image.size) < READ_SIDE:  # drafted small: decode the text legibly
        image = imaging.decode(path, data, max_pixels, READ_SIDE)[0]
    return reader.read(image)


def video_words(reader: WordReader, path: str, times: list[float]) -> list[WordLine]:
    """The words in a video's frames at `times` (decoded again there), each line once, at its best confidence."""
    from . import video

    lines: dict[str, WordLine] = {}
    for at in times:
        image = video.frame_at(path, at)
        if not reader.has_words(image):
            continue
        for line in reader.read(image):
            if line.text not in lines or line.confidence > lines[line.text].confidence:
                lines[line.text] = line
    return list(lines.values())


class WordReader:
    """The OCR models, loaded on first use (about 1 s, 15 MB), shared by any number of threads.

    Each model runs on one core (`threads` = 1): a picture at a time per thread, on as many threads as
    there are cores, does more per CPU second than one picture spread over all cores (at the gate's
    size the model is too small to split well; benchmarks/bench_words.py). RapidOCR's only per-call
    state, its detector's preprocessing, is set to the same value by every call. The detector and the
    recogniser run on OpenVINO instead where it measured faster on this machine (wordsruntime.py):
    `runtime` auto (measured once, the choice kept in `state_dir`), onnx or openvino.
    """

    def __init__(self, threads: int = 1, state_dir: Path | None = None, runtime: str = "auto") -> None:
        self._threads = threads
        self._state_dir = state_dir
        self._runtime = runtime
        self._ocr = None
        self.runtimes: dict[str, str] = {}  # each model's runtime, once loaded
        self._lock = threading.Lock()  # one load, however many threads ask first

    def _models(self):  # noqa: ANN202 - RapidOCR has no type hints
        with self._lock:
            if self._ocr is None:
                from rapidocr_onnxruntime import RapidOCR

                options = {"intra_op_num_threads": self._threads} if self._threads > 0 else {}
                ocr = RapidOCR(**options)
                for name in _THIRD_PARTY_LOGGERS:  # the engine never prints: their records go to imgd's log
                    logging.getLogger(name).handlers.clear()
                    logging.getLogger(name).setLevel(logging.WARNING)
                self.runtimes = choose(ocr, _gate_detector_input, self._threads, self._state_dir, self._runtime)
                self._ocr = ocr
            return self._ocr

    def has_words(self, image: Image.Image) -> bool:
        """The gate: on the picture shrunk to GATE_SIDE, the stroke test, then does the detector find a line?"""
        small = _gate_picture(image)
        if not has_strokes(small):
            return False
        batch, shape = _gate_input(small)
        detector = self._models().text_det
        boxes, _ = detector.postprocess_op(detector.infer(batch)[0], shape)
        return len(boxes) > 0

    def read(self, image: Image.Image) -> list[WordLine]:
        """Every line of words found in the picture, with its confidence and box."""
        array = _shrunk(image, READ_SIDE)
        height, width = array.shape[:2]
        found, _ = self._models()(array)
        lines = []
        for points, text, confidence in found or []:
            text = str(text).strip()
            if not text:
                continue
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            box = (
                max(0.0, min(xs) / width),
                max(0.0, min(ys) / height),
                min(1.0, max(xs) / width),
                min(1.0, max(ys) / height),
            )
            lines.append(WordLine(text, float(confidence), box))
        return lines
