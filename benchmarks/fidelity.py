"""Fidelity: are the vectors imgd stores the vectors the model gives for the full picture?

Runs `imgd index` on the corpus (or reads an existing state dir), reads every stored vector from
catalog.db (contents.vector: float16 bytes; contents.hash: blake2b-160 of the file bytes; files.path:
the path as bytes) and compares each with a float32 reference: full decode, ImageOps.exif_transpose,
RGB, SentenceTransformer.encode(image, normalize_embeddings=True). Reports min/median cosine and
whether each stored vector ranks its own reference first among all references, for the vectors
stored by each backend in --backends (torch, onnx: ONNX Runtime with imgd's own preprocessing, the
export made once beforehand) and for the ONNX pipeline run in this process. The same is measured
for vectors computed here: imgd's pipeline in this process (a sanity check that it reproduces the
stored vectors), with a coarser JPEG draft (1/8 scale), with prepare() actually shrinking to 224
before the processor, with int8 dynamic-quantized Linear layers, and bfloat16 autocast (on the full
pictures and in imgd's pipeline) -- to see which speed-ups keep fidelity.

    python benchmarks/fidelity.py --count 96
    python benchmarks/fidelity.py --count 48 --quick      # stored vectors of both backends only
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common
import numpy as np
from common import log


def stored_vectors(state_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    """path -> (hash, float32 vector) for every indexed file in the catalog."""
    conn = sqlite3.connect(f"file:{state_dir / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT f.path, c.hash, v.vector FROM files f JOIN contents c ON f.content_id = c.id "
            "JOIN vectors v ON v.content_id = c.id WHERE f.status = 'ok'"
        ).fetchall()
    finally:
        conn.close()
    return {
        os.fsdecode(path): (digest, np.frombuffer(blob, dtype=np.float16).astype(np.float32))
        for path, digest, blob in rows
    }


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def full_decode(path: Path) -> object:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        return ImageOps.exif_transpose(img).convert("RGB")


def reference_vectors(model: object, paths: list[Path], bf16: bool, chunk: int = 8) -> np.ndarray:
    """SentenceTransformer.encode on fully decoded, upright RGB pictures, a few at a time to bound memory."""
    import torch

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = []
    for start in range(0, len(paths), chunk):
        images = [full_decode(p) for p in paths[start : start + chunk]]
        with torch.inference_mode(), autocast:
            out.append(model.encode(images, normalize_embeddings=True, batch_size=chunk, convert_to_numpy=True))
    return normalised(np.vstack(out))


def imgd_pipeline_vectors(embedder: object, paths: list[Path], min_side: int) -> np.ndarray:
    """imgd's own path in this process: read, draft-decode, orient, prepare, encode, store as float16."""
    from imgd.daemon.ingest import imaging

    out = []
    for start in range(0, len(paths), 32):
        images = []
        for path in paths[start : start + 32]:
            data = imaging.read_bytes(str(path))
            image, _ = imaging.decode(str(path), data, 200_000_000, min_side=min_side)
            images.append(embedder.prepare(image))
        out.append(embedder.encode_images(images))
    return normalised(np.vstack(out).astype(np.float16).astype(np.float32))


