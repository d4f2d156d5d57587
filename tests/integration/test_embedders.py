"""The model backends: ONNX export, its verification and cache, parity with torch, the text model."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import picture
from imgd.daemon.embedders import export, load_embedder, onnx, prepare
from imgd.daemon.embedders.store import ModelStore
from imgd.daemon.errors import ModelUnavailable
from imgd.daemon.ingest import imaging
from PIL import Image

HEAVY = ("torch", "transformers", "sentence_transformers")
TEXTS = ["a dog on the beach", "Ein Hund am Strand, ¿dónde está? 東京", " ".join(["a long caption"] * 60)]


@pytest.fixture(autouse=True)
def export_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has torch loaded already: exporting here saves a child's start-up per export.

    tests/test_backends.py covers the child; the subprocess tests below use it too.
    """
    monkeypatch.setattr(prepare, "IN_CHILD", False)


@pytest.fixture
def onnx_state(exported_models: Path, tmp_path: Path) -> Path:
    """A state folder of its own holding a copy of the session's export, free to damage."""
    state = tmp_path / "onnx-state"
    shutil.copytree(exported_models, state / "models")
    return state


@pytest.fixture(scope="module")
def torch_embedder(tiny_model: Path):
    return load_embedder(str(tiny_model), device="cpu", precision="float32", backend="torch")


def camera_jpeg(tmp_path: Path, seed: int, size: tuple[int, int] = (2400, 1800)) -> Image.Image:
    """A camera-sized JPEG decoded the way imgd decodes it (draft mode), then prepared by the model."""
    buffer = io.BytesIO()
    picture(seed, size).save(buffer, format="JPEG", quality=90)
    path = tmp_path / f"camera-{seed}.jpg"
    path.write_bytes(buffer.getvalue())
    image, _ = imaging.decode(str(path), buffer.getvalue(), 200_000_000)
    return image


def onnx_embedder(model: Path, state: Path, **kwargs: object):
    return load_embedder(str(model), device="cpu", backend="onnx", state_dir=state, **kwargs)


def test_onnx_vectors_equal_torch_vectors(tiny_model, onnx_state, torch_embedder, tmp_path):
    embedder = onnx_embedder(tiny_model, onnx_state)
    assert embedder.backend == "onnx" and torch_embedder.backend == "torch"
    images = [camera_jpeg(tmp_path, seed, size) for seed, size in enumerate([(2400, 1800), (1800, 2400), (50, 20)])]
    ours = embedder.encode_images([embedder.prepare(image) for image in images])
    theirs = torch_embedder.encode_images([torch_embedder.prepare(image) for image in images])
    assert [embedder.prepare(i).size for i in images] == [torch_embedder.prepare(i).size for i in images]
    assert np.sum(ours * theirs, axis=1).min() >= 0.9999
    texts = np.sum(embedder.encode_texts(TEXTS) * torch_embedder.encode_texts(TEXTS), axis=1)
    assert texts.min() >= 0.9999
    assert embedder.fingerprint == torch_embedder.fingerprint and embedder.dim == torch_embedder.dim


