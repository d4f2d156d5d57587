"""The gallery over real HTTP: a real uvicorn on 127.0.0.1, a real catalog, real files and a real daemon."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import browserkit
import pytest
from click.testing import CliRunner
from conftest import picture, write_image
from daemonkit import DaemonProcess, wait_until
from imgd.cli import installer, unit
from imgd.cli.main import cli
from imgd.daemon import config as config_module
from imgd.daemon.embedders import load_embedder
from imgd.web.backend import path_tag
from imgd.web.server import Gallery, kept_token
from PIL import Image, ImageEnhance


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Browser:
    """Just enough of a browser: one cookie jar, raw paths sent as given (no normalisation)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.gallery.port, timeout=60)
        try:
            sent = dict(headers or {})
            if self.cookie:
                sent["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def log_in(self) -> Reply:
        reply = self.get(f"/?token={self.gallery.token}")
        self.cookie = reply.headers["set-cookie"].split(";")[0]
        return reply


@pytest.fixture
def library(tmp_path: Path, tiny_model: Path) -> tuple[Path, config_module.Config]:
    pics = tmp_path / "pics"
    for i in range(6):
        write_image(pics / f"img{i}.jpg", seed=i, size=(640, 480))
    write_image(pics / "sub" / "copy of img0.jpg", seed=0, size=(640, 480))
    config = config_module.load(
        None, {"state_dir": tmp_path / "state", "model": str(tiny_model), "device": "cpu"}, env={}
    )
    result = CliRunner().invoke(
        cli, ["--state-dir", str(config.state_dir), "--model", str(tiny_model), "index", str(pics)]
    )
    assert result.exit_code == 0, result.output
    return pics, config


@pytest.fixture
def gallery(library, tiny_model) -> Iterator[Gallery]:
    _, config = library
    server = Gallery(
        config, lambda name: load_embedder(name, device="cpu", batch_size=8), port=0, max_upload=256 * 1024
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(gallery) -> Browser:
    client = Browser(gallery)
    client.log_in()
    return client


def ids_of(browser: Browser, query: str = "a red car", limit: int = 24) -> list[dict]:
    reply = browser.get(f"/api/search?q={quote(query)}&limit={limit}")
    assert reply.status == 200, reply.body
    return reply.json()["hits"]


# -- the token ------------------------------------------------------------------------------------


def test_nothing_is_served_without_the_token(gallery):
    stranger = Browser(gallery)

    for path in ("/", "/static/app.js", "/api/search?q=cat", "/api/status", "/thumb/1-0000000000000000"):
        reply = stranger.get(path)
        assert reply.status == 403, path
        assert b"imgd web" in reply.body
    assert stranger.get("/?token=" + "x" * len(gallery.token)).status == 403
    stranger.cookie = f"imgd_token_{gallery.port}=wrong"
    assert stranger.get("/api/status").status == 403


def test_the_token_becomes_an_http_only_cookie_and_leaves_the_url(gallery):
    visitor = Browser(gallery)

    first = visitor.get(f"/?token={gallery.token}&x=1")
    cookie = first.headers["set-cookie"]
    visitor.cookie = cookie.split(";")[0]
    page = visitor.get("/")

    assert first.status == 303 and first.headers["location"] == "/?x=1"
    assert cookie.startswith(f"imgd_token_{gallery.port}={gallery.token};")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert page.status == 200 and b"<title>imgd</title>" in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_page_uses_no_asset_from_elsewhere(browser):
    for path in ("/", "/static/app.js", "/static/style.css"):
        body = browser.get(path).body.decode()
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, path


# -- searching and serving ------------------------------------------------------------------------


def test_search_names_results_by_catalog_id_and_serves_their_thumbnails(browser, library):
    pics, _ = library

    hits = ids_of(browser)
    thumb = browser.get(f"/thumb/{hits[0]['id']}")
    view = browser.get(f"/view/{hits[0]['id']}")

    assert len(hits) == 7  # every path, the copy included
    assert all(str(pics) not in json.dumps(hit) for hit in hits), "a result exposes a path"
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.body)).size == (256, 192)
    assert Image.open(io.BytesIO(view.body)).size == (640, 480)  # never enlarged


def test_pages_follow_each_other_without_repeats(browser):
    first = browser.get("/api/search?q=tree&limit=4").json()
    second = browser.get("/api/search?q=tree&limit=4&offset=4").json()

    assert first["more"] is True and len(first["hits"]) == 4
    assert second["more"] is False and len(second["hits"]) == 3
    assert not {h["id"] for h in first["hits"]} & {h["id"] for h in second["hits"]}


def test_more_like_this_leaves_the_picked_image_and_its_copies_out(browser):
    hits = ids_of(browser)
    picked = next(h for h in hits if h["name"] == "img0.jpg")  # it has a copy in sub/

    similar = browser.get(f"/api/similar/{picked['id']}").json()["hits"]

    assert len(similar) == 5 and {h["name"] for h in similar} == {f"img{i}.jpg" for i in range(1, 6)}
    assert similar == sorted(similar, key=lambda h: -h["score"])


def test_the_search_box_speaks_the_query_language_and_filters_apply(browser, library):
    pics, config = library
    write_image(pics / "wide.png", seed=11, size=(900, 300))
    CliRunner().invoke(cli, ["--state-dir", str(config.state_dir), "--model", config.model, "index", str(pics)])

    weighted = browser.get("/api/search?q=" + quote("beach, 2:dog, -people")).json()["hits"]
    pngs = browser.get("/api/search?q=beach&type=png").json()["hits"]
    in_sub = browser.get("/api/search?q=beach&in=" + quote(str(pics / "sub"))).json()["hits"]
    large = browser.get("/api/search?q=beach&min_size=0.3MP").json()["hits"]
    bad = browser.get("/api/search?q=beach&orientation=sideways")
    empty = browser.get("/api/search?q=" + quote(" , -"))

    assert len(weighted) == 8
    assert [h["name"] for h in pngs] == ["wide.png"]
    assert [h["name"] for h in in_sub] == ["copy of img0.jpg"]
    assert {h["name"] for h in large} == {f"img{i}.jpg" for i in range(6)} | {"copy of img0.jpg"}  # 900x300 < 0.3 MP
    assert bad.status == 400 and "Orientation must be one of" in bad.json()["error"]
    assert empty.status == 400 and empty.json()["error"] == "Type something to search for."


