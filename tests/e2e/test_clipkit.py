"""tests/clipkit.py as the README's offline path runs it: one line saying what was built and where."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLIPKIT = Path(__file__).resolve().parents[1] / "clipkit.py"


@pytest.mark.slow
def test_building_the_offline_model_prints_one_line(tmp_path: Path) -> None:
    out = tmp_path / "models" / "tiny-clip"

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(CLIPKIT), str(out)], capture_output=True, text=True, timeout=300, check=False
        )

    first, again = build(), build()

    assert first.returncode == 0, first.stderr
    assert first.stdout + first.stderr == (
        f"built a random-weight tiny CLIP model in {out} (for trying imgd offline; no meaningful results)\n"
    )
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert again.stdout + again.stderr == f"a model is already in {out}; kept it\n"