def test_second_load_uses_the_export_without_torch(tiny_model, onnx_state):
    """With the export present, loading and embedding imports neither torch nor transformers."""
    script = f"""
import json, sys
from PIL import Image
from imgd.daemon.embedders import load_embedder
e = load_embedder({str(tiny_model)!r}, device="cpu", backend="onnx", state_dir={str(onnx_state)!r})
e.encode_images([e.prepare(Image.new("RGB", (640, 480), "red"))]); e.encode_texts(["a dog"])
print(json.dumps([e.fingerprint, sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    fingerprint, heavy = json.loads(out.stdout)
    assert heavy == []
    assert (onnx_state / "models" / fingerprint / "manifest.json").exists()


def test_changed_model_files_get_a_new_export(tiny_model, onnx_state, tmp_path, torch_embedder):
    """The export is keyed by the weights: the same weights elsewhere reuse it, other weights do not."""
    copy = tmp_path / "tiny-copy"
    shutil.copytree(tiny_model, copy)
    same = onnx_embedder(copy, onnx_state)
    assert same.fingerprint == torch_embedder.fingerprint
    assert len([p for p in (onnx_state / "models").iterdir() if not p.name.startswith(("names", "."))]) == 2

    other = tmp_path / "tiny-other"
    from clipkit import build_clip

    build_clip(other, seed=1)
    changed = onnx_embedder(other, onnx_state)
    assert changed.fingerprint != same.fingerprint
    assert (onnx_state / "models" / changed.fingerprint / "image.onnx").exists()


def test_missing_exported_file_is_rebuilt(tiny_model, onnx_state, torch_embedder):
    embedder = onnx_embedder(tiny_model, onnx_state)
    image_file = onnx_state / "models" / embedder.fingerprint / "image.onnx"
    image_file.unlink()
    again = onnx_embedder(tiny_model, onnx_state)
    assert image_file.exists()
    image = picture(3, (300, 200))
    vector = again.encode_images([again.prepare(image)])[0]
    assert float(vector @ torch_embedder.encode_images([torch_embedder.prepare(image)])[0]) >= 0.9999


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_exported_file_is_rebuilt_never_served(tiny_model, onnx_state, torch_embedder, damage, caplog):
    fingerprint = torch_embedder.fingerprint
    image_file = onnx_state / "models" / fingerprint / "image.onnx"
    data = bytearray(image_file.read_bytes())
    if damage == "flip":  # same size: only the probe check can tell
        middle = len(data) // 2
        data[middle : middle + 4096] = bytes(b ^ 0x5A for b in data[middle : middle + 4096])
    else:
        del data[len(data) // 2 :]
    image_file.write_bytes(bytes(data))
    embedder = onnx_embedder(tiny_model, onnx_state)
    image = picture(4, (300, 200))
    with caplog.at_level(logging.WARNING):
        vector = embedder.encode_images([embedder.prepare(image)])[0]
    assert float(vector @ torch_embedder.encode_images([torch_embedder.prepare(image)])[0]) >= 0.9999
    assert image_file.read_bytes() != bytes(data)
    if damage == "flip":
        assert "is damaged" in caplog.text


def test_export_that_disagrees_with_torch_is_refused(tiny_model, tmp_path, monkeypatch, caplog):
    """Verification is what stands between a bad export and the catalog: a wrong preprocessing fails it."""
    real = export.image_prep_of

    def skewed(st_model: object):
        prep = real(st_model)
        return prep.__class__(**{**prep.as_dict(), "mean": (0.9, 0.1, 0.5)})

    monkeypatch.setattr(export, "image_prep_of", skewed)
    with pytest.raises(ModelUnavailable, match=r"cannot use the ONNX backend: the exported image model disagrees"):
        onnx_embedder(tiny_model, tmp_path / "state")
    assert not [p for p in (tmp_path / "state" / "models").iterdir() if p.name not in ("names",)]
    # torch runs only when named: auto says what failed and how to ask for torch, and loads nothing
    with pytest.raises(
        ModelUnavailable, match=r"on ONNX Runtime or OpenVINO: the exported image model disagrees.*--backend torch"
    ):
        load_embedder(str(tiny_model), device="cpu", backend="auto", state_dir=tmp_path / "state")
    assert (
        load_embedder(str(tiny_model), device="cpu", backend="torch", state_dir=tmp_path / "state").backend == "torch"
    )


def test_auto_backend_serves_an_export_where_it_can(tiny_model, onnx_state):
    # Which exported runtime is measured here (tests/integration/test_backends.py pins the timings).
    chosen = load_embedder(str(tiny_model), device="cpu", backend="auto", state_dir=onnx_state).backend
    assert chosen in ("onnx", "openvino")
    with pytest.raises(ModelUnavailable, match="needs a state folder"):  # nowhere to export to, and no torch unasked
        load_embedder(str(tiny_model), device="cpu", backend="auto")


def test_store_ignores_a_half_written_export(tmp_path):
    store = ModelStore(tmp_path / "models")
    staging = store.staging("abc")
    (staging / "image.onnx").write_bytes(b"x" * 10)
    assert store.manifest("abc") is None  # never published
    manifest = {"format": 1, "fingerprint": "abc", "image": {"files": {"image.onnx": 10}}}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    store.publish(staging, "abc")
    assert store.manifest("abc") == manifest
    (store.folder("abc") / "image.onnx").write_bytes(b"x" * 5)
    assert store.manifest("abc") is None


# -- the separate text model ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_text_model_answers_queries(tiny_model, text_model, onnx_state, backend):
    from sentence_transformers import SentenceTransformer

    embedder = load_embedder(
        str(tiny_model), device="cpu", precision="float32", backend=backend, state_dir=onnx_state,
        text_model=str(text_model),
    )  # fmt: skip
    own = SentenceTransformer(str(text_model), device="cpu").encode(TEXTS[:2], normalize_embeddings=True)
    plain = load_embedder(str(tiny_model), device="cpu", backend="torch").encode_texts(TEXTS[:2])
    routed = embedder.encode_texts(TEXTS[:2])
    assert np.sum(routed * own, axis=1).min() >= 0.9999
    assert np.sum(routed * plain, axis=1).max() < 0.99  # not the CLIP model's own text tower
    assert embedder.dim == 32 and embedder.text_name == str(text_model.resolve())


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_text_model_of_another_dimension_is_refused(tiny_model, tmp_path, backend):
    from clipkit import build_text_model

    wide = build_text_model(tmp_path / "text-48", dim=48)
    with pytest.raises(ModelUnavailable, match=r"gives 48-dimensional vectors but the image model .* gives 32"):
        load_embedder(
            str(tiny_model), device="cpu", backend=backend, state_dir=tmp_path / "state", text_model=str(wide)
        )


def test_onnx_embedder_frees_and_reloads_the_image_model(tiny_model, onnx_state):
    embedder = onnx_embedder(tiny_model, onnx_state)
    first = embedder.encode_images([embedder.prepare(picture(5))])
    assert embedder.image_loaded and embedder.release_images()
    assert not embedder.image_loaded and not embedder.release_images()
    again = embedder.encode_images([embedder.prepare(picture(5))])
    assert embedder.image_loaded and embedder.image_loads == 2
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert embedder.backend == "onnx" and isinstance(embedder, onnx.OnnxEmbedder)


# -- the catalog knows its vectors by fingerprint --------------------------------------------


def ask(searcher, k: int, text: str | None = None, image: str | None = None) -> list[dict]:
    from imgd.daemon.protocol import Options, SearchRequest, Term

    term = Term("image", image) if image else Term("text", text or "")
    return searcher.search(SearchRequest(terms=(term,), options=Options(k=k)))


def index_folder(config, embedder, folder: Path):
    from imgd.daemon.service.library import open_library

    library = open_library(config, embedder)
    try:
        summary = library.engine.reconcile([str(folder)])
        library.engine.save_index()
        return summary, library.reembedding
    finally:
        library.close()


def catalog_state(config) -> tuple[str | None, int, dict[int, bytes]]:
    from imgd.daemon.store.catalog import Catalog

    catalog = Catalog(config.catalog_path, readonly=True)
    try:
        vectors = dict(catalog.conn.execute("SELECT content_id, vector FROM vectors").fetchall())
        return catalog.get_meta("fingerprint"), catalog.generation, vectors
    finally:
        catalog.close()


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    from conftest import write_image

    for i in range(4):
        write_image(tmp_path / "pics" / f"img{i}.jpg", seed=i)
    return tmp_path / "pics"


def test_catalog_built_with_torch_is_served_by_onnx_without_reembedding(
    tiny_model, onnx_state, torch_embedder, make_config, pics
):
    from imgd.daemon.service.library import open_searcher

    config = make_config(state_dir=onnx_state)
    index_folder(config, torch_embedder, pics)
    before = catalog_state(config)
    assert before[0] == torch_embedder.fingerprint and len(before[2]) == 4

    summary, reembedding = index_folder(config, onnx_embedder(tiny_model, onnx_state), pics)
    assert not reembedding and summary.unchanged == 4 and summary.added == 0
    assert catalog_state(config) == before
    searcher = open_searcher(config, lambda name: onnx_embedder(tiny_model, onnx_state))
    try:
        hits = ask(searcher, 1, image=str(pics / "img2.jpg"))
        assert Path(hits[0]["path"]).name == "img2.jpg" and hits[0]["score"] > 0.999
        assert ask(searcher, 4, text="a red square")  # the text tower answers too
    finally:
        searcher.catalog.close()


def test_model_files_with_other_weights_are_refused_with_a_clear_sentence(tmp_path, tiny_model, make_config, pics):
    from clipkit import build_clip
    from imgd.daemon.errors import ModelMismatch
    from imgd.daemon.service.library import open_library, open_searcher

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    state = tmp_path / "state"
    config = make_config(state_dir=state, model=str(model))
    index_folder(config, load_embedder(str(model), device="cpu", backend="torch", state_dir=state), pics)
    other = build_clip(tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # same name, other weights

    changed = onnx_embedder(model, state)
    with pytest.raises(
        ModelMismatch, match=r"now holds other weights than the catalog's vectors were made with .* run `imgd index"
    ):
        open_library(config, changed)
    searcher = open_searcher(config, lambda name: load_embedder(name, device="cpu", backend="onnx", state_dir=state))
    try:
        with pytest.raises(ModelMismatch, match="other weights"):
            ask(searcher, 1, text="a dog")
    finally:
        searcher.catalog.close()

    from click.testing import CliRunner
    from imgd.cli.main import cli

    args = ["--state-dir", str(state), "--model", str(model), "--device", "cpu", "--backend", "onnx"]
    for command in (["search", "--direct", "a dog"], ["index", str(pics)]):
        result = CliRunner().invoke(cli, [*args, *command])
        assert result.exit_code == 2, result.output
        assert "now holds other weights than the catalog's vectors" in result.stderr
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_catalog_from_before_fingerprints_gets_one_on_first_open(make_config, torch_embedder, pics):
    from imgd.daemon.store.catalog import Catalog

    config = make_config()
    index_folder(config, torch_embedder, pics)
    catalog = Catalog(config.catalog_path)
    with catalog.transaction():
        catalog.conn.execute("DELETE FROM meta WHERE key = 'fingerprint'")
    catalog.close()
    _, generation, vectors = catalog_state(config)

    summary, reembedding = index_folder(config, torch_embedder, pics)
    assert not reembedding and summary.added == 0
    assert catalog_state(config) == (torch_embedder.fingerprint, generation, vectors)


# -- no torch on the hot paths; the daemon frees its image model when idle ---------------------


def heavy_imports(importtime_log: str) -> list[str]:
    """Modules from torch/transformers in a PYTHONPROFILEIMPORTTIME log."""
    names = [line.rsplit("|", 1)[1].strip() for line in importtime_log.splitlines() if line.startswith("import time:")]
    return [name for name in names if name.split(".")[0] in HEAVY]


def imgd_env(state: Path, model: Path, **extra: str) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "IMGD_BACKEND": "onnx",
        "IMGD_STATE_DIR": str(state),
        "IMGD_MODEL": str(model),
        "IMGD_DEVICE": "cpu",
        "PYTHONPROFILEIMPORTTIME": "1",
        **extra,
    }


def onnx_daemon(tmp_path: Path, model: Path, pics: Path, exported_models: Path, env: dict[str, str]):  # noqa: ANN201
    """A daemon over pics with the imgd_env settings, its state folder holding the session's ONNX export."""
    from daemonkit import DaemonProcess

    daemon = DaemonProcess(tmp_path, model, [pics], **{k: env[k] for k in env if k.startswith(("IMGD", "PY"))})
    shutil.copytree(exported_models, daemon.state_dir / "models")
    return daemon