def test_the_full_view_details_come_from_the_file(browser, library):
    pics, _ = library
    camera = pics / "camera.jpg"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Fujifilm", "X-T5"
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 10:11:12"  # DateTimeOriginal, where cameras write it
    Image.new("RGB", (300, 200), "green").save(camera, exif=exif.tobytes())
    CliRunner().invoke(cli, ["--state-dir", str(library[1].state_dir), "--model", library[1].model, "index", str(pics)])

    hit = next(h for h in ids_of(browser, limit=48) if h["name"] == "camera.jpg")
    info = browser.get(f"/api/item/{hit['id']}").json()

    by_camera = browser.get("/api/search?q=field&camera=fuji").json()["hits"]
    by_date = browser.get("/api/search?q=field&after=2024-06&before=2024-07").json()["hits"]
    bad_date = browser.get("/api/search?q=field&after=June")
    assert [h["name"] for h in by_camera] == [hit["name"]] == [h["name"] for h in by_date]
    assert bad_date.status == 400 and "is not a date" in bad_date.json()["error"]
    assert info["path"] == str(camera) and info["bytes"] == camera.stat().st_size
    assert (info["width"], info["height"], info["camera"], info["taken"]) == (
        300,
        200,
        "Fujifilm X-T5",
        "2024:06:01 10:11:12",
    )


def test_a_pair_is_one_result_whose_sibling_the_full_view_names(browser, library):
    pics, config = library
    from rawkit import write_dng

    write_image(pics / "IMG_0009.JPG", seed=9, size=(640, 480), fmt="JPEG")
    write_dng(pics / "IMG_0009.CR2", Image.new("RGB", (64, 48), "purple"))
    (pics / "IMG_0009.MOV").write_bytes(b"\x00\x00\x00\x14ftypqt  the live video half")
    CliRunner().invoke(cli, ["--state-dir", str(config.state_dir), "--model", config.model, "index", str(pics)])

    hits = ids_of(browser, limit=48)
    names = [h["name"] for h in hits]
    assert "IMG_0009.JPG" in names and "IMG_0009.CR2" not in names and "IMG_0009.MOV" not in names
    assert [(h["name"], h["sibling"]) for h in hits if "sibling" in h] == [("IMG_0009.JPG", "IMG_0009.CR2")]
    assert [h["siblings"] for h in hits if "siblings" in h] == [["IMG_0009.CR2", "IMG_0009.MOV"]]


def test_the_gallery_filters_by_place_and_shows_it(browser, library):
    from fractions import Fraction

    pics, config = library
    exif = Image.Exif()
    lisbon = (Fraction(38), Fraction(43), Fraction(20)), (Fraction(9), Fraction(8), Fraction(21))
    exif.get_ifd(0x8825).update({1: "N", 2: lisbon[0], 3: "W", 4: lisbon[1]})
    Image.new("RGB", (300, 200), "blue").save(pics / "tram.jpg", exif=exif.tobytes())
    CliRunner().invoke(cli, ["--state-dir", str(config.state_dir), "--model", config.model, "index", str(pics)])

    near = browser.get("/api/search?q=tram&near=lisboa&within=5").json()["hits"]
    country = browser.get("/api/search?q=tram&country=PT").json()["hits"]
    elsewhere = browser.get("/api/search?q=tram&near=Porto").json()["hits"]
    info = browser.get(f"/api/item/{near[0]['id']}").json()
    bad = browser.get("/api/search?q=tram&near=Lisbon&within=far")
    unknown = browser.get("/api/search?q=tram&near=Qwxyzville")
    assert [h["name"] for h in near] == ["tram.jpg"] == [h["name"] for h in country]
    assert elsewhere == [] and info["place"] == "Lisbon, Portugal"
    assert (bad.status, bad.json()["error"]) == (400, "Km: 'far' is not a distance; write kilometres above 0.")
    assert unknown.status == 400 and unknown.json()["error"].startswith("No city called 'Qwxyzville' is known")


def test_the_gallery_filters_by_words_and_shows_the_lines_matched(browser, library):
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.store.words import WordLine

    pics, config = library
    catalog = Catalog(config.catalog_path)  # what the words pass writes for a receipt (tests/integration/test_words.py)
    try:
        with catalog.transaction():
            content_id = catalog.get_file(str(pics / "img2.jpg")).content_id
            lines = [WordLine("HARDWARE STORE", 0.98), WordLine("TOTAL 17.49", 0.95)]
            catalog.set_words(content_id, lines, 0.5, 0.0)
    finally:
        catalog.close()

    found = browser.get("/api/search?q=a%20red%20car&words=Hardw").json()["hits"]
    total = browser.get("/api/search?q=a%20red%20car&words=17.49").json()["hits"]
    none = browser.get("/api/search?q=a%20red%20car&words=invoice").json()["hits"]
    short = browser.get("/api/search?q=a%20red%20car&words=ab")
    assert [h["name"] for h in found] == ["img2.jpg"] and found[0]["words"] == ["HARDWARE STORE"]
    assert [(h["name"], h["words"]) for h in total] == [("img2.jpg", ["TOTAL 17.49"])] and none == []
    assert short.status == 400 and short.json()["error"] == "Words needs at least 3 letters or digits, not 'ab'."


def test_status_reports_the_catalog_without_a_daemon(browser):
    status = browser.get("/api/status").json()

    assert status["daemon"] is False and status["images"] == 6 and status["files"] == 7
    assert status["newest"].endswith(".jpg")


