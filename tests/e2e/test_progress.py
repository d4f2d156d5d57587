"""What `imgd index` draws on a real terminal (a pty): the loading line, the bar, log lines above it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import write_image

IMGD = [sys.executable, "-m", "imgd.cli.main"]
BAR = re.compile(r"\d+/\d+ \[")  # tqdm's "3/15 [00:01<00:02, 4.5img/s]"


def run_in_terminal(args: list[str], columns: int, rows: int, timeout: float = 180) -> str:
    """Run imgd with stdin, stdout and stderr on a pty of the given size; return all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen([*IMGD, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_index_on_a_terminal(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    for i in range(12):
        write_image(pics / f"img{i:02}.jpg", seed=i)
    for i in range(3):
        (pics / f"broken{i}.png").write_bytes(b"<html>not a png</html>")
    args = ["--state-dir", str(tmp_path / "state"), "--model", str(tiny_model), "--device", "cpu", "index", str(pics)]

    first = run_in_terminal(args, columns=100, rows=30)
    for i in range(12, 17):
        write_image(pics / f"img{i:02}.jpg", seed=i)
    zero_size = run_in_terminal(args, columns=0, rows=0)
    nothing_to_do = run_in_terminal(args, columns=100, rows=30)
    quiet = run_in_terminal([*args, "-q"], columns=100, rows=30)

    # One line while torch and the model load, which takes seconds.
    assert first.count(f"imgd: loading model {tiny_model}...") == 1, first
    # A bar, and the skip lines written above it, each on a line of its own.
    assert BAR.search(first), first
    assert first.count("imgd: skipping") == 3, first
    assert not re.search(r"[^\r\n]imgd: skipping", first), first
    assert "12 added, 0 updated, 0 moved, 0 removed, 3 failed, 0 unchanged" in first
    # A terminal that says it is 0x0 still gets a bar.
    assert BAR.search(zero_size) and "5 added" in zero_size, zero_size
    # Nothing to do: no bar at all, not even an empty one.
    assert "img/s" not in nothing_to_do and not BAR.search(nothing_to_do), nothing_to_do
    assert "0 added, 0 updated, 0 moved, 0 removed, 0 failed, 20 unchanged" in nothing_to_do
    # -q: neither the loading line, nor a bar, nor the summary.
    assert quiet == "", quiet