def imgd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgd.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_index_imports_no_torch_with_the_export_present(tiny_model, onnx_state, pics):
    result = imgd("index", str(pics), env=imgd_env(onnx_state, tiny_model))

    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 added" in result.stderr
    assert heavy_imports(result.stderr) == []


@pytest.mark.slow
def test_a_daemon_opens_the_image_model_with_the_first_picture_not_at_start(
    tmp_path, tiny_model, exported_models, pics
):
    # At 1M an unchanged library's start held the image model (0.85 GB of ONNX Runtime) through the reconcile
    # for nothing: bench_daemon_scale's run 2 peaked at 2.3 GB with it.
    from conftest import write_image
    from daemonkit import wait_until

    env = imgd_env(tmp_path / "state", tiny_model, IMGD_IDLE_UNLOAD="600")
    daemon = onnx_daemon(tmp_path, tiny_model, pics, exported_models, env)
    with daemon:
        daemon.start()
        assert daemon.wait_idle()["model"]["image_loaded"], "the pictures found at start opened it"
        assert daemon.stop() == 0
        daemon.start()  # the library is indexed: nothing to embed
        assert not daemon.wait_idle()["model"]["image_loaded"], "an unchanged library's start opens no image model"
        write_image(pics / "new.jpg", seed=42)
        wait_until(lambda: str(pics / "new.jpg") in daemon.catalog_paths(), timeout=60, what="the new file indexed")
        assert daemon.status()["model"]["image_loaded"]
        assert daemon.search_image(pics / "new.jpg")[0]["path"] == str(pics / "new.jpg")
        assert daemon.stop() == 0


