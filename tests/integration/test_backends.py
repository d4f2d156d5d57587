"""The OpenVINO backend and its compiled cache, `auto`'s measured choice, and the export in a child process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import picture, write_image
from imgd.daemon.embedders import choice, load_embedder, openvino, prepare
from imgd.daemon.embedders.runtime import RuntimeRefused
from imgd.daemon.errors import ModelUnavailable

pytest.importorskip("openvino")

TEXTS = ["a dog on the beach", "Ein Hund am Strand, ¿dónde está? 東京"]


@pytest.fixture
def state(exported_models: Path, tmp_path: Path) -> Path:
    """A state folder of its own holding a copy of the session's ONNX export, free to damage."""
    folder = tmp_path / "state"
    shutil.copytree(exported_models, folder / "models")
    return folder


@pytest.fixture(autouse=True)
def export_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any export these tests cause runs here (torch is loaded already); the child has its own test."""
    monkeypatch.setattr(prepare, "IN_CHILD", False)


def load(model: Path, state: Path, backend: str, **kwargs: object):
    return load_embedder(str(model), device="cpu", backend=backend, state_dir=state, **kwargs)


def export_folder(state: Path) -> Path:
    (folder,) = [
        p for p in (state / "models").iterdir() if (p / "manifest.json").exists() and (p / "image.onnx").exists()
    ]
    return folder


def vectors(embedder) -> tuple[np.ndarray, np.ndarray]:
    images = [embedder.prepare(picture(seed, (120, 90))) for seed in range(6)]
    return embedder.encode_images(images), embedder.encode_texts(TEXTS)


# -- OpenVINO ---------------------------------------------------------------------------------


def test_openvino_serves_the_onnx_backends_vectors_and_caches_its_compiled_towers(tiny_model, state):
    ov = load(tiny_model, state, "openvino")
    onnx = load(tiny_model, state, "onnx")
    assert (ov.backend, onnx.backend) == ("openvino", "onnx")
    assert ov.precision == openvino.native_precision(openvino.OpenVinoRuntime().core)
    (ov_images, ov_texts), (images, texts) = vectors(ov), vectors(onnx)
    assert np.sum(ov_images * images, axis=1).min() >= 0.999
    assert np.sum(ov_texts * texts, axis=1).min() >= 0.999
    folder = export_folder(state)
    for tower in ("image", "text"):
        note = json.loads((folder / f"{tower}.{ov.precision}.json").read_text())
        (blob,) = (folder / f"{tower}.{ov.precision}.ov").glob("*.blob")
        assert note["blobs"] == {blob.name: blob.stat().st_size} and blob.stat().st_size > 0
        assert note["key"]["cpu"] == openvino.cpu_model()


def test_openvino_warm_start_imports_the_cache_without_compiling(tiny_model, state, monkeypatch):
    first = vectors(load(tiny_model, state, "openvino"))

    def no_compile(*args: object, **kwargs: object):
        raise AssertionError("compiled again although the cache is whole")

    monkeypatch.setattr(openvino.OpenVinoRuntime, "_verify", no_compile)
    again = vectors(load(tiny_model, state, "openvino"))
    np.testing.assert_allclose(first[0], again[0], atol=1e-5)
    np.testing.assert_allclose(first[1], again[1], atol=1e-5)


@pytest.mark.parametrize("damage", ["missing", "truncate", "garbage", "stale-key", "earlier-release"])
def test_damaged_or_missing_compiled_cache_is_rebuilt_and_reverified(tiny_model, state, damage, monkeypatch, caplog):
    good = vectors(load(tiny_model, state, "openvino"))[0]
    folder = export_folder(state)
    (blob,) = folder.glob("image.*.ov/*.blob")
    note = blob.parent.with_suffix(".json")
    blob.chmod(0o644)  # OpenVINO writes its blobs read-only
    if damage == "missing":
        blob.unlink()
    elif damage == "truncate":
        blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    elif damage == "garbage":
        blob.write_bytes(b"\0" * blob.stat().st_size)  # same size: only loading it tells
    elif damage == "stale-key":
        recorded = json.loads(note.read_text())
        note.write_text(json.dumps({**recorded, "key": {**recorded["key"], "openvino": "0.0"}}))
    else:  # the single exported blob and its note that imgd 0.x kept under the same names
        data = blob.read_bytes()
        shutil.rmtree(blob.parent)
        blob.parent.write_bytes(data)
        note.write_text(json.dumps({"key": json.loads(note.read_text())["key"], "size": len(data)}))
    verified = []
    real = openvino.OpenVinoRuntime._verify
    monkeypatch.setattr(openvino.OpenVinoRuntime, "_verify", lambda *a: verified.append(a[3].kind) or real(*a))
    with caplog.at_level(logging.WARNING):
        rebuilt = vectors(load(tiny_model, state, "openvino"))[0]
    assert verified == ["image"]
    np.testing.assert_allclose(rebuilt, good, atol=1e-5)
    (blob,) = folder.glob("image.*.ov/*.blob")
    assert json.loads(note.read_text())["blobs"] == {blob.name: blob.stat().st_size}
    assert json.loads(note.read_text())["key"]["openvino"] == openvino.version("openvino")
    if damage in ("truncate", "garbage"):
        assert "is damaged" in caplog.text


def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The towers probed from here on, by kind."""
    from imgd.daemon.embedders.onnx import Tower

    probed: list[str] = []
    real = Tower.probe
    monkeypatch.setattr(Tower, "probe", lambda self, session: probed.append(self.kind) or real(self, session))
    return probed


