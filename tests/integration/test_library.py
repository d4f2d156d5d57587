"""library: one writer per state folder, whoever it is (`imgd index`, `imgd run`)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from conftest import write_image
from imgd.cli.main import cli
from imgd.daemon.errors import CatalogBusy
from imgd.daemon.service.library import open_library


def test_a_second_writer_on_one_state_folder_is_refused_until_the_first_closes(make_config, embedder, tmp_path):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    first = open_library(make_config(), embedder)
    try:
        with pytest.raises(CatalogBusy, match=f"pid {os.getpid()}"):
            open_library(make_config(), embedder)
        first.engine.reconcile([pics])  # the holder still writes
        assert first.catalog.counts()["files"] == 1
    finally:
        first.close()
    again = open_library(make_config(), embedder)  # released on close
    again.close()


def test_imgd_index_while_another_writer_holds_the_catalog_stops_with_one_line(
    make_config, embedder, tmp_path, state_dir, tiny_model
):
    pics = tmp_path / "pics"
    write_image(pics / "a.jpg", seed=1)
    holder = open_library(make_config(), embedder)
    try:
        result = CliRunner().invoke(
            cli, ["--state-dir", str(state_dir), "--model", str(tiny_model), "--device", "cpu", "index", str(pics)]
        )
        assert holder.catalog.counts()["files"] == 0, "the refused writer wrote nothing"
    finally:
        holder.close()
    assert result.exit_code == 2
    assert "is being written by imgd" in result.stderr and "Traceback" not in result.output