@pytest.mark.slow
def test_daemon_on_onnx_frees_the_image_model_when_idle_and_reloads_it(
    tmp_path, tiny_model, text_model, exported_models, pics
):
    from conftest import write_image
    from daemonkit import wait_until

    env = imgd_env(tmp_path / "state", tiny_model, IMGD_IDLE_UNLOAD="1", IMGD_TEXT_MODEL=str(text_model))
    daemon = onnx_daemon(tmp_path, tiny_model, pics, exported_models, env)
    with daemon:
        daemon.start()
        daemon.wait_idle()
        # The status flag and the log line are two writes: under load the test could read between them.
        wait_until(
            lambda: not daemon.status()["model"]["image_loaded"] and "freed the image model after" in daemon.log(),
            timeout=30,
            what="the image model freed, and said so in the log",
        )
        wait_until(  # no query since the start: the text model goes too, and the next query opens it again
            lambda: not daemon.status()["model"]["text_loaded"] and "freed the text model after" in daemon.log(),
            timeout=30,
            what="the text model freed, and said so in the log",
        )
        shown = imgd("status", env=daemon.env)
        assert "onnx, cpu, float32, image and text models freed while idle" in shown.stdout, shown.stdout + shown.stderr
        assert f"text model: {text_model.resolve()}" in shown.stdout

        write_image(pics / "new.jpg", seed=42)
        wait_until(lambda: str(pics / "new.jpg") in daemon.catalog_paths(), timeout=60, what="the new file indexed")
        assert "loaded the image model again" in daemon.log()
        assert daemon.search_image(pics / "new.jpg")[0]["path"] == str(pics / "new.jpg")

        from imgd.daemon.api import client

        through_daemon = client.search(daemon.socket, 5, text="ein Hund am Strand")
        direct = imgd("search", "--direct", "--json", "-k", "5", "ein Hund am Strand", env=env)
        assert direct.returncode == 0, direct.stderr[-2000:]
        assert heavy_imports(direct.stderr) == []
        direct_hits = json.loads(direct.stdout)
        assert [h["path"] for h in direct_hits] == [h["path"] for h in through_daemon]
        assert [h["score"] for h in direct_hits] == pytest.approx([h["score"] for h in through_daemon], abs=1e-5)
        model = daemon.status()["model"]
        assert model["backend"] == "onnx" and model["text"] == str(text_model.resolve())
        assert daemon.stop() == 0
    assert heavy_imports(daemon.log()) == []