def test_status_reports_a_model_change_under_way(browser, library):
    import numpy as np
    from imgd.daemon.store.catalog import Catalog

    _, config = library
    assert browser.get("/api/status").json()["change"] is None
    catalog = Catalog(config.catalog_path)
    try:
        catalog.begin_model_change("another-model", 48, None)
        with catalog.transaction():
            catalog.add_next_vectors(catalog.content_ids()[:2], np.ones((2, 48), dtype=np.float32))
    finally:
        catalog.close()

    status = browser.get("/api/status").json()
    assert status["change"] == {"to": "another-model", "dim": 48, "done": 2, "total": 6}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("after=June", "Taken from: 'June' is not a date; write YYYY, YYYY-MM or YYYY-MM-DD."),
        (
            "after=2024&before=2023",
            "Taken from 2024-01-01 is not earlier than taken before 2023-01-01; nothing can match.",
        ),
        ("min_size=big", "Min size: 'big' is not a size; write WIDTHxHEIGHT, a side in pixels, or 12MP."),
        (
            "type=psd",
            "File type: unknown file type 'psd'; use jpg, png, webp, gif, bmp, tiff, heic, avif, jxl, raw, cr2, cr3, "
            "nef, nrw, arw, raf, orf, rw2, dng, pef, srw, mp4, mov, m4v, 3gp, mkv, webm, avi.",
        ),
        ("min_score=2", "Min score is a cosine similarity from -1 to 1, not 2.0."),
        ("sort=size", "Order must be one of score, date, path, not 'size'."),
    ],
)
def test_request_errors_name_the_page_controls_never_a_command_line_flag(browser, query, message):
    for route in ("/api/search?q=beach&", "/api/dupes?"):
        reply = browser.get(route + query)
        assert (reply.status, reply.json()["error"]) == (400, message), route


# -- what cannot be reached -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/thumb/../../../../etc/passwd",
        "/thumb/..%2F..%2F..%2Fetc%2Fpasswd",
        "/original/%2Fetc%2Fpasswd",
        "/original/..%2f..%2fcatalog.db",
        "/view/1-..%2F..%2Fetc",
        "/static/../app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/%2e%2e/daemon/store/catalog.py",
        "/static//etc/passwd",
        "/api/item/%2Fetc%2Fpasswd",
        "/api/similar/..%2F..%2Fetc%2Fpasswd",
        "/thumb/1-0000000000000000",
        "/thumb/999999-" + path_tag("/etc/passwd"),
        "/original/99999999999999999999999-0000000000000000",
    ],
)
def test_paths_in_requests_reach_nothing(browser, path):
    reply = browser.get(path)

    assert reply.status in (400, 404), (path, reply.status)
    assert b"root:" not in reply.body and b"import" not in reply.body and b"SQLite" not in reply.body


def test_an_id_naming_a_path_outside_the_catalog_reaches_nothing(browser, tmp_path):
    secret = tmp_path / "secret.jpg"
    write_image(secret, seed=42)
    real = ids_of(browser)[0]["id"]
    content_id = real.split("-")[0]

    for route in ("thumb", "view", "original", "api/item"):
        assert browser.get(f"/{route}/{content_id}-{path_tag(str(secret))}").status == 404


def test_a_catalog_file_replaced_by_a_link_is_not_followed(browser, library, tmp_path):
    pics, _ = library
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 the secret")
    hit = next(h for h in ids_of(browser) if h["name"] == "img2.jpg")
    os.unlink(pics / "img2.jpg")
    os.symlink(secret, pics / "img2.jpg")

    for route in ("thumb", "view", "original", "api/item"):
        reply = browser.get(f"/{route}/{hit['id']}")
        assert reply.status == 404, route
        assert b"secret" not in reply.body


def test_ids_of_removed_files_are_gone(browser, library):
    pics, config = library
    hit = next(h for h in ids_of(browser) if h["name"] == "img4.jpg")
    assert browser.get(f"/thumb/{hit['id']}").status == 200  # cached now
    (pics / "img4.jpg").unlink()

    before_reindex = browser.get(f"/thumb/{hit['id']}")
    CliRunner().invoke(cli, ["--state-dir", str(config.state_dir), "--model", config.model, "index", str(pics)])
    after_reindex = browser.get(f"/original/{hit['id']}")

    assert before_reindex.status == 404 and b"file vanished" in before_reindex.body
    assert after_reindex.status == 404
    assert hit["id"] not in {h["id"] for h in ids_of(browser)}


def test_files_deleted_while_their_thumbnails_are_requested(browser, library):
    pics, _ = library
    hits = ids_of(browser)
    replies: list[Reply] = []
    go = threading.Barrier(len(hits) + 1)

    def fetch(item: str) -> None:
        go.wait()
        replies.append(Browser.request(browser, "GET", f"/view/{item}"))

    threads = [threading.Thread(target=fetch, args=(h["id"],)) for h in hits]
    for t in threads:
        t.start()
    go.wait()
    for path in pics.glob("*.jpg"):
        path.unlink()
    for t in threads:
        t.join()

    assert len(replies) == len(hits)
    for reply in replies:
        if reply.status == 200:
            assert Image.open(io.BytesIO(reply.body)).format == "JPEG"
        else:
            assert reply.status == 404 and "error" in json.loads(reply.body)
    assert browser.get("/api/status").status == 200  # and the gallery still answers


# -- uploads --------------------------------------------------------------------------------------


def jpeg_bytes(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    from conftest import picture

    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_bytes(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    from conftest import picture

    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


def everything_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_a_dropped_picture_finds_its_twin_and_leaves_nothing_behind(browser, gallery, library):
    pics, _ = library
    before = everything_under(pics)

    reply = browser.request("POST", "/api/search-image", body=jpeg_bytes(5), headers={"Content-Type": "image/jpeg"})

    assert reply.status == 200, reply.body
    assert reply.json()["hits"][0]["name"] == "img5.jpg"
    assert everything_under(gallery.upload_dir) == set()
    assert everything_under(pics) == before


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"\xff\xd8" + b"x" * (300 * 1024), 413, b"larger than"),
        (b"#!/bin/sh\nrm -rf /\n", 400, b"not a picture"),
        (b"", 400, b"empty"),
        (jpeg_bytes(1)[:200], 400, b"not a picture"),  # a truncated JPEG
    ],
)
def test_bad_uploads_get_one_clear_sentence_and_write_nothing(browser, gallery, library, body, status, message):
    pics, _ = library
    before = everything_under(pics)

    reply = browser.request("POST", "/api/search-image", body=body, headers={"Content-Type": "image/jpeg"})

    assert reply.status == status
    error = reply.json()["error"]
    assert message in error.encode() and error.endswith(".") and "Traceback" not in error
    assert everything_under(gallery.upload_dir) == set()
    assert everything_under(pics) == before


