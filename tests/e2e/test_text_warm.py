"""`imgd run` opens the text model beside the index load, before any search asks for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import DaemonProcess, wait_until
from imgd.daemon.api import client


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_text_model_is_opened_at_start_without_a_search(tmp_path: Path, tiny_model: Path) -> None:
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=7)
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.flags = ["-vv"]  # the "text model ready" line is a timing: -vv
        daemon.start(wait=False)
        # No search is sent: the start-up itself opens the text tower (2-3 s of ONNX Runtime's set-up at
        # ViT-B/32, which the first search paid after the index load before).
        wait_until(lambda: "text model ready in" in daemon.log(), timeout=60, what="the text model to open")
        wait_until(daemon.answers, timeout=60, what="the daemon to answer on its socket")
        assert daemon.log().count("text model ready in") == 1
        daemon.wait_idle(timeout=120)
        assert [hit["path"] for hit in client.search(daemon.socket, 1, text="a photo")] == [str(pics / "a.jpg")]
        assert daemon.stop() == 0