@pytest.mark.slow
def test_daemon_keeps_its_text_model_while_queries_come_and_frees_it_once_they_stop(
    tmp_path, tiny_model, exported_models, pics
):
    """The text model idles on queries alone: new files do not keep it, a query within idle_unload does."""
    import time

    from daemonkit import wait_until
    from imgd.daemon.api import client

    env = imgd_env(tmp_path / "state", tiny_model, IMGD_IDLE_UNLOAD="3")
    daemon = onnx_daemon(tmp_path, tiny_model, pics, exported_models, env)
    with daemon:
        daemon.start()
        daemon.wait_idle()
        until, asked = time.monotonic() + 8, 0  # well past idle_unload, a new query a second (a repeated one
        while time.monotonic() < until:  # is answered from the daemon's cache of query vectors)
            assert len(client.search(daemon.socket, 3, text=f"a red square {asked}")) == 3
            assert daemon.status()["model"]["text_loaded"], "freed while queries kept coming"
            assert "freed the text model" not in daemon.log(), "freed (and opened again) while queries kept coming"
            asked += 1
            time.sleep(1)
        wait_until(lambda: not daemon.status()["model"]["text_loaded"], timeout=30, what="the text model freed")
        again = client.search(daemon.socket, 3, text="a blue circle")  # opens it again
        assert daemon.status()["model"]["text_loaded"] and len(again) == 3
        direct = imgd("search", "--direct", "--json", "-k", "3", "a blue circle", env=env)
        assert [h["path"] for h in again] == [h["path"] for h in json.loads(direct.stdout)], direct.stderr[-2000:]
        assert daemon.stop() == 0