def test_an_upload_larger_than_it_says_is_cut_off(browser, gallery):
    """A chunked body has no Content-Length: the cap is enforced while reading."""
    conn = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=30)
    conn.putrequest("POST", "/api/search-image")
    conn.putheader("Cookie", browser.cookie)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"\xff" * 65536
    try:
        for _ in range(8):
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close early
    reply = conn.getresponse()

    assert reply.status == 413 and b"larger than" in reply.read()
    assert everything_under(gallery.upload_dir) == set()


# -- with the daemon ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_gallery_asks_a_running_daemon(tmp_path, tiny_model):
    pics = tmp_path / "pics"
    for i in range(4):
        write_image(pics / f"img{i}.jpg", seed=i, size=(320, 240))
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        wait_until(lambda: daemon.status()["counts"]["contents"] >= 4, what="4 images indexed")
        daemon.wait_idle()
        config = config_module.load(
            None,
            {"state_dir": daemon.state_dir, "model": str(tiny_model), "socket_path": daemon.socket},
            env={},
        )

        def no_model(name: str):
            raise AssertionError("the gallery loaded a model although the daemon answers")

        server = Gallery(config, no_model, port=0)
        server.start()
        try:
            client = Browser(server)
            client.log_in()
            assert client.get("/api/status").json()["daemon"] is True
            hits = client.get("/api/search?q=a%20boat").json()["hits"]
            write_image(pics / "new.jpg", seed=9, size=(320, 240))
            wait_until(lambda: daemon.status()["counts"]["contents"] >= 5, what="the new image indexed")
            status = client.get("/api/status").json()
            dropped = client.request("POST", "/api/search-image", body=jpeg_bytes(2, (320, 240)))
        finally:
            server.stop()

    assert len(hits) == 4
    assert status["images"] == 5 and status["newest"] == str(pics / "new.jpg")
    assert dropped.status == 200 and dropped.json()["hits"][0]["name"] == "img2.jpg"


# -- the command ----------------------------------------------------------------------------------