def rewrite(path: Path) -> None:
    """Write a file again with the same bytes and set its mtime back: only the inode's ctime tells, and a probe."""
    data, before = path.read_bytes(), path.stat()
    path.chmod(0o644)  # OpenVINO writes its blobs read-only
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino and path.stat().st_ctime_ns != before.st_ctime_ns


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_a_tower_verified_once_opens_without_its_probe_until_its_file_changes(tiny_model, state, monkeypatch, backend):
    first = vectors(load(tiny_model, state, backend))
    probed = probes(monkeypatch)
    again = vectors(load(tiny_model, state, backend))
    assert probed == []  # verified when first opened, unchanged since: the warm start skips the probe
    np.testing.assert_allclose(first[0], again[0], atol=1e-5)
    folder = export_folder(state)
    changed = next(folder.glob("image.*.ov/*.blob")) if backend == "openvino" else folder / "image.onnx"
    rewrite(changed)
    vectors(load(tiny_model, state, backend))
    assert probed == ["image"]  # the written file is probed again, then trusted under its new stamp
    vectors(load(tiny_model, state, backend))
    assert probed == ["image"]


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_a_text_search_opens_the_text_tower_alone(tiny_model, state, monkeypatch, backend):
    from click.testing import CliRunner
    from imgd.cli.main import cli
    from imgd.daemon.embedders.onnx import Tower

    for seed in range(2):
        write_image(state.parent / "pics" / f"p{seed}.png", seed)
    args = ["--state-dir", str(state), "--model", str(tiny_model), "--backend", backend, "-q"]
    assert CliRunner().invoke(cli, [*args, "index", str(state.parent / "pics")]).exit_code == 0
    opened: list[str] = []
    real = Tower._open
    monkeypatch.setattr(Tower, "_open", lambda self: opened.append(self.kind) or real(self))
    result = CliRunner().invoke(cli, [*args, "search", "--direct", "a dog on the beach"])
    assert result.exit_code == 0, result.output
    assert "p0.png" in result.output and opened == ["text"]


def test_a_warm_openvino_start_imports_neither_onnx_runtime_nor_openvinos_conversion_tools(tiny_model, state):
    load(tiny_model, state, "openvino").encode_texts(["warm"])  # compiled, verified and cached
    script = (
        "import sys; from pathlib import Path; from imgd.daemon.embedders import load_embedder\n"
        "e = load_embedder(sys.argv[1], device='cpu', backend='openvino', state_dir=Path(sys.argv[2]))\n"
        "assert e.encode_texts(['a dog']).shape[0] == 1 and e.encode_images([]).shape[0] == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime' or m.startswith('openvino.tools')))\n"
        "import openvino.tools.ovc  # left out of the start, still there for anyone who asks"
    )
    assert run_script(script, tiny_model, state).strip() == "[]"


