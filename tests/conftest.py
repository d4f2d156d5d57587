"""Shared fixtures: an offline tiny CLIP model, image factories, isolated config, leak guards."""

from __future__ import annotations

import io
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tqdm
from PIL import Image

tqdm.tqdm.monitor_interval = 0  # no background monitor thread for the leak guard to trip on

sys.path.insert(0, str(Path(__file__).parent))

from clipkit import build_clip  # noqa: E402
from imgd.daemon import config as config_module  # noqa: E402
from imgd.daemon.config import Config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cached = os.environ.get("IMGD_TEST_MODEL_DIR")
    if cached:
        return build_clip(Path(cached))
    return build_clip(tmp_path_factory.mktemp("model") / "tiny-clip")


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another random tiny CLIP, 48 dims instead of 32: the model a library changes to."""
    cached = os.environ.get("IMGD_TEST_MODEL_DIR")
    if cached:
        return build_clip(Path(f"{cached}-48"), size="tiny-48", seed=1)
    return build_clip(tmp_path_factory.mktemp("model") / "tiny-48", size="tiny-48", seed=1)


SHAPES_MODEL = Path(__file__).parent / "models" / "shapes-clip"


@pytest.fixture(scope="session")
def shapes_model() -> Path:
    """The committed tiny CLIP that knows tests/shapekit.py's colours and shapes (benchmarks/train_shapes.py)."""
    assert (SHAPES_MODEL / "model.safetensors").is_file(), f"{SHAPES_MODEL} is missing; see benchmarks/train_shapes.py"
    return SHAPES_MODEL


@pytest.fixture(scope="session")
def embedder(tiny_model: Path):
    from imgd.daemon.embedders import load_embedder

    return load_embedder(str(tiny_model), device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny multilingual-shaped text model (DistilBERT + pooling + Dense) in the tiny CLIP's 32 dims."""
    from clipkit import build_text_model

    return build_text_model(tmp_path_factory.mktemp("text-model") / "text-32")


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, text_model: Path) -> Path:
    """A models folder with the tiny CLIP and the text model exported to ONNX, made once per session."""
    from imgd.daemon.embedders import load_embedder, prepare

    state = tmp_path_factory.mktemp("onnx-state")
    prepare.IN_CHILD = False  # torch is loaded here already; a child would start it again (tests/test_backends.py)
    try:
        load_embedder(str(tiny_model), device="cpu", backend="onnx", state_dir=state, text_model=str(text_model))
    finally:
        prepare.IN_CHILD = True
    return state / "models"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's config or state, and daemons get their own runtime folder."""
    for var in list(os.environ):
        if var.startswith("IMGD_") and var != "IMGD_TEST_MODEL_DIR":
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/Pictures of the user's
    monkeypatch.delenv("XDG_PICTURES_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Exporting to ONNX takes seconds per state folder; tests/integration/test_embedders.py covers that backend.
    monkeypatch.setenv("IMGD_BACKEND", "torch")
    # Timing the OCR models on both runtimes costs ~4 CPU s per state folder; test_words_runtime.py covers it.
    monkeypatch.setenv("IMGD_WORDS_RUNTIME", "onnx")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (watchdog's own suite does the same)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith(("imgd-decode", "ThreadPoolExecutor"))
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads leaked: {[t.name for t in leaked]}"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def make_config(state_dir: Path, tiny_model: Path) -> Callable[..., Config]:
    def factory(**overrides: object) -> Config:
        values = {"state_dir": state_dir, "model": str(tiny_model), "device": "cpu", "batch_size": 8}
        values.update(overrides)
        return config_module.load(None, values, env={})

    return factory


def picture(seed: int, size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A distinct picture per seed: a coarse grid of random colours the tiny model tells apart."""
    rng = random.Random(seed)
    grid = Image.new("RGB", (4, 3))
    grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(12)])
    image = grid.resize(size, Image.Resampling.NEAREST)
    return image.convert(mode) if mode != "RGB" else image


def write_image(
    path: Path,
    seed: int,
    size: tuple[int, int] = (96, 64),
    fmt: str | None = None,
    orientation: int | None = None,
    **save: object,
) -> Path:
    """Write picture(seed) to path atomically enough for tests (one write call)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = picture(seed, size)
    buffer = io.BytesIO()
    kwargs: dict[str, object] = dict(save)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(buffer, format=fmt or _format_for(path), **kwargs)
    path.write_bytes(buffer.getvalue())
    return path


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    return {
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".png": "PNG",
        ".webp": "WEBP",
        ".gif": "GIF",
        ".bmp": "BMP",
    }.get(ext, {".tif": "TIFF", ".tiff": "TIFF"}.get(ext, "PNG"))