def test_the_cli_imports_no_web_stack_or_image_library_until_asked():
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, imgd.cli.main; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'uvicorn', 'PIL', 'numpy', 'torch') or m.startswith('imgd.web')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_imgd_web_prints_its_url_warns_off_loopback_and_stops_on_sigterm(library, tmp_path, host):
    _, config = library
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgd.cli.main",
            "--state-dir",
            str(config.state_dir),
            "web",
            "--port",
            "0",
            "--host",
            host,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")},
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://([\d.]+):(\d+)/\?token=(\S+)", line)
        assert url, line
        conn = http.client.HTTPConnection("127.0.0.1", int(url.group(2)), timeout=30)
        conn.request("GET", "/")
        refused = conn.getresponse().status
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        stderr = proc.stderr.read()

    assert url.group(1) == host and refused == 403
    assert code in (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal it caught
    assert ("warning: listening on 0.0.0.0" in stderr) == (host == "0.0.0.0")
    assert "Traceback" not in stderr


# -- the service unit -----------------------------------------------------------------------------


def test_service_install_web_writes_the_gallery_unit_and_says_its_url(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGD_BACKEND", raising=False)  # conftest's speed-up would be pinned into the unit
    state = tmp_path / "state"
    units = tmp_path / "units"

    plain = CliRunner().invoke(cli, ["--state-dir", str(state), "service", "install", "--unit-dir", str(units)])
    assert plain.exit_code == 0 and not (units / "imgd-web.service").exists()  # off by default
    result = CliRunner().invoke(
        cli, ["--state-dir", str(state), "service", "install", "--unit-dir", str(units), "--web", "--web-port", "8999"]
    )

    assert result.exit_code == 0, result.output
    text = (units / "imgd-web.service").read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(f" --state-dir {state} web --port 8999 --keep-token")
    assert "PrivateNetwork=yes" not in text  # it listens on 127.0.0.1
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in text
    token_file = state / "web-token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) >= 32
    assert f"http://127.0.0.1:8999/?token={token}" in result.output
    assert "enable --now imgd.service imgd-web.service" in result.output
    assert kept_token(token_file) == token  # what `imgd web --keep-token` will use


def test_the_gallery_unit_pins_the_backend_and_text_model_as_the_daemon_unit_does(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGD_BACKEND", raising=False)
    text_model = tmp_path / "models" / "multilingual"
    text_model.mkdir(parents=True)
    args = ["--state-dir", str(tmp_path / "state"), "--backend", "onnx", "--text-model", str(text_model)]

    result = CliRunner().invoke(cli, [*args, "service", "install", "--unit-dir", str(tmp_path / "u"), "--web"])

    assert result.exit_code == 0, result.output
    daemon = (tmp_path / "u" / "imgd.service").read_text()
    web = (tmp_path / "u" / "imgd-web.service").read_text()
    daemon_exec = next(line for line in daemon.splitlines() if line.startswith("ExecStart="))
    web_exec = next(line for line in web.splitlines() if line.startswith("ExecStart="))
    assert daemon_exec.endswith(f" --state-dir {tmp_path}/state --backend onnx --text-model {text_model} run")
    assert web_exec == daemon_exec.removesuffix(" run") + " web --port 8470 --keep-token"
    # the text model in /tmp keeps the real /tmp in both units, so both can read it
    text_in_tmp = unit.render_web_unit(
        "/usr/bin/imgd", None, "/var/lib/imgd", 8470, text_model="/tmp/multi", sandbox=True
    )
    assert "PrivateTmp=yes" not in text_in_tmp and "the text model folder lives" in text_in_tmp


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(("sandbox", "exposure"), [(True, 1.9), (False, 6.2)], ids=["sandbox", "no-sandbox"])
def test_systemd_accepts_the_gallery_unit(tmp_path, sandbox, exposure):
    exe = tmp_path / "bin" / "imgd"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    path = installer.install_unit(
        # A state folder outside /tmp (it need not exist), as a real one is: one in /tmp drops PrivateTmp=.
        unit.render_web_unit(str(exe), None, "/var/lib/imgd test/state dir", 8470, sandbox=sandbox),
        tmp_path / "units",
        unit.WEB_UNIT_NAME,
    )
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)

    def analyze(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["systemd-analyze", "--user", *args, str(path)], capture_output=True, text=True)

    verify = analyze("verify")
    security = analyze("security", "--offline=true", "--no-pager")

    assert verify.returncode == 0 and "imgd" not in verify.stdout + verify.stderr, verify.stderr
    found = re.search(r"Overall exposure level for imgd-web\.service: (\d+\.\d+)", security.stdout)
    assert found and float(found.group(1)) <= exposure, security.stdout + security.stderr


# -- in a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (its own browser download cannot work offline)."""
    if not os.path.exists(browserkit.CHROMIUM):
        pytest.fail(f"{browserkit.CHROMIUM} is missing: `apt-get install chromium` (.ci/run installs it)")
    with browserkit.chromium() as browser:
        yield browser


def thumbnails_shown(page, count: int) -> None:
    """Wait until `count` result cards show their thumbnail: loaded, with real pixels."""
    page.wait_for_function(
        """n => { const imgs = [...document.querySelectorAll('#grid .card img')];
                  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=count,
        timeout=30000,
    )


def drop_file(page, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the page the way a file manager does: a DataTransfer on dragenter/drop events."""
    page.evaluate(
        """([b64, name, mime]) => {
             const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
             const transfer = new DataTransfer();
             transfer.items.add(new File([bytes], name, { type: mime }));
             for (const type of ['dragenter', 'dragover', 'drop']) {
               const event = new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer });
               document.body.dispatchEvent(event);
             }
           }""",
        [__import__("base64").b64encode(data).decode(), name, mime],
    )


@pytest.mark.slow
def test_a_person_searches_browses_and_drops_a_picture(chromium, gallery, library, tmp_path):
    pics, _ = library
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    refused = context.new_page()
    errors: list[str] = []
    try:
        refused.goto(gallery.base_url)
        assert "imgd web" in refused.inner_text("body")  # no token, no gallery
        # Its 403s (the page, then the favicon Chromium asks for after load, at any moment) stay its own.
        refused.close()
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(f"{msg.text} {msg.location}") if msg.type == "error" else None)
        page.goto(gallery.url)
        assert page.url == gallery.base_url  # the token left the address bar
        assert gallery.token not in page.evaluate("document.cookie")  # HttpOnly: scripts cannot read it
        page.wait_for_function("() => document.getElementById('status').textContent.includes('6 images')")

        page.fill("#q", "a red car")
        page.press("#q", "Enter")
        thumbnails_shown(page, 7)
        scores = page.locator("#grid .card .score").all_inner_texts()
        assert len(scores) == 7 and all(-1 <= float(s) <= 1 for s in scores)

        # Keyboard: down into the grid, right to the second picture, Enter opens it, arrows step, Esc closes.
        page.press("#q", "ArrowDown")
        page.keyboard.press("ArrowRight")
        second = page.locator("#grid .card").nth(1).locator(".name").inner_text()
        page.keyboard.press("Enter")
        page.wait_for_selector("#viewer:not([hidden])")
        assert page.inner_text("#v-name") == second
        page.wait_for_function("() => document.getElementById('full').naturalWidth > 0")
        page.wait_for_function("() => document.getElementById('v-details').textContent.includes('640 × 480')")
        assert str(pics) in page.inner_text("#v-details")
        page.keyboard.press("ArrowRight")
        assert page.inner_text("#v-name") == page.locator("#grid .card").nth(2).locator(".name").inner_text()
        page.keyboard.press("Escape")
        assert page.is_hidden("#viewer")

        # More like this, from the first card: the picture and its copies are left out.
        first = page.locator("#grid .card").first
        picked = first.locator(".name").inner_text()
        first.locator(".more").click()
        page.wait_for_function(
            "() => document.getElementById('message').textContent.includes('like the one you picked')"
        )
        page.wait_for_function("() => document.querySelectorAll('#grid .card').length >= 4")
        thumbnails_shown(page, page.locator("#grid .card").count())
        assert picked not in page.locator("#grid .card .name").all_inner_texts()

        # A filter applies at once.
        page.select_option("#filters select[name=type]", "png")
        page.wait_for_function("() => document.getElementById('message').textContent.includes('No matching')")

        # Drop a picture: its twin in the library comes first.
        page.select_option("#filters select[name=type]", "")
        drop_file(page, jpeg_bytes(5), "holiday.jpg", "image/jpeg")
        page.wait_for_function("() => document.getElementById('message').textContent.includes('like holiday.jpg')")
        thumbnails_shown(page, 7)
        assert page.locator("#grid .card .name").first.inner_text() == "img5.jpg"

        # Paste a picture (a screenshot tool's clipboard): the same search.
        page.evaluate(
            """b64 => {
                 const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                 const transfer = new DataTransfer();
                 transfer.items.add(new File([bytes], 'image.png', { type: 'image/png' }));
                 document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true }));
               }""",
            __import__("base64").b64encode(png_bytes(3)).decode(),
        )
        page.wait_for_function("() => document.getElementById('message').textContent.includes('like image.png')")
        thumbnails_shown(page, 7)
        assert page.locator("#grid .card .name").first.inner_text() == "img3.jpg"

        # A file that is not a picture: one clear sentence.
        drop_file(page, b"just some text", "notes.txt", "text/plain")
        assert "not a picture" in page.inner_text("#message")

        shot = page.screenshot()  # bytes: path= would start a writer thread in Playwright's loop
        (tmp_path / "gallery.png").write_bytes(shot)
        with Image.open(io.BytesIO(shot)) as image:
            assert image.size == (1280, 900)
    finally:
        context.close()
    assert errors == [], errors
    assert everything_under(gallery.upload_dir) == set()


@pytest.mark.slow
def test_the_full_view_names_every_sibling_of_a_pair(chromium, gallery, library):
    pics, config = library
    from rawkit import write_dng

    write_image(pics / "IMG_0010.JPG", seed=10, size=(640, 480), fmt="JPEG")
    write_dng(pics / "IMG_0010.DNG", Image.new("RGB", (64, 48), "purple"))
    (pics / "IMG_0010.MOV").write_bytes(b"\x00\x00\x00\x14ftypqt  the live video half")
    CliRunner().invoke(cli, ["--state-dir", str(config.state_dir), "--model", config.model, "index", str(pics)])
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(gallery.url)
        page.fill("#q", "a red car")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#grid .card').length >= 8")
        page.locator("#grid .card", has_text="IMG_0010.JPG").locator("img").click()
        page.wait_for_selector("#viewer:not([hidden])")
        page.wait_for_function("() => document.getElementById('v-details').textContent.includes('Siblings')")
        assert "IMG_0010.DNG, IMG_0010.MOV" in page.inner_text("#v-details")
    finally:
        context.close()


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("pics", "The folder must be a whole path from /, such as /home/me/Pictures, not 'pics'."),
        ("/no/such/folder", "There is no folder /no/such/folder."),
    ],
)
def test_the_in_folder_box_takes_a_whole_path_that_is_there_or_says_why_not(browser, library, folder, message):
    """A relative folder was the gallery's own working folder: a search that silently found nothing."""
    for route in ("/api/search?q=beach&", "/api/dupes?"):
        reply = browser.get(f"{route}in={quote(folder)}")
        assert (reply.status, reply.json()["error"]) == (400, message), route
    pics, _ = library
    assert len(browser.get(f"/api/search?q=beach&in={quote(str(pics / 'sub'))}").json()["hits"]) == 1