def run_script(script: str, *args: object) -> str:
    """The stdout of `python -c script args...` in a fresh process, which must succeed."""
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_warm_auto_start_reads_the_versions_in_its_key_without_importlib_metadata(tiny_model, state, monkeypatch):
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 40.0})
    load(tiny_model, state, "auto").encode_texts(["warm"])  # measured and recorded
    script = (
        "import sys; from pathlib import Path; from imgd.daemon.embedders import load_embedder\n"
        "e = load_embedder(sys.argv[1], device='cpu', backend='auto', state_dir=Path(sys.argv[2]))\n"
        "assert e.encode_texts(['a dog']).shape[0] == 1\n"
        "print(e.backend, 'importlib.metadata' in sys.modules)"
    )
    assert run_script(script, tiny_model, state).split() == ["openvino", "False"]  # read under the same key


def test_cached_tower_that_misses_the_recorded_probe_is_compiled_again_never_served(tiny_model, state, monkeypatch):
    load(tiny_model, state, "openvino").encode_images([])
    rewrite(next(export_folder(state).glob("image.*.ov/*.blob")))  # a flip in place: the same size, a new stamp
    real = openvino.OvSession.run
    calls = []

    def skewed(self, outputs, inputs):
        calls.append(1)
        vectors = real(self, outputs, inputs)[0]
        return [vectors[:, ::-1].copy()] if len(calls) == 1 else [vectors]  # the cached blob's first answer

    monkeypatch.setattr(openvino.OvSession, "run", skewed)
    compiled = []
    real_verify = openvino.OpenVinoRuntime._verify
    monkeypatch.setattr(openvino.OpenVinoRuntime, "_verify", lambda *a: compiled.append(1) or real_verify(*a))
    embedder = load(tiny_model, state, "openvino")
    served = embedder.encode_images([embedder.prepare(picture(3))])
    assert compiled == [1]
    want = load(tiny_model, state, "onnx").encode_images([embedder.prepare(picture(3))])
    assert float(served[0] @ want[0]) >= 0.999


def test_openvino_that_disagrees_with_fp32_is_refused_and_not_cached(tiny_model, state, monkeypatch):
    real = openvino.OvSession.run
    monkeypatch.setattr(openvino.OvSession, "run", lambda self, o, i: [real(self, o, i)[0][::-1].copy()])
    with pytest.raises(ModelUnavailable, match=r"cannot use the OpenVINO backend: OpenVINO \w+ disagrees with fp32"):
        load(tiny_model, state, "openvino").encode_images([])
    assert not list(export_folder(state).glob("*.ov"))


@pytest.mark.parametrize("export", ["recorded", "earlier"])
def test_a_fresh_compile_is_checked_on_the_exports_fp32_vectors_without_onnx_runtime(
    tiny_model, state, monkeypatch, export
):
    folder = export_folder(state)
    if export == "earlier":  # an export made before the whole probe set's vectors were recorded
        manifest = json.loads((folder / "manifest.json").read_text())
        for tower in ("image", "text"):
            del manifest[tower]["probes"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
    sessions = []
    real = openvino.make_session
    monkeypatch.setattr(openvino, "make_session", lambda *a: sessions.append(a[0].name) or real(*a))
    served = vectors(load(tiny_model, state, "openvino"))
    assert sessions == ([] if export == "recorded" else ["image.onnx", "text.onnx"])
    want = vectors(load(tiny_model, state, "onnx"))
    assert np.sum(served[0] * want[0], axis=1).min() >= 0.999
    assert np.sum(served[1] * want[1], axis=1).min() >= 0.999


def test_openvino_backend_is_a_config_choice(make_config):
    assert make_config(backend="openvino").backend == "openvino"


# -- auto: measured, recorded, re-measured, fallen back from ---------------------------------


def fake_speeds(
    monkeypatch: pytest.MonkeyPatch, speeds: dict[str, float], opens: dict[str, float] | None = None
) -> list[str]:
    """Replace the clock, not the backends: each candidate still loads and embeds the probe batch (and reopens).

    "openvino" is OpenVINO at its own precision. On a CPU where that is not float32 (AVX512_BF16 or AMX: bf16)
    OpenVINO float32 is a third candidate: "openvino float32" if given, else 0.45x OpenVINO's own speed (bf16
    measured 2.1x fp32 on such a CPU), so a test's pick and order are the same on every CPU.
    """
    timed: list[str] = []
    real, real_open = choice._time, choice._open_cost
    own = choice.make_runtime("openvino").precision

    def key(embedder) -> str:
        third = embedder.backend == "openvino" and embedder.precision == "float32" and own != "float32"
        return "openvino float32" if third else embedder.backend

    def timing(embedder, pixels):
        _speed, found = real(embedder, pixels)
        timed.append(embedder.backend)
        name = key(embedder)
        return speeds.get(name, speeds["openvino"] * 0.45 if name == "openvino float32" else 0.0), found

    def opening(embedder, pixels):
        took, held = real_open(embedder, pixels)
        return ((opens.get(key(embedder)) or opens[embedder.backend]) if opens else took), held

    monkeypatch.setattr(choice, "_time", timing)
    monkeypatch.setattr(choice, "_open_cost", opening)
    return timed


@pytest.mark.parametrize("fastest", ["openvino", "onnx"])
def test_auto_serves_the_fastest_measured_backend_and_records_why(tiny_model, state, monkeypatch, fastest):
    timed = fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 40.0 if fastest == "openvino" else 10.0})
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend == fastest
    assert "torch" not in timed and set(timed) == {"onnx", "openvino"}
    slower = "onnx" if fastest == "openvino" else "openvino"
    assert embedder.reason.startswith(f"{fastest} ") and f" vs {slower} " in embedder.reason
    (record,) = export_folder(state).glob("backend-*.json")
    saved = json.loads(record.read_text())
    assert saved["pick"]["backend"] == fastest
    assert saved["key"] == choice.machine_key(embedder.fingerprint)
    assert all(r["min_cosine"] >= 0.999 for r in saved["results"])
    assert not embedder.image_loaded  # each candidate's tower was freed after its timing: one held at a time
    assert vectors(embedder)[0].shape == (6, embedder.dim)