def quantized(clip: object) -> object:
    """The same CLIP with every Linear layer int8 dynamic-quantized."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(clip, {torch.nn.Linear}, dtype=torch.qint8)


def compare(name: str, vectors: np.ndarray, references: np.ndarray) -> dict[str, object]:
    """Cosine with the own reference, the same after centring, the relative error, and own-rank."""
    sims = vectors @ references.T
    own = np.diag(sims)
    others = sims.copy()
    np.fill_diagonal(others, -np.inf)
    top1 = sims.argmax(axis=1) == np.arange(len(sims))
    margin = own - others.max(axis=1)
    # Random-weight CLIPs map every picture near one direction, so raw cosines all sit near 1. Removing
    # the references' mean direction shows the differences at the scale that separates pictures.
    centre = references.mean(axis=0, keepdims=True)
    centred = np.einsum("ij,ij->i", normalised(vectors - centre), normalised(references - centre))
    spread = np.linalg.norm(references[:, None, :] - references[None, :, :], axis=2)
    np.fill_diagonal(spread, np.nan)
    relative = np.linalg.norm(vectors - references, axis=1) / np.nanmedian(spread, axis=1)
    return {
        "variant": name,
        "n": len(own),
        "cos_min": float(own.min()),
        "cos_median": float(np.median(own)),
        "cos_mean": float(own.mean()),
        "centred_cos_min": float(centred.min()),
        "centred_cos_median": float(np.median(centred)),
        "relative_error_max": float(relative.max()),
        "rank1": int(top1.sum()),
        "margin_min": float(margin.min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=96, help="corpus size (default 96)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default benchmarks/out/corpus-COUNT)")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL, help="model folder (built if absent)")
    parser.add_argument("--state-dir", type=Path, help="read this imgd state dir instead of indexing anew")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 variants")
    parser.add_argument("--backends", default="torch,onnx", help="index with each backend (default torch,onnx)")
    parser.add_argument("--quick", action="store_true", help="only the stored vectors and the onnx pipeline")
    parser.add_argument("--json", type=Path, default=common.OUT / "fidelity.json", help="write figures here")
    args = parser.parse_args()

    model_dir = common.ensure_model(args.model)
    folder = common.ensure_corpus(args.count, args.corpus)
    log(f"machine: {common.machine_line()}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    models = common.exported_models(model_dir) if "onnx" in backends else None
    stored_by_backend: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    with contextlib.ExitStack() as stack:
        state_dir = args.state_dir
        for backend in backends:
            state = state_dir if backend == "torch" and state_dir is not None else None
            if state is None:
                state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"imgd-fidelity-{backend}-")))
                if backend == "onnx":
                    common.link_models(models, state)
                log(f"imgd --backend {backend} index {folder} ...")
                subprocess.run(
                    [str(common.IMGD), "--state-dir", str(state), "--model", str(model_dir), "--backend", backend]
                    + ["index", str(folder)],
                    check=True,
                )
            stored_by_backend[backend] = stored_vectors(state)
        state_dir = state_dir or Path("(temporary)")
    stored = stored_by_backend[backends[0]]
    paths = sorted(Path(p) for p in stored)
    log(f"{len(paths)} stored vectors")
    bad_hash = [p for p in paths if hashlib.blake2b(p.read_bytes(), digest_size=20).hexdigest() != stored[str(p)][0]]
    if bad_hash:
        log(f"warning: {len(bad_hash)} stored hashes do not match the file bytes")
    stored_matrix = np.vstack([stored[str(p)][1] for p in paths])
    stored_norms = np.linalg.norm(stored_matrix, axis=1)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    timed: dict[str, float] = {}

    def timed_run(label: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
        log(f"{label} ...")
        started = time.perf_counter()
        result = fn()
        timed[label] = time.perf_counter() - started
        return result

    references = timed_run("reference fp32 (full decode)", lambda: reference_vectors(model, paths, bf16=False))
    results = []
    for backend, vectors_by_path in stored_by_backend.items():
        matrix = normalised(np.vstack([vectors_by_path[str(p)][1] for p in paths]))
        results.append(compare(f"imgd stored, --backend {backend} (draft 1/4, fp16 storage)", matrix, references))
    if models is not None:
        from imgd.daemon.embedders import load_embedder

        onnx = load_embedder(str(model_dir), device="cpu", backend="onnx", state_dir=models.parent)
        here = timed_run("imgd pipeline, onnx", lambda: imgd_pipeline_vectors(onnx, paths, 448))
        results.append(compare("imgd pipeline here, onnx backend", here, references))

    between = references @ references.T
    off_diagonal = between[~np.eye(len(paths), dtype=bool)]

    from imgd.daemon.embedders.torch import ClipEmbedder

    if not args.quick:  # the torch variants: the investigation of issue 1
        fp32 = ClipEmbedder(str(model_dir), device="cpu", precision="float32")
        same = timed_run("imgd pipeline in this process", lambda: imgd_pipeline_vectors(fp32, paths, 448))
        results.append(compare("imgd pipeline here, torch fp32 (sanity check)", same, references))
        coarse = timed_run("imgd pipeline, draft min_side 224", lambda: imgd_pipeline_vectors(fp32, paths, 224))
        results.append(compare("imgd pipeline, draft 1/8 (min_side 224), fp32", coarse, references))
        side = fp32._target_side
        fp32._target_side = 224  # what prepare() means to do: shrink to the processor's shortest edge early
        prepared = timed_run("imgd pipeline, prepare() resizing", lambda: imgd_pipeline_vectors(fp32, paths, 448))
        fp32._target_side = side
        results.append(compare("imgd pipeline, prepare() shrinks to 224 first", prepared, references))
        module = fp32._model[0]
        module.model = quantized(module.model)
        int8 = timed_run("imgd pipeline int8 dynamic", lambda: imgd_pipeline_vectors(fp32, paths, 448))
        results.append(compare("imgd pipeline, int8 dynamic-quantized Linear", int8, references))
    if not args.no_bf16 and not args.quick:
        ref16 = timed_run("reference bf16 autocast (full decode)", lambda: reference_vectors(model, paths, bf16=True))
        results.append(compare("full decode, bf16 autocast", ref16, references))
        bf16 = ClipEmbedder(str(model_dir), device="cpu", precision="bfloat16")
        pipe16 = timed_run("imgd pipeline bf16", lambda: imgd_pipeline_vectors(bf16, paths, 448))
        results.append(compare("imgd pipeline (draft 1/4), bf16 autocast", pipe16, references))

    lines = [
        f"machine: {common.machine_line()}",
        f"{len(paths)} pictures from {folder}; model {model_dir.name} (random weights); state {state_dir}",
        f"stored hashes matching blake2b-160 of the file bytes: {len(paths) - len(bad_hash)}/{len(paths)}",
        f"stored vector norms: min {stored_norms.min():.4f} max {stored_norms.max():.4f}",
        f"context, cosine between references of different pictures: median {np.median(off_diagonal):.4f}, "
        f"max {off_diagonal.max():.4f}",
        f"{'variant':<50}{'cos min':>10}{'median':>10}{'ctr min':>9}{'ctr med':>9}{'rel err':>9}"
        f"{'own #1':>8}{'margin':>8}",
    ]
    for r in results:
        lines.append(
            f"{r['variant']:<50}{r['cos_min']:>10.6f}{r['cos_median']:>10.6f}{r['centred_cos_min']:>9.4f}"
            f"{r['centred_cos_median']:>9.4f}{r['relative_error_max']:>9.4f}"
            f"{str(r['rank1']) + '/' + str(r['n']):>8}{r['margin_min']:>8.4f}"
        )
    lines += [
        "cos = cosine with the float32 full-decode reference of the same picture; ctr = the same after",
        "subtracting the references' mean vector (random weights put every picture near one direction);",
        "rel err = max |v - ref| / median |ref - other ref|; own #1 = own reference ranked first among all;",
        "margin = smallest gap between the cosine with the own reference and with the best other one",
    ]
    lines.append("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timed.items()))
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.json.with_suffix(".npz"), references=references, stored=stored_matrix)
    args.json.write_text(
        json.dumps(
            {
                "results": results,
                "between_median": float(np.median(off_diagonal)),
                "between_max": float(off_diagonal.max()),
                "timings_s": timed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