@pytest.mark.slow
def test_onnx_vectors_equal_torch_vectors_on_the_vit_b_32_architecture(tmp_path_factory, tmp_path):
    """The real model's shapes (224 px crop, 77-token BPE, 512-d projection), random weights, camera JPEGs.

    Builds (or reuses IMGD_TEST_VITB_DIR) a 600 MB model and exports it: about a minute on a quiet CPU.
    """
    import os

    from clipkit import build_clip

    cached = os.environ.get("IMGD_TEST_VITB_DIR")
    model = build_clip(Path(cached) if cached else tmp_path_factory.mktemp("vitb") / "vit-b-32", size="vit-b-32")
    state = tmp_path / "state"
    ours = load_embedder(str(model), device="cpu", backend="onnx", state_dir=state)
    theirs = load_embedder(str(model), device="cpu", precision="float32", backend="torch", state_dir=state)
    images = [camera_jpeg(tmp_path, seed, size) for seed, size in enumerate([(4000, 3000), (3000, 4000), (1200, 900)])]
    assert [ours.prepare(i).size for i in images] == [theirs.prepare(i).size for i in images]
    got = ours.encode_images([ours.prepare(i) for i in images])
    want = theirs.encode_images([theirs.prepare(i) for i in images])
    assert np.sum(got * want, axis=1).min() >= 0.9999
    assert np.sum(ours.encode_texts(TEXTS) * theirs.encode_texts(TEXTS), axis=1).min() >= 0.9999
    assert ours.fingerprint == theirs.fingerprint and ours.dim == 512


def test_onnx_backend_finds_what_a_query_names_with_the_trained_shapes_model(shapes_model, tmp_path):
    """Parity on a model that knows things: ONNX ranks pictures by a query as torch does, and rightly."""
    import shapekit

    pictures = shapekit.corpus_images(3, 3)
    ours = load_embedder(str(shapes_model), device="cpu", backend="onnx", state_dir=tmp_path / "state")
    theirs = load_embedder(str(shapes_model), device="cpu", precision="float32", backend="torch")
    assert ours.backend == "onnx"
    got = ours.encode_images([ours.prepare(image) for image, _, _ in pictures])
    want = theirs.encode_images([theirs.prepare(image) for image, _, _ in pictures])
    assert np.sum(got * want, axis=1).min() >= 0.9999
    colours = np.array([colour for _, colour, _ in pictures])
    shapes = np.array([shape for _, _, shape in pictures])
    for colour, shape in (("red", "circle"), ("blue", "triangle"), ("yellow", "star")):
        query = f"a {colour} {shape}"
        top = np.argsort(-(got @ ours.encode_texts([query])[0]), kind="stable")[:3]
        assert np.sum(ours.encode_texts([query]) * theirs.encode_texts([query])) >= 0.9999
        assert (colours[top] == colour).all() and (shapes[top] == shape).all(), query


