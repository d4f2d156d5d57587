"""The whole library through a real daemon: RAW, AVIF and JPEG XL found by meaning, pairs listed once, bad
RAWs in `imgd failed` while the daemon goes on answering, the same answers directly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemonkit import DaemonProcess, wait_until
from imgd.cli.main import cli
from imgd.daemon.ingest import imaging  # noqa: F401 - registers HEIF with Pillow for the writes below
from rawkit import bomb_bytes, write_dng
from shapekit import shape_image

pytestmark = pytest.mark.slow


def imgd(daemon: DaemonProcess, *args: str) -> tuple[int, str, str]:
    env = {key: daemon.env[key] for key in ("XDG_RUNTIME_DIR", "IMGD_MODEL", "IMGD_DEVICE", "IMGD_DUPES_THRESHOLD")}
    result = CliRunner().invoke(cli, ["--state-dir", str(daemon.state_dir), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def both(daemon: DaemonProcess, *args: str, code: int = 0) -> str:
    """The command's output through the daemon, checked identical to the direct answer."""
    answer = imgd(daemon, *args)
    assert answer[0] == code, answer[2]
    assert imgd(daemon, *args, "--direct") == answer
    through = answer[1]
    return through


def test_raws_pairs_and_bad_inputs_through_the_daemon_and_directly(tmp_path: Path, shapes_model: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    size = (320, 240)
    write_dng(pics / "circle.dng", shape_image("red", "circle", seed=8, size=size))
    shape_image("green", "triangle", seed=8, size=size).save(pics / "triangle.avif", "AVIF")
    # A RAW+JPEG pair (the RAW shows something else: were it embedded, "a purple star" would find it).
    shape_image("blue", "square", seed=8, size=size).save(pics / "IMG_0001.JPG", "JPEG")
    write_dng(pics / "IMG_0001.CR2", shape_image("purple", "star", seed=8, size=size))
    # A live photo: the still and its video.
    shape_image("yellow", "cross", seed=8, size=size).save(pics / "IMG_0002.HEIC", "HEIF")
    (pics / "IMG_0002.MOV").write_bytes(b"\x00\x00\x00\x14ftypqt  the video half")
    # A JPEG that cannot be decoded beside a good RAW: the RAW is searchable on its own.
    shape_image("blue", "square", seed=9, size=size).save(pics / "IMG_0003.JPG", "JPEG")
    (pics / "IMG_0003.JPG").write_bytes((pics / "IMG_0003.JPG").read_bytes()[:300])
    write_dng(pics / "IMG_0003.DNG", shape_image("green", "star", seed=8, size=size))
    # A still with both a RAW and a live video: both named.
    shape_image("blue", "triangle", seed=8, size=size).save(pics / "IMG_0004.HEIC", "HEIF")
    write_dng(pics / "IMG_0004.DNG", shape_image("purple", "circle", seed=8, size=size))
    (pics / "IMG_0004.MOV").write_bytes(b"\x00\x00\x00\x14ftypqt  the video half")
    (pics / "garbage.nef").write_bytes(b"no raw here " * 40)
    (pics / "empty.dng").write_bytes(b"")
    (pics / "bomb.dng").write_bytes(bomb_bytes(60000))

    with DaemonProcess(tmp_path, shapes_model, [pics]) as daemon:
        daemon.start()
        status = daemon.wait_idle()
        # circle, triangle, the pair's JPEG, the live photos' stills, the RAW beside a broken JPEG
        assert status["counts"]["files"] == 6
        assert status["counts"]["failed"] == 4

        rows = json.loads(both(daemon, "search", "--json", "-k", "10", "a red circle"))
        assert Path(rows[0]["path"]).name == "circle.dng" and rows[0]["type"] == "dng"
        paths = [row["path"] for row in rows]
        assert len(paths) == len(set(paths)) == 6
        siblings = {Path(row["path"]).name: Path(row["sibling"]).name for row in rows if "sibling" in row}
        assert siblings == {
            "IMG_0001.JPG": "IMG_0001.CR2",
            "IMG_0002.HEIC": "IMG_0002.MOV",
            "IMG_0004.HEIC": "IMG_0004.DNG",
        }
        every = {Path(row["path"]).name: [Path(p).name for p in row["siblings"]] for row in rows if "siblings" in row}
        assert every["IMG_0004.HEIC"] == ["IMG_0004.DNG", "IMG_0004.MOV"] and every["IMG_0001.JPG"] == ["IMG_0001.CR2"]
        broken = json.loads(both(daemon, "search", "--json", "-k", "1", "a green star"))
        assert [(Path(r["path"]).name, "sibling" in r) for r in broken] == [("IMG_0003.DNG", False)]
        assert Path(json.loads(both(daemon, "search", "--json", "-k", "1", "a purple star"))[0]["path"]).name != (
            "IMG_0001.CR2"
        )
        lines = both(daemon, "search", "--jsonl", "-k", "1", "a blue square").splitlines()
        assert [(Path(r["path"]).name, Path(r["sibling"]).name) for r in map(json.loads, lines)] == [
            ("IMG_0001.JPG", "IMG_0001.CR2")
        ]
        raws = both(daemon, "search", "-f", "--type", "raw", "a red circle")
        assert raws == f"{pics / 'circle.dng'}\n{pics / 'IMG_0003.DNG'}\n"  # the RAW beside a broken JPEG too
        both(daemon, "dupes", "--json", code=1)  # none: the pair is one photo, never its own duplicate

        code, out, err = imgd(daemon, "failed")
        assert code == 0, err
        failed = {line.split(":")[0]: line for line in out.splitlines() if line.strip()}
        assert len(out.strip().splitlines()) == 4
        assert {Path(p).name for p in failed} == {"garbage.nef", "empty.dng", "bomb.dng", "IMG_0003.JPG"}, out
        assert daemon.answers()

        os.remove(pics / "IMG_0001.JPG")  # the RAW stands alone now: embedded, found as what it shows

        def raw_found() -> bool:
            code, out, _ = imgd(daemon, "search", "--json", "-k", "1", "a purple star")
            return code == 0 and Path(json.loads(out)[0]["path"]).name == "IMG_0001.CR2"

        wait_until(raw_found, timeout=60, what="the lone RAW to be searchable")
        os.remove(pics / "IMG_0002.MOV")  # the still stays, without its sibling
        # IMG_0004's RAW and video are all the siblings left.
        wait_until(lambda: daemon.catalog().count_siblings() == 2, timeout=60, what="the sibling to go")
        daemon.wait_idle()
        rows = json.loads(both(daemon, "search", "--json", "-k", "10", "a yellow cross"))
        assert [Path(r["path"]).name for r in rows if "sibling" in r] == ["IMG_0004.HEIC"]
        assert Path(rows[0]["path"]).name == "IMG_0002.HEIC"
        assert daemon.status()["counts"]["files"] == 6