@pytest.mark.parametrize("quicker", ["openvino", "onnx"])
def test_auto_breaks_a_speed_tie_by_the_measured_warm_open_and_says_so(tiny_model, state, monkeypatch, quicker):
    """Speeds 5% apart are within the timing's noise: the tower that opens faster warm runs, either way round."""
    slower = "onnx" if quicker == "openvino" else "openvino"
    fake_speeds(monkeypatch, {quicker: 19.0, slower: 20.0}, {quicker: 0.4, slower: 1.1})
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend == quicker
    assert ", opens in 0.40 s vs " in embedder.reason and "1.10 s" in embedder.reason
    assert embedder.reason.endswith("(speeds within 10%: the quicker to open runs)")
    assert load(tiny_model, state, "auto").backend == quicker  # the record says so on the next start


def test_auto_serves_the_faster_beyond_the_noise_even_if_it_opens_slower(tiny_model, state, monkeypatch):
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 23.0}, {"onnx": 0.3, "openvino": 1.5})
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend == "openvino"
    assert "opens in" not in embedder.reason


def test_auto_records_each_tied_candidates_real_warm_open_and_hold(tiny_model, state, monkeypatch):
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 19.5})  # a tie; the opens are timed for real
    embedder = load(tiny_model, state, "auto")
    (record,) = export_folder(state).glob("backend-*.json")
    saved = json.loads(record.read_text())
    assert {r["backend"] for r in saved["results"]} == {"onnx", "openvino"}
    tied = choice.ties(saved)  # onnx and OpenVINO at its own precision (a bf16 CPU's OpenVINO fp32 is far behind)
    assert {r["backend"] for r in tied} == {"onnx", "openvino"}
    assert all(0 < r["open_s"] < 30 and r["hold_mb"] >= 0 for r in tied)
    assert not any("open_s" in r for r in saved["results"] if r not in tied)
    assert embedder.reason and not embedder.image_loaded  # each reopened tower was freed again


def test_auto_reopens_no_tower_when_one_wins_outright_and_keeps_that_record(tiny_model, state, monkeypatch):
    """The warm open decides only a tie: a clear winner costs the first run no second open of any tower."""
    timed = fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 40.0})
    reopened: list[str] = []
    real_open = choice._open_cost
    monkeypatch.setattr(choice, "_open_cost", lambda e, p: reopened.append(e.backend) or real_open(e, p))
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend == "openvino" and reopened == [] and "opens in" not in embedder.reason
    (path,) = export_folder(state).glob("backend-*.json")
    assert not any("open_s" in r for r in json.loads(path.read_text())["results"])
    timed.clear()
    assert load(tiny_model, state, "auto").backend == "openvino" and timed == []  # the record stands: no re-measure


