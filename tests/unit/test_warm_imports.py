"""What a warm `imgd search` imports: only its own command's module and no image decoding (issue 22's start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from imgd.cli.main import cli
import click
ctx = click.Context(cli)
cli.get_command(ctx, "search")
import imgd.daemon.search.query, imgd.daemon.service.handlers, imgd.daemon.service.library
import imgd.daemon.embedders.onnx, imgd.daemon.embedders.choice  # what a text search loads the model with
print(json.dumps(sorted(sys.modules)))
"""


def test_a_search_imports_neither_the_other_commands_nor_the_image_decoders() -> None:
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, check=True).stdout))
    assert "imgd.cli.search" in loaded
    assert not loaded & {"imgd.cli.alert", "imgd.cli.index", "imgd.cli.web", "imgd.cli.service", "imgd.cli.dupes"}
    assert not loaded & {"imgd.daemon.ingest.imaging", "imgd.daemon.ingest.video", "pillow_heif", "rawpy", "av"}
    assert "PIL" not in loaded  # a text needs no picture library (~10 ms)


def imgd(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh process: nothing imported before, as for a user."""
    return subprocess.run([sys.executable, "-m", "imgd.cli.main", *args], capture_output=True, text=True)


def test_help_lists_every_command_and_a_typo_is_offered_the_near_ones() -> None:
    from imgd.cli.main import COMMANDS

    listed = [line.split()[0] for line in imgd("--help").stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(COMMANDS)
    typo = imgd("serch")
    assert typo.returncode == 2
    assert "No such command 'serch'. (Did you mean one of: 'search', 'service'?)" in typo.stderr


def test_the_version_read_from_the_dist_info_name_is_importlib_metadatas() -> None:
    import importlib.metadata

    from imgd.daemon.embedders.runtime import version

    for package in ("onnxruntime", "openvino", "numpy", "faiss-cpu", "click"):
        assert version(package) == importlib.metadata.version(package)
    assert version("no-such-package-here") is None
