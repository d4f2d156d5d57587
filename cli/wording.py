"""The command line's names for request fields: protocol errors name fields, `imgd` says its flags."""

from __future__ import annotations

from imgd.daemon.errors import ImgdError
from imgd.daemon.protocol import RequestError

FLAGS = {
    "after": "--after",
    "before": "--before",
    "camera": "--camera",
    "folders": "--in",  # search and similar: only images under these folders
    "within": "--in",  # dupes: only groups with an image under these folders
    "types": "--type",
    "min_size": "--min-size",
    "videos": "--videos/--no-videos",
    "min_duration": "--min-duration",
    "max_duration": "--max-duration",
    "min_score": "--min-score",
    "sort": "--sort",
    "k": "k (-k/--top-k)",
    "threshold": "--threshold",
    "burst_gap": "--burst-gap",
    "near": "--near",
    "within_km": "--within",
    "country": "--country",
    "words": "--words",
    "words_match": "--words-match",
}


def message(exc: ImgdError) -> str:
    """An error's one line as the command line says it: request fields named by their flags."""
    return exc.worded(FLAGS) if isinstance(exc, RequestError) else str(exc)