def test_a_tied_candidate_whose_tower_will_not_open_again_is_left_out_not_the_measurement(
    tiny_model, state, monkeypatch
):
    """The tie's second open can fail (a cache gone bad between the two opens): that candidate cannot serve."""
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 19.5})
    real_open = choice._open_cost

    def reopen(embedder, pixels):
        if embedder.backend == "openvino":
            raise ModelUnavailable("the compiled tower would not open again")
        return real_open(embedder, pixels)

    monkeypatch.setattr(choice, "_open_cost", reopen)
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend == "onnx" and not embedder.image_loaded
    (record,) = export_folder(state).glob("backend-*.json")
    results = json.loads(record.read_text())["results"]
    assert [r["error"] for r in results if r["backend"] == "openvino" and "open_s" not in r and "error" in r]
    assert load(tiny_model, state, "auto").backend == "onnx"  # the record stands


def test_a_record_without_open_times_is_measured_again_once(tiny_model, state, monkeypatch):
    """An older release's record picked by an unmeasured rule: it is replaced, under the same key, once."""
    timed = fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 19.0}, {"onnx": 1.0, "openvino": 0.5})
    load(tiny_model, state, "auto")
    (path,) = export_folder(state).glob("backend-*.json")
    record = json.loads(path.read_text())
    old = [{k: v for k, v in r.items() if k not in ("open_s", "hold_mb")} for r in record["results"]]
    path.write_text(json.dumps({**record, "results": old, "pick": {"backend": "onnx"}}))
    candidates = len(timed)  # 2, or 3 where OpenVINO's own precision is bf16
    timed.clear()
    assert load(tiny_model, state, "auto").backend == "openvino"
    assert len(timed) == candidates and all("open_s" in r for r in choice.ties(json.loads(path.read_text())))
    assert load(tiny_model, state, "auto").backend == "openvino" and len(timed) == candidates


def test_auto_measures_once_then_again_when_a_key_part_changes(tiny_model, state, monkeypatch):
    timed = fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 40.0})
    assert load(tiny_model, state, "auto").backend == "openvino"
    candidates = len(timed)  # 2, or 3 where OpenVINO's own precision is bf16
    assert load(tiny_model, state, "auto").backend == "openvino"
    assert len(timed) == candidates  # the second start read the record
    real_version = choice.version
    monkeypatch.setattr(choice, "version", lambda name: "2099.1" if name == "openvino" else real_version(name))
    timed.clear()
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 5.0})
    assert load(tiny_model, state, "auto").backend == "onnx"
    assert len(list(export_folder(state).glob("backend-*.json"))) == 2


def test_auto_leaves_out_a_backend_whose_vectors_disagree(tiny_model, state, monkeypatch):
    """Wrong on the measurement's batch alone, so the choice's own check is what leaves it out."""
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 40.0})
    real = openvino.OvSession.run

    def skewed(self, outputs, inputs):
        found = real(self, outputs, inputs)[0]
        return [found[::-1].copy() if len(found) == choice.PROBE_BATCH else found]

    monkeypatch.setattr(openvino.OvSession, "run", skewed)
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend == "onnx"
    (record,) = export_folder(state).glob("backend-*.json")
    results = json.loads(record.read_text())["results"]
    assert {r["backend"] for r in results if "error" in r} == {"openvino"}  # at each OpenVINO precision measured
    assert all("error" in r for r in results if r["backend"] == "openvino")