CAMERA_NAMES = [f"IMG_2023011{i}_12000{i}.jpg" for i in range(5)]  # the names phones give, 23 letters


@pytest.mark.slow
def test_the_gallery_opens_on_the_newest_pictures_with_their_whole_names(chromium, tmp_path, tiny_model):
    pics = tmp_path / "pics"
    for i, name in enumerate(CAMERA_NAMES):
        write_image(pics / name, seed=i, size=(320, 240))
        os.utime(pics / name, (1_600_000_000 + i * 86400, 1_600_000_000 + i * 86400))  # a day apart, no EXIF
    shutil.copy(pics / CAMERA_NAMES[0], pics / "copy.jpg")  # the same picture: shown once
    os.utime(pics / "copy.jpg", (1_500_000_000, 1_500_000_000))
    state = tmp_path / "state"
    args = ["--state-dir", str(state), "--model", str(tiny_model)]
    assert CliRunner().invoke(cli, [*args, "index", str(pics)]).exit_code == 0
    config = config_module.load(None, {"state_dir": state, "model": str(tiny_model), "device": "cpu"}, env={})
    server = Gallery(config, lambda name: load_embedder(name, device="cpu", batch_size=8), port=0)
    server.start()
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url)

        thumbnails_shown(page, 5)  # before any search: the pictures, newest first, each once
        names = page.locator("#grid .card .name")
        assert names.all_inner_texts() == CAMERA_NAMES[::-1]
        assert page.locator("#grid .card .score").first.inner_text() == "2020-09-17"  # the day, not a score
        assert "most recent" in page.inner_text("#message")
        cut = page.evaluate(
            "() => [...document.querySelectorAll('#grid .card .name')]"
            ".filter(name => name.scrollWidth > name.clientWidth).length"
        )
        assert cut == 0, "a camera's file name fits its card whole"
        clipped = page.evaluate(
            """() => [...document.querySelectorAll('#filters input[placeholder]')].filter(input => {
                 if (input.offsetParent === null) return false;  // hidden: the duplicates' threshold
                 const style = getComputedStyle(input);
                 const context = document.createElement('canvas').getContext('2d');
                 context.font = `${style.fontSize} ${style.fontFamily}`;
                 const arrows = input.type === 'number' ? 20 : 0;  // the number box's up and down arrows
                 const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
                 return context.measureText(input.placeholder).width + arrows > room;
               }).map(input => input.name)"""
        )
        assert clipped == [], "every box shows its whole placeholder"

        page.fill("#filters input[name=in]", "pics")
        page.fill("#q", "a red car")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.getElementById('message').classList.contains('error')")
        assert page.inner_text("#message").startswith("The folder must be a whole path from /")
    finally:
        context.close()
        server.stop()
    assert errors == [], errors


@pytest.mark.slow
def test_the_status_line_follows_the_daemon_while_it_works(chromium, tmp_path, tiny_model):
    pics = tmp_path / "pics"
    for i in range(3):
        write_image(pics / f"img{i}.jpg", seed=i, size=(320, 240))
    with DaemonProcess(tmp_path, tiny_model, [pics]) as daemon:
        daemon.start()
        wait_until(lambda: daemon.status()["counts"]["contents"] >= 3, what="3 images indexed")
        config = config_module.load(
            None, {"state_dir": daemon.state_dir, "model": str(tiny_model), "socket_path": daemon.socket}, env={}
        )
        server = Gallery(config, lambda name: load_embedder(name, device="cpu"), port=0)
        server.start()
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(server.url)
            page.wait_for_function("() => document.getElementById('status').textContent.includes('3 images')")
            write_image(pics / "arrived.jpg", seed=7, size=(320, 240))
            page.wait_for_function(
                "() => document.getElementById('status').textContent.includes('last indexed: arrived.jpg')",
                timeout=60000,
            )
            text = page.inner_text("#status")
        finally:
            context.close()
            server.stop()

    assert "4 images" in text and "daemon not running" not in text


