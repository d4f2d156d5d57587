"""Reading the words in a picture (OCR): a cheap gate first, then detection, orientation and recognition.

RapidOCR runs the PP-OCRv4 models shipped inside its wheel on ONNX Runtime: a detector (DBNet) finds
the lines, a classifier turns upside-down lines the right way up, and a recogniser reads each line;
a line taller than wide (a picture turned 90 degrees) is turned before it is read. Most pictures
hold no words, and the detector at its own resolution costs 0.2-0.5 s, so a gate runs it first on the
picture shrunk to GATE_SIDE pixels (tens of ms): only a picture in which it finds a line is read in
full, and recognition runs only on the lines the full detection found.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from PIL import Image

from ..store.words import WordLine
from . import imaging

GATE_SIDE = 480  # the gate's longest side: a screenshot's small print still shows (benchmarks/bench_words.py)
READ_SIDE = 1600  # the full read's longest side: a page of text stays legible, a 24 MP photo costs no more
_THIRD_PARTY_LOGGERS = ("RapidOCR", "OrtInferSession")  # each adds its own stderr handler on import

log = logging.getLogger(__name__)


def _shrunk(image: Image.Image, side: int) -> np.ndarray:
    """The picture at most `side` pixels on its longest side, as the BGR array the models take."""
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _gate_input(image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """The detector's input for the gate: one resize to sides that are multiples of 32, normalised.

    Done here rather than by RapidOCR's preprocessing, which resizes with OpenCV after a float copy
    of the whole picture: three times the cost of the model itself at this size.
    """
    scale = min(1.0, GATE_SIDE / max(image.size))
    width = max(32, round(image.width * scale / 32) * 32)
    height = max(32, round(image.height * scale / 32) * 32)
    small = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    array = np.asarray(small, dtype=np.float32)[:, :, ::-1]  # BGR, as the models were trained
    batch = (array * (1 / 127.5) - 1.0).transpose(2, 0, 1)[None]  # mean 0.5, std 0.5
    return np.ascontiguousarray(batch), (height, width)


def read_file(reader: WordReader, path: str, data: bytes, max_pixels: int) -> list[WordLine]:
    """The words in a picture file: decoded small for the gate (a JPEG at a fraction of its size), and
    again at READ_SIDE only when the gate found text."""
    image, size = imaging.decode(path, data, max_pixels, GATE_SIDE)
    if not reader.has_words(image):
        return []
    if image.size != size and max(image.size) < READ_SIDE:  # drafted small: decode the text legibly
        image = imaging.decode(path, data, max_pixels, READ_SIDE)[0]
    return reader.read(image)


class WordReader:
    """The OCR models, loaded on first use (about 1 s, 15 MB), shared by any number of threads.

    Each model runs on one core (`threads` = 1): a picture at a time per thread, on as many threads as
    there are cores, does more per CPU second than one picture spread over all cores (at the gate's
    size the model is too small to split well; benchmarks/bench_words.py). RapidOCR's only per-call
    state, its detector's preprocessing, is set to the same value by every call.
    """

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._ocr = None
        self._lock = threading.Lock()  # one load, however many threads ask first

    def _models(self):  # noqa: ANN202 - RapidOCR has no type hints
        with self._lock:
            if self._ocr is None:
                from rapidocr_onnxruntime import RapidOCR

                options = {"intra_op_num_threads": self._threads} if self._threads > 0 else {}
                self._ocr = RapidOCR(**options)
                for name in _THIRD_PARTY_LOGGERS:  # the engine never prints: their records go to imgd's log
                    logging.getLogger(name).handlers.clear()
                    logging.getLogger(name).setLevel(logging.WARNING)
            return self._ocr

    def has_words(self, image: Image.Image) -> bool:
        """The gate: does the detector, on the picture shrunk to GATE_SIDE, find any line of text?"""
        batch, shape = _gate_input(image)
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