def test_recorded_backend_that_fails_to_load_gives_way_to_the_next_with_one_line(
    tiny_model, state, monkeypatch, caplog
):
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 40.0})
    assert load(tiny_model, state, "auto").backend == "openvino"

    def broken(precision: str = "auto") -> object:
        raise RuntimeRefused("openvino is not installed (pip install openvino)")

    monkeypatch.setattr(openvino, "OpenVinoRuntime", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        embedder = load(tiny_model, state, "auto")
    assert embedder.backend == "onnx"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == ["openvino failed to load (openvino is not installed (pip install openvino)); using onnx"]
    assert vectors(embedder)[0].shape == (6, embedder.dim)


def test_a_gpu_candidate_that_does_not_load_is_left_out_and_the_cpu_serves(tiny_model, state, monkeypatch):
    """This machine has no CUDA: onnxruntime's CUDA provider, offered, falls back to the CPU and is refused."""
    from imgd.daemon.embedders.devices import Devices

    devices = Devices(("CUDAExecutionProvider", "CPUExecutionProvider"), ("CPU",), {"CPU": ("FP32",)})
    monkeypatch.setattr(choice, "detect", lambda: devices)
    embedder = load(tiny_model, state, "auto")
    assert embedder.backend in ("onnx", "openvino")
    (record,) = export_folder(state).glob("backend-*.json")
    saved = json.loads(record.read_text())
    (cuda,) = [r for r in saved["results"] if r["device"] == "cuda"]
    assert "CUDAExecutionProvider did not load" in cuda["error"]
    assert saved["pick"]["device"] == "cpu"
    assert vectors(embedder)[0].shape == (6, embedder.dim)


def test_a_recorded_gpu_pick_that_fails_to_open_gives_way_to_the_cpu(tiny_model, state, monkeypatch, caplog):
    fake_speeds(monkeypatch, {"onnx": 20.0, "openvino": 10.0})
    load(tiny_model, state, "auto")
    (path,) = export_folder(state).glob("backend-*.json")
    record = json.loads(path.read_text())
    gpu = {"backend": "onnx", "precision": "float32", "device": "cuda", "images_per_s": 400.0, "min_cosine": 1.0}
    gpu.update(open_s=0.1, hold_mb=10)
    path.write_text(json.dumps({**record, "results": [gpu, *record["results"]]}))
    with caplog.at_level(logging.WARNING):
        embedder = load(tiny_model, state, "auto")
    assert (embedder.backend, embedder._image.runtime.device) == ("onnx", "cpu")
    assert "onnx failed to load" in caplog.text and "did not load" in caplog.text
    assert vectors(embedder)[0].shape == (6, embedder.dim)


def test_config_and_status_say_which_backend_auto_runs_and_why(tiny_model, state, monkeypatch):
    from click.testing import CliRunner
    from imgd.cli.main import cli
    from imgd.cli.render import status_lines

    args = ["--state-dir", str(state), "--model", str(tiny_model), "--backend", "auto", "config"]
    assert "# backend in use" not in CliRunner().invoke(cli, args).output  # nothing measured yet
    fake_speeds(monkeypatch, {"onnx": 21.2, "openvino": 40.7})
    embedder = load(tiny_model, state, "auto")
    precision = embedder.precision
    third = ", openvino float32 18.3" if precision != "float32" else ""  # a bf16 CPU measures OpenVINO fp32 too
    said = f"openvino {precision}: 40.7 img/s vs onnx float32 21.2{third} on this CPU"
    assert embedder.reason == said
    assert f"# backend in use (auto, measured here): {said}" in CliRunner().invoke(cli, args).output
    model = {"name": "m", "dim": 32, "backend": "openvino", "device": "cpu", "precision": precision, "reason": said}
    assert f"backend: {said}" in status_lines({"model": model})


# -- no torch in a serving process, also on the first run -------------------------------------


@pytest.mark.slow
def test_first_run_exports_in_a_child_and_never_imports_torch(tiny_model, tmp_path):
    pics = tmp_path / "pics"
    for seed in range(3):
        write_image(pics / f"p{seed}.png", seed)
    env = {
        **os.environ,
        "IMGD_BACKEND": "auto",
        "IMGD_STATE_DIR": str(tmp_path / "state"),
        "IMGD_MODEL": str(tiny_model),
        "IMGD_DEVICE": "cpu",
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "imgd.cli.main", "-v", "index", str(pics)],  # -v: the "preparing" line is INFO
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 added" in result.stderr
    assert "preparing model" in result.stderr
    imported = [
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    ]
    assert "imgd.daemon.embedders.onnx" in imported  # the log is this process's own
    assert [m for m in imported if m.split(".")[0] in ("torch", "transformers", "sentence_transformers")] == []
    (record,) = (tmp_path / "state" / "models").glob("*/backend-*.json")  # and auto measured,
    assert "measuring which runtime" not in result.stderr  # in the export's child, not in this process:
    if json.loads(record.read_text())["pick"]["backend"] == "onnx":  # so the runtimes that lost were never loaded
        assert [m for m in imported if m.split(".")[0] == "openvino"] == []