@pytest.mark.slow
def test_more_results_load_as_the_grid_scrolls(chromium, tmp_path, tiny_model):
    pics = tmp_path / "pics"
    for i in range(100):
        write_image(pics / f"p{i:03d}.jpg", seed=100 + i, size=(64, 48))
    state = tmp_path / "state"
    indexed = CliRunner().invoke(cli, ["--state-dir", str(state), "--model", str(tiny_model), "index", str(pics)])
    assert indexed.exit_code == 0, indexed.output
    config = config_module.load(None, {"state_dir": state, "model": str(tiny_model), "device": "cpu"}, env={})
    server = Gallery(config, lambda name: load_embedder(name, device="cpu", batch_size=8), port=0)
    server.start()
    context = chromium.new_context(viewport={"width": 1000, "height": 700})
    try:
        page = context.new_page()
        page.goto(server.url)
        page.fill("#q", "anything")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#grid .card').length >= 24")
        first = page.locator("#grid .card").count()
        while page.locator("#grid .card").count() < 100:
            before = page.locator("#grid .card").count()
            page.mouse.wheel(0, 5000)
            page.wait_for_function(f"() => document.querySelectorAll('#grid .card').length > {before}", timeout=20000)
        thumbnails_shown(page, 100)
        ids = page.eval_on_selector_all("#grid .card", "cards => cards.map(c => c.dataset.id)")
        page.wait_for_timeout(500)
        final = page.locator("#grid .card").count()
    finally:
        context.close()
        server.stop()

    assert first < 100, "everything loaded at once: nothing was left for scrolling"
    assert final == 100 and len(set(ids)) == 100


# -- duplicates -----------------------------------------------------------------------------------

# The tiny random-weight model's threshold for these flat colour grids (see tests/integration/test_dupes.py).
TINY_THRESHOLD = 0.9993


@pytest.fixture
def dupes_library(library, tiny_model) -> tuple[Path, config_module.Config]:
    """The library plus a half-size, brightened, re-encoded img1 (a near-duplicate) next to img0's exact copy."""
    pics, config = library
    smaller = ImageEnhance.Brightness(picture(1, (320, 240))).enhance(1.03)
    smaller.save(pics / "img1 small.jpg", quality=80)
    result = CliRunner().invoke(
        cli, ["--state-dir", str(config.state_dir), "--model", str(tiny_model), "index", str(pics)]
    )
    assert result.exit_code == 0, result.output
    return pics, config


def test_dupes_lists_groups_keeper_first_by_id_behind_the_token(gallery, dupes_library):
    pics, _ = dupes_library
    stranger = Browser(gallery)
    assert stranger.get(f"/api/dupes?threshold={TINY_THRESHOLD}").status == 403
    browser = Browser(gallery)
    browser.log_in()

    reply = browser.get(f"/api/dupes?threshold={TINY_THRESHOLD}")
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["threshold"] == TINY_THRESHOLD
    assert b"/pics/" not in reply.body  # files are named by id, never by path
    groups = {g["kind"]: g for g in answer["groups"]}
    assert answer["total"] == 2 and set(groups) == {"exact", "near"}
    exact = [m["name"] for m in groups["exact"]["members"]]
    assert exact == ["img0.jpg", "copy of img0.jpg"]  # same pixels: the shorter path keeps
    assert groups["exact"]["members"][1]["same_content"] is True
    near = groups["near"]["members"]
    assert [m["name"] for m in near] == ["img1.jpg", "img1 small.jpg"]  # more pixels keeps
    assert (near[0]["width"], near[0]["height"], near[1]["width"], near[1]["height"]) == (640, 480, 320, 240)
    assert near[0]["score"] == 1.0 and TINY_THRESHOLD <= near[1]["score"] < 1.0
    assert near[1]["bytes"] == (pics / "img1 small.jpg").stat().st_size
    assert groups["near"]["reclaimable"] == near[1]["bytes"]
    for member in near:  # each id opens the thumbnail and the full view
        assert browser.get(f"/thumb/{member['id']}").headers["content-type"] == "image/jpeg"
        assert browser.get(f"/api/item/{member['id']}").json()["name"] == member["name"]

    # The page's filters narrow the comparison, as `imgd dupes --type png` does; paging by group.
    assert browser.get(f"/api/dupes?threshold={TINY_THRESHOLD}&type=png").json()["groups"] == []
    page = browser.get(f"/api/dupes?threshold={TINY_THRESHOLD}&offset=1&limit=1").json()
    assert len(page["groups"]) == 1 and page["groups"][0]["kind"] == answer["groups"][1]["kind"]
    assert page["more"] is False and page["total"] == 2
    # Exact copies group at any threshold; near ones only from theirs.
    strict = browser.get(f"/api/dupes?threshold={(1 + near[1]['score']) / 2}").json()
    assert [g["kind"] for g in strict["groups"]] == ["exact"]


def test_similar_and_dupes_name_their_files_without_a_catalog_read_per_file(gallery, dupes_library, monkeypatch):
    """Answers carry content ids: "more like this" sends the picked one's, and duplicate members come
    with theirs, so the gallery looks up no path and reads its catalog for no member."""
    from imgd.daemon.store.catalog import Catalog

    browser = Browser(gallery)
    browser.log_in()
    picked = next(h for h in ids_of(browser) if h["name"] == "img0.jpg")
    reads: list[str] = []
    readers = gallery.backend._readers
    get = readers.get
    monkeypatch.setattr(readers, "get", lambda: reads.append("gallery catalog") or get())
    get_file = Catalog.get_file
    monkeypatch.setattr(Catalog, "get_file", lambda self, path: reads.append(path) or get_file(self, path))

    similar = browser.get(f"/api/similar/{picked['id']}").json()["hits"]
    groups = browser.get(f"/api/dupes?threshold={TINY_THRESHOLD}").json()["groups"]

    assert reads == []
    assert {h["name"] for h in similar} >= {f"img{i}.jpg" for i in range(2, 6)} and "img0.jpg" not in {
        h["name"] for h in similar
    }
    members = [m for g in groups for m in g["members"]]
    assert len(groups) == 2 and len(members) == 4
    monkeypatch.undo()
    for member in members:  # each id names its file
        assert browser.get(f"/api/item/{member['id']}").json()["name"] == member["name"]


