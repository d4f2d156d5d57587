"""-v and -vv: each count of -v is one step down the ladder of log levels."""

from __future__ import annotations

import logging

from imgd.daemon.verbosity import DETAIL, level_for


def test_each_v_is_one_step_down_the_ladder():
    assert [level_for(v, logging.INFO) for v in (-2, -1, 0, 1, 2, 3)] == [
        logging.ERROR,
        logging.WARNING,
        logging.INFO,
        DETAIL,
        logging.DEBUG,
        logging.DEBUG,
    ]
    assert [level_for(v) for v in (-1, 0, 1, 2, 3)] == [
        logging.ERROR,
        logging.WARNING,
        logging.INFO,
        DETAIL,
        logging.DEBUG,
    ]
    assert logging.getLevelName(DETAIL) == "DETAIL"
