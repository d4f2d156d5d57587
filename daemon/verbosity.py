"""Log levels: DETAIL (per-file decisions) between INFO and DEBUG, and the ladder -v/-q climb.

The daemon logs at INFO by default (one line per file indexed, moved, removed or skipped); -v
adds DETAIL (each file's decision: unchanged, known content, excluded, still settling), -vv adds
DEBUG (every filesystem event, each batch, timings). One-shot commands start at WARNING.
"""

from __future__ import annotations

import logging

DETAIL = 15
logging.addLevelName(DETAIL, "DETAIL")

LADDER = (logging.ERROR, logging.WARNING, logging.INFO, DETAIL, logging.DEBUG)


def level_for(verbosity: int, base: int = logging.WARNING) -> int:
    """The level `verbosity` steps (+ for -v, - for -q) away from `base`; errors always show."""
    step = LADDER.index(base) + verbosity
    return LADDER[max(0, min(len(LADDER) - 1, step))]