@pytest.mark.parametrize("threshold", ["0", "1.5", "nan", "high"])
def test_a_bad_dupes_threshold_is_one_sentence(browser, threshold):
    reply = browser.get(f"/api/dupes?threshold={threshold}")
    assert reply.status == 400
    assert reply.json()["error"] == f"The threshold must be a number above 0 and at most 1, not '{threshold}'."


@pytest.mark.slow
def test_a_person_reviews_duplicates_keeper_first_and_opens_one(chromium, gallery, dupes_library):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(gallery.url)
        assert page.is_hidden("#filters input[name=threshold]")  # a duplicates control only
        page.click("#dupes")
        page.wait_for_function("() => document.getElementById('message').textContent.includes('similarity')")
        page.fill("#filters input[name=threshold]", str(TINY_THRESHOLD))
        page.press("#filters input[name=threshold]", "Enter")
        page.wait_for_function(
            "t => document.getElementById('message').textContent.includes('2 groups') &&"
            " document.getElementById('message').textContent.includes(t)",
            arg=f"≥ {TINY_THRESHOLD}",
        )
        thumbnails_shown(page, 4)
        assert page.url.endswith("#dupes")
        near = page.locator(".group[data-kind=near]")
        cards = near.locator(".card")
        assert cards.count() == 2
        assert cards.nth(0).get_attribute("class").split() == ["card", "keeper"]
        assert cards.nth(0).locator(".badge").inner_text() == "keeper"
        assert cards.nth(0).locator(".name").inner_text() == "img1.jpg"
        assert re.fullmatch(r"640 × 480 · \d+\.\d KiB", cards.nth(0).locator(".facts").inner_text())  # as the CLI
        assert cards.nth(1).locator(".name").inner_text() == "img1 small.jpg"
        assert re.fullmatch(r"[01]\.\d{4}", cards.nth(1).locator(".score").inner_text())  # its score, not "copy"
        assert float(cards.nth(1).locator(".score").inner_text()) >= TINY_THRESHOLD
        assert cards.nth(1).locator(".facts").inner_text().startswith("320 × 240 · ")
        exact = page.locator(".group[data-kind=exact] .card")
        assert exact.nth(0).locator(".name").inner_text() == "img0.jpg"
        assert exact.nth(1).locator(".score").inner_text() == "copy"
        # No control on the page deletes, moves or trashes a file.
        controls = " ".join(page.locator("button, a, [role=button]").all_inner_texts())
        assert "More like this" in controls
        assert not re.search(r"delete|trash|remove|move to", controls, re.IGNORECASE)

        # The full view of the near copy: its own pixels and its score to the keeper.
        cards.nth(1).locator("img").click()
        page.wait_for_selector("#viewer:not([hidden])")
        assert page.inner_text("#v-name") == "img1 small.jpg"
        page.wait_for_function("() => document.getElementById('full').naturalWidth > 0")
        page.wait_for_function("() => document.getElementById('v-details').textContent.includes('320 × 240')")
        assert "Score to keeper" in page.inner_text("#v-details")
        page.keyboard.press("Escape")

        # Back to searching: the duplicates controls go away.
        page.fill("#q", "a red car")
        page.press("#q", "Enter")
        thumbnails_shown(page, 8)
        assert page.is_hidden("#filters input[name=threshold]")
    finally:
        context.close()
    assert errors == [], errors


def save_a_search_with_matches(library) -> None:
    """A saved search `cars` that copied img2.jpg and ran a hook on it, and failed on img3.jpg."""
    from imgd.daemon.protocol import SearchRequest, Term
    from imgd.daemon.store import alerts as rows
    from imgd.daemon.store.catalog import Catalog

    pics, config = library
    catalog = Catalog(config.catalog_path)
    try:
        query = SearchRequest(terms=(Term("text", "a red car"), Term("image", str(pics / "img1.jpg"), -1.0)))
        action = {"command": ["secret-hook", "--token", "xyz"], "file_action": "copy", "folder": "/private/album"}
        rows.save(catalog, "cars", query.to_message(), action)
        rows.log_action(catalog, "cars", str(pics / "img2.jpg"), 0.31, "copy", "ok")
        rows.log_action(catalog, "cars", str(pics / "img2.jpg"), 0.31, "exec", "ok")  # the same picture: shown once
        rows.log_action(catalog, "cars", str(pics / "img3.jpg"), 0.29, "exec", "failed", "exit 1")
    finally:
        catalog.close()


def test_saved_searches_are_listed_with_their_recent_matches_by_id_and_nothing_to_run(browser, library):
    pics, _ = library
    save_a_search_with_matches(library)

    reply = browser.get("/api/alerts")

    assert reply.status == 200, reply.body
    (shown,) = reply.json()["alerts"]
    assert shown["name"] == "cars" and shown["query"] == "a red car, -1:(a picture)"
    assert shown["acts"] == ["copy", "exec"]
    assert [(hit["name"], hit["score"]) for hit in shown["recent"]] == [("img2.jpg", 0.31)]
    for secret in (b"secret-hook", b"xyz", b"/private/album", str(pics).encode()):
        assert secret not in reply.body
    assert browser.get(f"/thumb/{shown['recent'][0]['id']}").status == 200
    assert browser.request("POST", "/api/alerts").status == 405  # read-only: nothing is created here


@pytest.mark.slow
def test_a_person_looks_at_the_saved_searches_and_their_matches(chromium, gallery, library):
    save_a_search_with_matches(library)
    page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(gallery.url)
        page.click("#alerts")
        thumbnails_shown(page, 1)
        assert page.inner_text("#grid h3").startswith("cars: a red car, -1:(a picture) (copy and exec)")
        assert page.locator("#grid .card .name").all_inner_texts() == ["img2.jpg"]
        assert not page.locator("#grid input, #grid form").count()  # nothing here makes or changes one
        assert errors == []
    finally:
        page.context.close()
