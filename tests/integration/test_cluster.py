"""`imgd index --cluster`: decoding and embedding on a real local Ray cluster, the catalog written here.

The cluster run (a subprocess starting a 2-CPU local Ray cluster, no dashboard, nothing sent out) must
leave the same catalog as a local run over the same folder: the same files and contents, vectors equal
to float error, the same metadata, and the broken file recorded as failed. Without Ray, `--cluster` is
one sentence and exit 2.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapekit
from click.testing import CliRunner
from daemonkit import IMGD
from imgd.cli.main import cli


def _catalog(state: Path) -> tuple[dict[str, tuple[str, str | None]], dict[str, np.ndarray], dict[str, tuple]]:
    """path -> (status, hash or error); hash -> vector; hash -> (width, height, type) from the catalog."""
    conn = sqlite3.connect(state / "catalog.db")
    files = {
        path: (status, digest if status == "ok" else error)
        for path, status, digest, error in conn.execute(
            "SELECT f.path, f.status, c.hash, f.error FROM files f LEFT JOIN contents c ON c.id = f.content_id"
        )
    }
    rows = conn.execute("SELECT c.hash, v.vector FROM vectors v JOIN contents c ON c.id = v.content_id")
    vectors = {digest: np.frombuffer(blob, dtype=np.float16) for digest, blob in rows}  # the catalog keeps float16
    media = {
        digest: tuple(row)
        for digest, *row in conn.execute(
            "SELECT c.hash, m.width, m.height, m.taken FROM media m JOIN contents c ON c.id = m.content_id"
        )
    }
    conn.close()
    return files, vectors, media


@pytest.fixture(scope="module")
def pics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster") / "pics"
    folder.mkdir()
    for number, (image, colour, shape) in enumerate(shapekit.corpus_images(1, 5)[:10]):
        image.save(folder / f"{number:02d}-{colour}-{shape}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"not a jpeg, whatever its name says")
    return folder


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray's start-up and each worker's model load: seconds alone, minutes on a loaded machine
def test_a_local_cluster_indexes_what_a_local_run_does(tmp_path, pics, shapes_model):
    args = ["--model", str(shapes_model), "--device", "cpu"]
    local = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "local"), *args, "index", str(pics)])
    env = {**os.environ, "IMGD_DECODE_THREADS": "2", "RAY_USAGE_STATS_ENABLED": "0"}
    state = tmp_path / "cluster"
    clustered = subprocess.run(
        [*IMGD, "--state-dir", str(state), *args, "index", "--cluster", "local", str(pics)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    failed = subprocess.run([*IMGD, "--state-dir", str(state), "failed"], capture_output=True, text=True, env=env)

    assert local.exit_code == 0, local.output
    assert clustered.returncode == 0, clustered.stderr
    assert "10 added, 0 updated, 0 moved, 0 removed, 1 failed" in clustered.stderr
    assert "broken.jpg: not a recognised image format" in failed.stdout
    files, vectors, media = _catalog(state)
    want_files, want_vectors, want_media = _catalog(tmp_path / "local")
    assert files == want_files  # the same paths, contents and failure
    assert vectors.keys() == want_vectors.keys() and len(vectors) == 10
    for digest, vector in vectors.items():
        other = want_vectors[digest].astype(np.float32)
        cosine = float(vector.astype(np.float32) @ other) / float(np.linalg.norm(vector) * np.linalg.norm(other))
        assert cosine >= 0.9999, digest
    assert media == want_media


def test_without_ray_cluster_is_one_sentence(tmp_path, pics, shapes_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where the extra is not installed
    args = ["--state-dir", str(tmp_path / "s"), "--model", str(shapes_model)]
    result = CliRunner().invoke(cli, [*args, "index", "--cluster", "local", str(pics)])

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.endswith(  # one line; `imgd: ` in front from main()
        " --cluster needs Ray, which is not installed; install it with: pip install 'imgd[cluster]'.\n"
    )
    assert not (tmp_path / "s" / "catalog.db").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("127.0.0.1:1", "cannot reach the Ray cluster at '127.0.0.1:1' (Connection refused); is it running?"),
        ("ray://127.0.0.1:1", "cannot reach the Ray cluster at 'ray://127.0.0.1:1' (Connection refused)"),
        ("nowhere", "--cluster takes 'local', 'auto', ray://HOST:PORT or HOST:PORT, not 'nowhere'."),
    ],
)
def test_an_address_nothing_answers_at_is_one_sentence_at_once(tmp_path, pics, shapes_model, address, said):
    args = ["--state-dir", str(tmp_path / "s"), "--model", str(shapes_model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "index", "--cluster", address, str(pics)])

    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and said in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "s" / "catalog.db").exists()  # said before the model loaded and the catalog opened
