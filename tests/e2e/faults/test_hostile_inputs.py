"""Hostile and odd inputs dropped into the folder of one running daemon.

None may crash, hang or block it: after each, a normal file dropped afterwards is still indexed,
bad files are recorded as failed (and listed by `imgd failed`), odd but valid ones are indexed and
searchable, and the invariants hold with the daemon still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemonkit import IMGD, check_invariants
from faultkit import (
    HOSTILE,
    FaultDaemon,
    can_drop_privileges,
    expect_settled,
    make_symlinks_outside,
    many_folders,
    png_bytes,
    race_delete_before_embedding,
    race_replace_while_embedding,
    small_filesystem,
    unreadable_inputs,
)

MANY_DIRS = int(os.environ.get("IMGD_FAULT_DIRS", "20000"))


@dataclass
class Live:
    daemon: FaultDaemon
    root: Path
    outside: Path
    failed: set[bytes] = field(default_factory=set)

    def cli(self, *args: str | bytes, direct: bool = False) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in self.daemon.env.items() if k != "IMGD_SETTLE_SECONDS"}
        return subprocess.run([*IMGD, *args], env=env, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("hostile")
    root = tmp / "pics"
    for i in range(5):
        (root / "normal").mkdir(parents=True, exist_ok=True)
        (root / "normal" / f"n{i}.png").write_bytes(png_bytes(900 + i))
    with FaultDaemon(tmp, tiny_model, [root], IMGD_PERSIST_INTERVAL="0.5") as daemon:
        daemon.start()
        daemon.wait_idle()
        state = Live(daemon, root, tmp / "outside")
        yield state
        code = daemon.stop()
        assert code == 0, daemon.log()[-3000:]
        check_invariants(daemon.state_dir, [root], tiny_model, failed=map(os.fsdecode, state.failed))
        assert "Traceback" not in daemon.log(), daemon.log()[-5000:]


def settle(live: Live, name: str, expect) -> None:
    probe = os.path.join(os.fsencode(live.root), name.encode(), b"probe-after.png")
    expect_settled(live.daemon, expect, probe)
    live.failed.update(expect.failed)
    live.daemon.check_live(failed=map(os.fsdecode, live.failed))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_survived(live: Live, name: str) -> None:
    folder = os.path.join(os.fsencode(live.root), name.encode())
    os.makedirs(folder)
    expect = HOSTILE[name](folder, seed=len(name) * 1000)
    settle(live, name, expect)
    if expect.failed:
        listed = json.loads(live.cli("failed", "--json").stdout)
        listed_paths = {os.fsencode(entry["path"]) for entry in listed}
        assert set(expect.failed) <= listed_paths, listed


def test_symlinks_out_of_the_watched_folder_are_not_followed(live: Live) -> None:
    folder = os.path.join(os.fsencode(live.root), b"links-out")
    os.makedirs(folder)
    expect = make_symlinks_outside(folder, seed=77, outside=os.fsencode(live.outside))
    settle(live, "links-out", expect)


def test_odd_file_names_are_searchable_and_json_output_parses(live: Live) -> None:
    folder = os.path.join(os.fsencode(live.root), b"names-cli")
    os.makedirs(folder)
    expect = HOSTILE["odd_names"](folder, seed=4242)
    settle(live, "names-cli", expect)
    for path in expect.ok:
        for direct in (False, True):
            args = ["search", "--json", "-k", "3", "--image", path] + (["--direct"] if direct else [])
            result = live.cli(*args)
            assert result.returncode == 0, result.stderr.decode(errors="replace")
            hits = json.loads(result.stdout.decode("utf-8"))
            assert os.fsencode(hits[0]["path"]) == path, hits
    result = live.cli("search", "--json", "-k", "100", "a photo")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    found = {os.fsencode(hit["path"]) for hit in json.loads(result.stdout.decode("utf-8"))}
    assert set(expect.ok) <= found
    result = live.cli("search", "-k", "100", "a photo")  # the human lines escape what a terminal cannot show
    assert result.returncode == 0 and b"new\\nline.jpg" in result.stdout


def test_a_file_replaced_while_being_embedded_ends_up_with_its_final_content(live: Live) -> None:
    assert race_replace_while_embedding(live.daemon, live.root / "replaced", rounds=2, seed=11) == 8
    live.daemon.check_live(failed=map(os.fsdecode, live.failed))


def test_a_file_deleted_between_its_event_and_its_embedding_leaves_nothing(live: Live) -> None:
    assert race_delete_before_embedding(live.daemon, live.root / "deleted", rounds=2, seed=12) == 8
    live.daemon.check_live(failed=map(os.fsdecode, live.failed))


@pytest.mark.slow
def test_many_empty_folders_do_not_stall_the_daemon(tmp_path: Path, tiny_model: Path) -> None:
    """IMGD_FAULT_DIRS empty folders (20,000 in CI; soak.py makes 100,000), half before start, half after.

    On a tmpfs when we may mount one: this disk takes ~1 ms per mkdir and ~1 s per 1,000 to remove.
    """
    root = tmp_path / "pics"
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(PermissionError):
            stack.enter_context(small_filesystem(root, "256m"))
        root.mkdir(exist_ok=True)
        figures = many_folders(tmp_path, tiny_model, root, MANY_DIRS)
    print(figures)


@pytest.mark.skipif(not can_drop_privileges(), reason="needs root and setpriv to run the daemon as 'nobody'")
def test_unreadable_files_and_folders_are_skipped_by_an_unprivileged_daemon(tiny_model: Path) -> None:
    """Root reads everything, so the daemon runs as 'nobody' (setpriv) for this one."""
    figures = unreadable_inputs(tiny_model)
    print(figures)
