"""`imgd run` as a real subprocess over real folders: every way files arrive, move and leave."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import picture, write_image
from daemonkit import IMGD, DaemonProcess, check_invariants, image_files, wait_until
from imgd.daemon.api import client
from imgd.daemon.errors import CatalogError

pytestmark = pytest.mark.slow


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    path = tmp_path / "pics"
    path.mkdir()
    return path


@pytest.fixture
def daemon(tmp_path: Path, tiny_model: Path, pics: Path):
    with DaemonProcess(tmp_path, tiny_model, [pics]) as proc:
        yield proc


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()


def jpeg_bytes(seed: int, size: tuple[int, int] = (96, 64)) -> bytes:
    import io

    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_files_are_followed_through_every_kind_of_arrival_move_and_removal(daemon, pics, tmp_path):
    write_image(pics / "before.jpg", seed=1)
    daemon.start()
    wait_until(lambda: str(pics / "before.jpg") in daemon.catalog_paths(), what="catch-up at start")

    # A slow writer: chunks over ~2 s; embedded once, with its final content.
    data = jpeg_bytes(2, (400, 300))
    slow = pics / "slow.jpg"
    with open(slow, "wb") as fh:
        for start in range(0, len(data), max(1, len(data) // 8)):
            fh.write(data[start : start + max(1, len(data) // 8)])
            fh.flush()
            time.sleep(0.25)
    wait_until(lambda: daemon.content_hash(slow) == digest(slow), what="the slow file, complete")

    # The same inside a folder that is itself new (cp -r): the new folder must not be indexed
    # by a scan that catches its file half-written.
    data = jpeg_bytes(6, (400, 300))
    copied = pics / "new-folder" / "copied.jpg"
    copied.parent.mkdir()
    with open(copied, "wb") as fh:
        for start in range(0, len(data), max(1, len(data) // 6)):
            fh.write(data[start : start + max(1, len(data) // 6)])
            fh.flush()
            time.sleep(0.25)
    wait_until(lambda: daemon.content_hash(copied) == digest(copied), what="the file in the new folder")

    # A browser download: written as .crdownload, renamed when done.
    partial = pics / "download.jpg.crdownload"
    partial.write_bytes(jpeg_bytes(3))
    time.sleep(1.0)
    assert str(partial) not in daemon.catalog_paths()
    os.rename(partial, pics / "download.jpg")
    # rsync: a hidden temp name renamed into place.
    rsync_tmp = pics / ".synced.jpg.Xy12Ab"
    rsync_tmp.write_bytes(jpeg_bytes(4))
    os.rename(rsync_tmp, pics / "synced.jpg")
    wait_until(
        lambda: {str(pics / "download.jpg"), str(pics / "synced.jpg")} <= set(daemon.catalog_paths()),
        what="the renamed download and rsync file",
    )

    # An editor saving: write a temp file, rename it over the old one; the new content is embedded.
    old_hash = daemon.content_hash(pics / "before.jpg")
    editor_tmp = pics / "before.jpg.tmp"
    editor_tmp.write_bytes(jpeg_bytes(5))
    os.rename(editor_tmp, pics / "before.jpg")
    wait_until(lambda: daemon.content_hash(pics / "before.jpg") == digest(pics / "before.jpg"), what="the edit")
    assert old_hash != digest(pics / "before.jpg")

    # A folder moved in from outside, then renamed inside, then moved out, then another deleted.
    album = tmp_path / "outside" / "album"
    for i in range(5):
        write_image(album / f"a{i}.jpg", seed=10 + i)
    shutil.move(album, pics / "album")
    wait_until(lambda: sum(p.startswith(str(pics / "album")) for p in daemon.catalog_paths()) == 5, what="album in")
    ids_before = {Path(p).name: c for p, c in daemon.catalog_paths().items() if "/album/" in p}
    indexed_lines = daemon.log().count("indexed ")
    os.rename(pics / "album", pics / "renamed")
    wait_until(lambda: sum("/renamed/" in p for p in daemon.catalog_paths()) == 5, what="album renamed")
    ids_after = {Path(p).name: c for p, c in daemon.catalog_paths().items() if "/renamed/" in p}
    assert ids_after == ids_before, "a renamed folder keeps its vectors"
    assert daemon.log().count("indexed ") == indexed_lines, "a rename must not re-embed"
    shutil.move(pics / "renamed", tmp_path / "outside" / "gone")
    wait_until(lambda: not any("/renamed/" in p for p in daemon.catalog_paths()), what="album moved out")

    for i in range(3):
        write_image(pics / "doomed" / f"d{i}.png", seed=20 + i)
    wait_until(lambda: sum("/doomed/" in p for p in daemon.catalog_paths()) == 3, what="doomed folder")
    shutil.rmtree(pics / "doomed")
    (pics / "synced.jpg").unlink()
    wait_until(lambda: set(daemon.catalog_paths()) == image_files(pics), timeout=30, what="catalog to match the disk")

    daemon.wait_idle()
    assert daemon.log().count(f"indexed {slow}") == 1, "the slow file was embedded more than once"
    assert daemon.log().count(f"indexed {copied}") == 1, "the file in the new folder was embedded more than once"
    assert f"updated {copied}" not in daemon.log()
    assert daemon.stop() == 0
    check_invariants(daemon.state_dir, [pics], daemon.model)


def test_a_burst_of_1000_images_all_becomes_searchable_once(daemon, pics, tmp_path):
    daemon.start()
    staging = tmp_path / "staging"
    for i in range(1000):
        write_image(staging / f"burst{i:04d}.png", seed=1000 + i, size=(32, 24))
    for name in os.listdir(staging):
        os.rename(staging / name, pics / name)
    wait_until(lambda: len(daemon.catalog_paths()) == 1000, timeout=240, interval=0.5, what="1000 files")
    daemon.wait_idle()
    catalog = daemon.catalog()
    try:
        assert catalog.counts()["files"] == 1000
        assert catalog.count_contents() == len({r.content_id for r in catalog.all_files()}) == 1000
        # Once: 1000 contents were ever made (ids are never reused), none embedded and then dropped.
        assert catalog.conn.execute("SELECT max(id) FROM contents").fetchone()[0] == 1000
    finally:
        catalog.close()
    log = daemon.log()
    indexed = [line.split("indexed ", 1)[1] for line in log.splitlines() if " indexed " in f" {line}"]
    assert sorted(indexed) == sorted(str(pics / name) for name in os.listdir(pics)), "each file indexed once"
    assert "updated " not in log and "skipping " not in log
    assert daemon.search_image(pics / "burst0500.png")[0]["path"] == str(pics / "burst0500.png")
    assert daemon.stop() == 0
    check_invariants(daemon.state_dir, [pics], daemon.model)


def test_sigterm_saves_and_a_restart_picks_up_changes_made_while_down(daemon, pics):
    for i in range(4):
        write_image(pics / f"img{i}.jpg", seed=i)
    daemon.start()
    wait_until(lambda: len(daemon.catalog_paths()) == 4, what="initial files")
    daemon.wait_idle()

    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15, "SIGTERM must stop well within systemd's timeout"
    assert "stopped" in daemon.log()
    assert not daemon.socket.exists(), "the socket is removed on a clean stop"

    (pics / "img0.jpg").unlink()
    os.rename(pics / "img1.jpg", pics / "moved.jpg")
    write_image(pics / "new.jpg", seed=50)
    daemon.start()
    wait_until(lambda: set(daemon.catalog_paths()) == image_files(pics), what="changes made while down")
    daemon.wait_idle()
    assert daemon.stop() == 0
    check_invariants(daemon.state_dir, [pics], daemon.model)


def test_sigkill_mid_batch_restarts_into_a_consistent_catalog_and_index(daemon, pics):
    for i in range(300):
        write_image(pics / f"img{i:03d}.png", seed=i, size=(64, 48))
    daemon.start(wait=False)

    def indexed_some() -> bool:
        try:
            return len(daemon.catalog_paths()) > 20
        except CatalogError:  # the file exists, its first transaction is not committed yet
            return False

    wait_until(indexed_some, timeout=120)
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL

    daemon.start()
    daemon.wait_idle(timeout=240)
    assert daemon.stop() == 0
    check_invariants(daemon.state_dir, [pics], daemon.model)


def test_query_socket_is_private_and_survives_bad_requests(daemon, pics):
    import json
    import socket as socketlib

    write_image(pics / "a.jpg", seed=1)
    daemon.start()
    daemon.wait_idle()
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700

    def raw(payload: bytes) -> dict:
        with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(daemon.socket))
            sock.sendall(payload)
            sock.shutdown(socketlib.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return json.loads(data)

    assert "not valid JSON" in raw(b"{nope\n")["error"]
    assert "too large" in raw(b'{"v": 4, "op": "search", "text": "' + b"x" * 100_000 + b'"}\n')["error"]
    assert "protocol version" in raw(b'{"v": 99, "op": "status"}\n')["error"]
    assert "unknown operation" in raw(b'{"v": 4, "op": "drop tables"}\n')["error"]
    search = b'{"v": 4, "op": "search", "terms": [{"kind": "text", "value": "x"}], "options": {"k": -3}}\n'
    assert raw(search)["error"] == "k must be a whole number from 1 to 1000, not -3."  # a field, not a flag
    assert "the query is empty" in raw(b'{"v": 4, "op": "search", "options": {"k": 3}}\n')["error"]
    assert "unknown field(s) in 'search': text" in raw(b'{"v": 4, "op": "search", "text": "x"}\n')["error"]
    image = b'{"v": 4, "op": "search", "terms": [{"kind": "image", "value": "/nonexistent.jpg"}]}\n'
    assert "no such file" in raw(image)["error"]
    bad_filter = b'{"v": 4, "op": "search", "terms": [{"kind": "text", "value": "x"}], "options": {"filters": 3}}\n'
    assert "'filters' must be an object" in raw(bad_filter)["error"]
    assert "not valid JSON" in raw(b"[" * 60_000 + b"\n")["error"]  # nested too deep for the decoder

    # A client that connects and says nothing does not block others.
    silent = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    silent.connect(str(daemon.socket))
    try:
        hits = client.search(daemon.socket, 1, text="a photo")
        assert hits[0]["path"] == str(pics / "a.jpg")
    finally:
        silent.close()
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.log(), "every malformed request gets an error reply, not a traceback"


def test_a_library_past_the_exact_limit_switches_to_ivf_in_the_background_and_keeps_it(tmp_path, tiny_model, pics):
    with DaemonProcess(tmp_path, tiny_model, [pics], IMGD_EXACT_LIMIT="40") as daemon:
        for i in range(30):
            write_image(pics / f"img{i:02d}.png", seed=i, size=(64, 48))
        daemon.start()
        assert daemon.wait_idle()["search"]["kind"] == "exact"
        for i in range(30, 60):
            write_image(pics / f"img{i:02d}.png", seed=i, size=(64, 48))
        status = wait_until(
            lambda: (s := daemon.status())["search"]["kind"] == "approximate" and s["counts"]["files"] == 60 and s,
            what="the IVF index",
        )
        assert status["search"]["nprobe"] >= 1 and not status["search"]["build_error"]
        assert "search index is now approximate (IVF)" in daemon.log()
        for i in (0, 35, 59):
            assert daemon.search_image(pics / f"img{i:02d}.png")[0]["path"] == str(pics / f"img{i:02d}.png")
        (pics / "img05.png").unlink()
        daemon.wait_idle()
        assert daemon.stop() == 0
        check_invariants(daemon.state_dir, [pics], daemon.model)

        before = len(daemon.log())
        daemon.start()  # the saved IVF file is served as it is, not rebuilt
        assert daemon.wait_idle()["search"]["kind"] == "approximate"
        assert "rebuilding the index" not in daemon.log()[before:]


def test_an_index_rebuilt_at_start_is_saved_once_started_not_after_the_interval(tmp_path, tiny_model, pics):
    # At 1M the interval stretches to 10 minutes and a rebuild from the catalog takes minutes: a daemon killed
    # before its first save rebuilt again at every start (bench_daemon_scale at 1M: 333 s, then 427 s).
    for i in range(4):
        write_image(pics / f"img{i}.jpg", seed=i)
    with DaemonProcess(tmp_path, tiny_model, [pics], IMGD_PERSIST_INTERVAL="3600") as daemon:
        daemon.start()
        wait_until(lambda: len(daemon.catalog_paths()) == 4, what="initial files")
        daemon.wait_idle()
        assert daemon.stop(signal.SIGTERM) == 0
        index_file = daemon.state_dir / "index.faiss"
        index_file.unlink()

        daemon.start()  # no index file: rebuilt from the catalog
        wait_until(index_file.exists, timeout=30, what="the rebuilt index saved")
        daemon.stop(signal.SIGKILL)
        before = len(daemon.log())
        daemon.start()
        daemon.wait_idle()
        assert "rebuilding the index" not in daemon.log()[before:]
        assert daemon.search_image(pics / "img2.jpg")[0]["path"] == str(pics / "img2.jpg")


def test_the_persist_interval_stretches_with_the_size_of_the_index():
    # Pure arithmetic, so a stand-in for the running daemon: a save at 1M vectors writes ~1 GB.
    from types import SimpleNamespace

    from imgd.daemon.service.run import Daemon

    def every(vectors: int) -> float:
        daemon = SimpleNamespace(
            config=SimpleNamespace(persist_interval=60.0), library=SimpleNamespace(index=[0] * vectors)
        )
        return Daemon.persist_every(daemon)

    assert every(0) == every(100_000) == 60.0
    assert every(1_000_000) == 600.0


# -- the watcher cases that used to slip (issue 14), in both watching modes ----------------------

MODES = ["inotify", "polling"]


def mode_env(mode: str) -> dict[str, str]:
    return {"IMGD_POLLING": "always"} if mode == "polling" else {}


def embedded_since(daemon: DaemonProcess, mark: int) -> list[str]:
    """Log lines of images embedded after mark: 'indexed X' and 'updated X' mean a forward pass."""
    lines = daemon.log()[mark:].splitlines()
    embedded = ("INFO indexed ", "INFO updated ")
    return [line for line in lines if line.startswith(embedded) and "not embedded" not in line]


@pytest.mark.parametrize("mode", MODES)
def test_a_rename_from_a_hidden_name_or_a_staging_folder_over_an_indexed_file_is_a_write(tmp_path, tiny_model, mode):
    pics = tmp_path / "pics"
    write_image(pics / "photo.jpg", seed=1)
    write_image(pics / "other.jpg", seed=2)
    with DaemonProcess(tmp_path, tiny_model, [pics], **mode_env(mode)) as daemon:
        daemon.start()
        daemon.wait_idle()
        assert daemon.content_hash(pics / "photo.jpg") == digest(pics / "photo.jpg")

        hidden = pics / ".photo.jpg"  # a sync tool's or editor's hidden temp name, still ending in .jpg
        hidden.write_bytes(jpeg_bytes(11))
        os.rename(hidden, pics / "photo.jpg")
        (pics / ".staging").mkdir()  # a hidden staging folder
        (pics / ".staging" / "x.jpg").write_bytes(jpeg_bytes(12))
        os.rename(pics / ".staging" / "x.jpg", pics / "other.jpg")

        for path in (pics / "photo.jpg", pics / "other.jpg"):
            wait_until(lambda p=path: daemon.content_hash(p) == digest(p), timeout=20, what=f"{path.name} re-hashed")
        daemon.wait_idle()
        assert daemon.stop() == 0
        check_invariants(daemon.state_dir, [pics], daemon.model)


@pytest.mark.parametrize("mode", MODES)
def test_an_organiser_moving_files_into_folders_it_just_made_never_re_embeds(tmp_path, tiny_model, mode):
    pics = tmp_path / "pics"
    for i in range(24):
        write_image(pics / "inbox" / f"img{i:02d}.jpg", seed=100 + i)
    with DaemonProcess(tmp_path, tiny_model, [pics], **mode_env(mode)) as daemon:
        daemon.start()
        daemon.wait_idle()
        before = {Path(p).name: c for p, c in daemon.catalog_paths().items()}
        assert len(before) == 24
        mark = len(daemon.log())
        # As exiftool '-Directory<DateTimeOriginal' does: make the folder, rename into it, next file.
        for i in range(24):
            folder = pics / str(2000 + i // 2) / f"{i % 12 + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            os.rename(pics / "inbox" / f"img{i:02d}.jpg", folder / f"img{i:02d}.jpg")
        wait_until(lambda: set(daemon.catalog_paths()) == image_files(pics), timeout=30, what="the organised tree")
        daemon.wait_idle()
        after = {Path(p).name: c for p, c in daemon.catalog_paths().items()}
        assert after == before, "a moved file keeps its content id"
        assert embedded_since(daemon, mark) == [], "a move must not re-embed"
        assert daemon.stop() == 0
        check_invariants(daemon.state_dir, [pics], daemon.model)


@pytest.mark.parametrize("mode", MODES)
def test_a_move_between_two_watched_folders_never_re_embeds(tmp_path, tiny_model, mode):
    pics, downloads = tmp_path / "Pictures", tmp_path / "Downloads"
    pics.mkdir()
    for i in range(12):
        write_image(downloads / f"dl{i:02d}.jpg", seed=200 + i)
    with DaemonProcess(tmp_path, tiny_model, [pics, downloads], **mode_env(mode)) as daemon:
        daemon.start()
        daemon.wait_idle()
        before = {Path(p).name: c for p, c in daemon.catalog_paths().items()}
        assert len(before) == 12
        mark = len(daemon.log())
        for name in sorted(os.listdir(downloads)):  # mv ~/Downloads/*.jpg ~/Pictures/
            os.rename(downloads / name, pics / name)
        wait_until(
            lambda: set(daemon.catalog_paths()) == image_files(pics, downloads), timeout=30, what="the moved files"
        )
        daemon.wait_idle()
        after = {Path(p).name: c for p, c in daemon.catalog_paths().items()}
        assert after == before, "a moved file keeps its content id"
        assert embedded_since(daemon, mark) == [], "a move between watched folders must not re-embed"
        assert daemon.stop() == 0
        check_invariants(daemon.state_dir, [pics, downloads], daemon.model)


@pytest.mark.parametrize("mode", MODES)
def test_a_replaced_watched_folder_is_watched_again_and_reconciled_at_once(tmp_path, tiny_model, mode):
    pics = tmp_path / "Pictures"
    for i in range(4):
        write_image(pics / f"old{i}.jpg", seed=300 + i)
    watching = "polling" if mode == "polling" else "inotify"
    with DaemonProcess(tmp_path, tiny_model, [pics], **mode_env(mode)) as daemon:
        daemon.start()
        daemon.wait_idle()

        # mv Pictures Pictures-2023 && mkdir Pictures, then a new image in the new folder.
        os.rename(pics, tmp_path / "Pictures-2023")
        pics.mkdir()
        fresh = write_image(pics / "new.jpg", seed=310)
        wait_until(lambda: daemon.content_hash(fresh) == digest(fresh), timeout=20, what="the image in the new folder")
        wait_until(lambda: set(daemon.catalog_paths()) == image_files(pics), timeout=20, what="the old entries gone")
        assert [f["mode"] for f in daemon.wait_idle()["folders"]] == [watching]

        # rm -rf Pictures && cp -a backup Pictures: the restored files are found.
        backup = tmp_path / "backup"
        subprocess.run(["cp", "-a", str(tmp_path / "Pictures-2023"), str(backup)], check=True)
        shutil.rmtree(pics)
        subprocess.run(["cp", "-a", str(backup), str(pics)], check=True)
        wait_until(lambda: set(daemon.catalog_paths()) == image_files(pics), timeout=20, what="the restored files")
        status = daemon.wait_idle()
        assert [f["mode"] for f in status["folders"]] == [watching]
        late = write_image(pics / "late.jpg", seed=311)  # and the restored folder is watched
        wait_until(lambda: daemon.content_hash(late) == digest(late), timeout=20, what="a file in the restored folder")
        daemon.wait_idle()
        assert daemon.stop() == 0
        check_invariants(daemon.state_dir, [pics], daemon.model)


def test_search_into_a_pipe_whose_reader_left_exits_quietly_as_grep_does(daemon, pics):
    for i in range(3):
        write_image(pics / f"img{i}.jpg", seed=i)
    daemon.start()
    daemon.wait_idle()
    # `imgd search ... | head -1`: the reader is gone before imgd writes.
    proc = subprocess.Popen(
        [*IMGD, "search", "-k", "3", "a photo"], env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert err == b""
    assert proc.returncode == 128 + signal.SIGPIPE, "141, as the shell reports grep killed by SIGPIPE"
