"""`imgd run` without a usable index file answers at once: searches scan the catalog while the index is built.

A real daemon over real pictures, its IVF past a lowered exact limit; IMGD_INDEX_BUILD_DELAY holds the build
a while between blocks (a test's knob), so the searches, a new file and a SIGTERM surely land mid-build.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import write_image
from daemonkit import IMGD, DaemonProcess, check_invariants, wait_until
from imgd.daemon.api import client
from imgd.daemon.protocol import Filters, Options, SearchRequest, Term
from test_stop_bound import BOUND, MARGIN, stop_seconds

COUNT = 60  # past the exact limit of 40: the index built is IVF
QUERY = "a photo of a cat"


def ask(daemon: DaemonProcess, folders: tuple[str, ...] = ()) -> dict:
    request = SearchRequest(terms=(Term("text", QUERY),), options=Options(k=10, filters=Filters(folders=folders)))
    return client.request(daemon.socket, request.to_message(), timeout=60)


def ranked(reply: dict) -> list[tuple[str, float]]:
    """Paths and scores, ordered as rounded (near-equal scores may differ in their last bits between passes)."""
    return sorted(((hit["path"], round(hit["score"], 4)) for hit in reply["hits"]), key=lambda hit: (-hit[1], hit[0]))


def saved_anew(path: Path, before: int | None) -> bool:
    """The file is there and is another one than `before` (an inode): a save replaces it whole."""
    return path.exists() and path.stat().st_ino != before


def indexed(tmp_path: Path, tiny_model: Path, **env: str) -> DaemonProcess:
    """A daemon whose library of COUNT pictures (two folders) is indexed and its index file saved; stopped."""
    pics = tmp_path / "pics"
    for n in range(COUNT):
        write_image(pics / ("a" if n % 2 else "b") / f"p{n:02d}.png", seed=n, size=(64, 48))
    daemon = DaemonProcess(tmp_path, tiny_model, [pics], IMGD_EXACT_LIMIT="40", **env)
    daemon.start()
    wait_until(lambda: daemon.wait_idle()["search"]["kind"] == "approximate", what="the IVF index")
    assert daemon.stop() == 0
    assert (daemon.state_dir / "index.faiss").exists()
    return daemon


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_without_a_usable_index_file_it_answers_exactly_while_it_is_built(
    tmp_path: Path, tiny_model: Path, damage: str
) -> None:
    daemon = indexed(tmp_path, tiny_model, IMGD_PERSIST_INTERVAL="3600")
    with daemon:
        daemon.start()
        before, before_a = ranked(ask(daemon)), ranked(ask(daemon, (str(tmp_path / "pics" / "a"),)))
        assert daemon.stop() == 0
        index_file = daemon.state_dir / "index.faiss"
        if damage == "missing":
            index_file.unlink()
            damaged = None
        else:
            index_file.write_bytes(index_file.read_bytes()[:-4000] + b"\0" * 4000)
            damaged = index_file.stat().st_ino

        daemon.env["IMGD_INDEX_BUILD_DELAY"] = "20"  # the build waits 20 s before its one block
        mark = len(daemon.log())
        daemon.start()
        reply = ask(daemon)
        status = daemon.status()
        assert status["search"]["scan"]["step"] in ("reading", "clustering", "filling"), status["search"]
        assert status["search"]["vectors"] == COUNT and status["search"]["building"]
        assert reply.get("exact_scan") is True
        assert ranked(reply) == before  # the exact answer, as the saved index gave it
        filtered = ask(daemon, (str(tmp_path / "pics" / "a"),))
        assert ranked(filtered) == before_a and all("/pics/a/" in path for path, _ in ranked(filtered))
        assert "searches scan the catalog until it is built" in daemon.log()[mark:]

        # What a user sees: a note beside the answer, and the build's progress in `imgd status`.
        done = subprocess.run([*IMGD, "search", "-k", "3", QUERY], env=daemon.env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert "this answer comes from an exact scan of the catalog" in done.stderr.decode()
        shown = subprocess.run([*IMGD, "status"], env=daemon.env, capture_output=True, timeout=120)
        assert "searches scan the catalog meanwhile" in shown.stdout.decode(), shown.stdout.decode()

        # A file added meanwhile is searchable at once (the scan reads the catalog) and after the swap.
        new = write_image(tmp_path / "pics" / "a" / "new.png", seed=999, size=(64, 48))
        wait_until(lambda: str(new) in daemon.catalog_paths(), what="the new file in the catalog")
        status = daemon.status()
        assert "scan" in status["search"], "the new file must land while the index is being built"
        assert status["search"]["vectors"] == COUNT + 1
        assert daemon.search_image(new)[0]["path"] == str(new)

        wait_until(lambda: "scan" not in daemon.status()["search"], timeout=120, what="the index built")
        status = daemon.status()
        assert status["search"]["kind"] == "approximate" and status["search"]["vectors"] == COUNT + 1
        assert not status["search"]["build_error"]
        assert daemon.search_image(new)[0]["path"] == str(new)
        reply = ask(daemon)
        assert "exact_scan" not in reply
        # The built index is saved at once (persist_interval is an hour), and the next start serves it.
        wait_until(lambda: saved_anew(index_file, damaged), timeout=30, what="the built index saved")
        assert daemon.stop() == 0
        check_invariants(daemon.state_dir, daemon.roots, daemon.model)  # the saved index: the catalog's ids, once
        mark = len(daemon.log())
        daemon.start()
        assert "rebuilding the index" not in daemon.log()[mark:]
        assert "scan" not in daemon.status()["search"]
        assert ranked(ask(daemon)) == ranked(reply)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_during_the_start_build_exits_within_the_bound_and_saves_nothing(
    tmp_path: Path, tiny_model: Path
) -> None:
    daemon = indexed(tmp_path, tiny_model)
    with daemon:
        index_file = daemon.state_dir / "index.faiss"
        index_file.unlink()
        daemon.env["IMGD_INDEX_BUILD_DELAY"] = "60"
        daemon.start()
        assert ask(daemon).get("exact_scan") is True
        assert "scan" in daemon.status()["search"]
        took, code = stop_seconds(daemon)
        assert code == 0, daemon.log()
        assert took < BOUND + MARGIN, f"SIGTERM during the index build took {took:.1f}s:\n{daemon.log()}"
        assert not index_file.exists(), "a half-built index (what came since the start) must never be saved"

        del daemon.env["IMGD_INDEX_BUILD_DELAY"]
        mark = len(daemon.log())
        daemon.start()  # built again from the catalog, in full
        wait_until(lambda: "scan" not in daemon.status()["search"], timeout=120, what="the index built")
        assert "rebuilding the index from the catalog" in daemon.log()[mark:]
        assert daemon.status()["search"]["vectors"] == COUNT
        hits = json.loads(
            subprocess.run(
                [*IMGD, "search", "--json", "-k", "3", QUERY], env=daemon.env, capture_output=True, timeout=120
            ).stdout
        )
        assert len(hits) == 3
        wait_until(index_file.exists, timeout=30, what="the built index saved")
        assert daemon.stop(signal.SIGTERM) == 0
