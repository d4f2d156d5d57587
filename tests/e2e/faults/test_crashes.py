"""SIGKILL at random moments: during a large catch-up, during a burst of changes, while saving the index.

After every kill the daemon is simply started again, with no repair step; once it settles nothing
may be lost, duplicated or stale. CI kills 5 + 5 times at random and 2 times mid-save;
IMGD_SOAK_KILLS=N kills N times in each phase, and benchmarks/soak.py runs 50+ kills in all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faultkit import KILLS, crash_during_catchup_and_burst, crash_during_persist

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("IMGD_FAULT_SEED", "7"))


def test_sigkill_during_catchup_and_a_burst_loses_and_duplicates_nothing(tmp_path: Path, tiny_model: Path) -> None:
    figures = crash_during_catchup_and_burst(
        tmp_path, tiny_model, catchup_kills=KILLS or 5, burst_kills=KILLS or 5, files=600, seed=SEED
    )
    print(figures)
    assert figures["kills"] == 2 * (KILLS or 5)


def test_sigkill_while_the_ivf_index_is_built_and_swapped_in_loses_nothing(tmp_path: Path, tiny_model: Path) -> None:
    # An exact limit of 150 makes the daemon switch to IVF early in the catch-up and re-cluster at
    # 600: kills land before, during and after background builds, and restarts load saved IVF files.
    figures = crash_during_catchup_and_burst(
        tmp_path, tiny_model, catchup_kills=3, burst_kills=3, files=600, seed=SEED + 1, IMGD_EXACT_LIMIT="150"
    )
    print(figures)
    assert figures["kills"] == 6 and figures["ivf_builds"] >= 1


def test_sigkill_while_saving_the_index_keeps_a_loadable_index(tmp_path: Path, tiny_model: Path) -> None:
    figures = crash_during_persist(tmp_path, tiny_model, kills=KILLS or 2, seed=SEED)
    print(figures)
    assert figures["kills_mid_save"] >= 1, "no kill landed while the temporary index file existed"