def test_the_fingerprint_of_an_exported_model_is_unchanged(shapes_model):
    """An export is found by the fingerprint of its weights: a new way of computing it would redo every export."""
    from imgd.daemon.embedders import torch as backend

    loaded = backend.load_sentence_transformer(str(shapes_model), "cpu")
    assert backend.fingerprint_of(loaded) == "15093eddfc9092ede749fb985ab43c0f"


def test_the_text_tower_is_exported_in_a_second_process(tiny_model, tmp_path, monkeypatch, torch_embedder):
    """On two cores the text tower is traced beside the image tower, in a forked copy, and verified as before."""
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)  # pytest's own threads, if any, hold no export lock
    monkeypatch.setattr(export.os, "cpu_count", lambda: 2)
    real, pids = export._export_text, tmp_path / "pids"

    def recorded(*args: object) -> dict:
        with open(pids, "a") as out:
            out.write(f"{os.getpid()}\n")
        return real(*args)

    monkeypatch.setattr(export, "_export_text", recorded)
    ours = onnx_embedder(tiny_model, tmp_path / "state")
    assert [int(pid) for pid in pids.read_text().split()] != [os.getpid()] and len(pids.read_text().split()) == 1
    (folder,) = [p for p in (tmp_path / "state" / "models").iterdir() if p.name != "names"]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("image.onnx.")) == [
        "image.onnx",
        "manifest.json",
        "text.onnx",
        "tokenizer.json",
    ]
    assert json.loads((folder / "manifest.json").read_text())["text"]["verified_cosine"] >= 0.9999
    got, want = ours.encode_texts(TEXTS), torch_embedder.encode_texts(TEXTS)
    assert np.sum(got * want, axis=1).min() >= 0.9999


def test_a_text_tower_refused_in_the_second_process_is_refused_here(tiny_model, tmp_path, monkeypatch):
    """The copy's verification failure reaches the user as the same sentence, and nothing half-made is left."""
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(export.os, "cpu_count", lambda: 2)
    real = export.text_prep_of
    monkeypatch.setattr(export, "text_prep_of", lambda st_model: {**real(st_model), "max_length": 4})
    with pytest.raises(ModelUnavailable, match=r"cannot use the ONNX backend: the exported text model disagrees"):
        onnx_embedder(tiny_model, tmp_path / "state")
    assert not [p for p in (tmp_path / "state" / "models").iterdir() if p.name != "names"]


def test_an_image_tower_refused_stops_the_text_towers_process(tiny_model, tmp_path, monkeypatch):
    """A failure on this side ends and reaps the copy: nothing keeps writing into a staging folder that is gone."""
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(export.os, "cpu_count", lambda: 2)
    real_prep, real_start, started = export.image_prep_of, export.ForkedTower.__init__, []

    def skewed(st_model: object):
        prep = real_prep(st_model)
        return prep.__class__(**{**prep.as_dict(), "mean": (0.9, 0.1, 0.5)})

    monkeypatch.setattr(export, "image_prep_of", skewed)

    def start(self: export.ForkedTower, *args: object) -> None:
        real_start(self, *args)
        started.append(self.pid)

    monkeypatch.setattr(export.ForkedTower, "__init__", start)
    with pytest.raises(ModelUnavailable, match=r"the exported image model disagrees"):
        onnx_embedder(tiny_model, tmp_path / "state")
    (pid,) = started
    with pytest.raises(ProcessLookupError):  # not even a zombie: waited for
        os.kill(pid, 0)
    assert not [p for p in (tmp_path / "state" / "models").iterdir() if p.name != "names"]
