"""Train the shapes test model: a tiny CLIP that knows six colours and five shapes, and check it.

Random weights cannot tell "red" from "circle", so tests of meaning need a model that has learnt some.
This one is a `transformers.CLIPModel` of ~0.5M parameters trained contrastively on pictures from
tests/shapekit.py and their captions ("a red circle", "a photo of a star", "blue"), and saved like
tests/clipkit.py's models, so `SentenceTransformer(folder)` and imgd's embedder load it offline.

The loss is CLIP's symmetric cross-entropy with every true caption in the batch a target: "blue" is
as true of one blue picture as of another, so the batch's other blue pictures are not negatives for it.

    .venv/bin/python benchmarks/train_shapes.py tests/models/shapes-clip   # (re)train the committed model
    .venv/bin/python benchmarks/train_shapes.py --check                      # retrain in a temp folder, report
    .venv/bin/python benchmarks/train_shapes.py --evaluate tests/models/shapes-clip   # report only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Busy-waiting OpenMP threads on a shared 2-core machine made a step 13x slower (1.3 s vs 0.1 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import shapekit  # noqa: E402
from clipkit import _vocab, whole_words  # noqa: E402

MAX_TOKENS = 32  # text positions; the tokenizer truncates to this, so a long query is cut, not refused
IMAGE_SIDE = 48  # the shapes are 13-40 px across at this size: small enough to train in minutes on 2 cores
MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, as CLIPImageProcessor applies them
STD = (0.26862954, 0.26130258, 0.27577711)
TRAIN_SEED_BASE = 10**9  # training pictures never share a seed with a test corpus (write_corpus seeds)


def caption_words() -> list[str]:
    """Longest first, so no short word's merge splits a longer one (all 22 stay whole)."""
    words = sorted(dict.fromkeys(shapekit.CAPTION_WORDS), key=lambda w: (-len(w), w))
    kept = whole_words(tuple(words))
    assert kept == words, f"words that would not be one token: {set(words) - set(kept)}"
    return kept


def build_untrained(out: Path, seed: int) -> None:
    """Save the tokenizer, processor and a randomly initialised model into out."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = _vocab(caption_words())
    tok_dir = Path(tempfile.mkdtemp(prefix="shapes-tok-"))
    try:
        (tok_dir / "vocab.json").write_text(json.dumps(vocab))
        (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges))
        tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=MAX_TOKENS)
    finally:
        shutil.rmtree(tok_dir)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "max_position_embeddings": MAX_TOKENS,
        },
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_hidden_layers": 3,
            "image_size": IMAGE_SIDE,
            "patch_size": 8,
        },
        projection_dim=64,
    )
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    CLIPModel(config).save_pretrained(out)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def _pixels(image: Image.Image) -> np.ndarray:
    """What the model sees of a square picture: the embedder's bicubic shrink to the processor's side."""
    return np.asarray(image.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC), dtype=np.uint8)


def make_pool(per_class: int, seed: int) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """per_class training pictures of every class, as uint8 pixels, with (colour, shape, background)."""
    pixels, labels = [], []
    for colour, shape in shapekit.CLASSES:
        for n in range(per_class):
            image_seed = TRAIN_SEED_BASE + seed * 100_000 + n
            background = shapekit.background_of(colour, shape, image_seed)
            pixels.append(_pixels(shapekit.shape_image(colour, shape, image_seed)))
            labels.append((colour, shape, background))
    return np.stack(pixels), labels


def train(out: Path, steps: int, batch: int, per_class: int, seed: int, log_every: int = 50) -> None:
    """Train from scratch into out; deterministic for a given seed and thread count."""
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    started = time.monotonic()
    build_untrained(out, seed)
    model = CLIPModel.from_pretrained(out)
    tokenizer = CLIPTokenizer.from_pretrained(out)
    pool, labels = make_pool(per_class, seed)
    print(f"pool: {len(pool)} pictures in {time.monotonic() - started:.1f}s", flush=True)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)

    # Every caption text once, tokenised once; a caption is the template index + the labels it names.
    texts: dict[str, int] = {}
    for colour, shape in shapekit.CLASSES:
        for background in shapekit.BACKGROUNDS:
            for text in shapekit.captions(colour, shape, background):
                texts.setdefault(text, len(texts))
    text_list = list(texts)
    tokens = tokenizer(text_list, padding=True, return_tensors="pt")

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    warmup = max(1, steps // 20)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    for step in range(steps):
        picks = [rng.randrange(len(pool)) for _ in range(batch)]
        picked = [labels[i] for i in picks]
        chosen = [rng.choice(shapekit.TEMPLATES) for _ in picks]
        specs = [shapekit.described(t, *label) for t, label in zip(chosen, picked, strict=True)]
        caption_ids = [texts[shapekit.caption(t, *label)] for t, label in zip(chosen, picked, strict=True)]
        # truth[i, j]: caption j is true of picture i (each names only some of colour, shape, background).
        truth = torch.tensor(
            [
                [all(want is None or want == have for want, have in zip(spec, label, strict=True)) for spec in specs]
                for label in picked
            ],
            dtype=torch.float32,
        )
        images = torch.from_numpy(pool[picks]).permute(0, 3, 1, 2).float().div(255)
        images = (images - mean) / std
        ids = torch.tensor(caption_ids)
        image_vectors = model.get_image_features(pixel_values=images)
        text_vectors = model.get_text_features(
            input_ids=tokens["input_ids"][ids], attention_mask=tokens["attention_mask"][ids]
        )
        if not isinstance(image_vectors, torch.Tensor):  # transformers 5 returns an output object
            image_vectors, text_vectors = image_vectors.pooler_output, text_vectors.pooler_output
        image_vectors = torch.nn.functional.normalize(image_vectors, dim=-1)
        text_vectors = torch.nn.functional.normalize(text_vectors, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * image_vectors @ text_vectors.T
        loss_images = torch.nn.functional.cross_entropy(logits, truth / truth.sum(1, keepdim=True))
        loss_texts = torch.nn.functional.cross_entropy(logits.T, truth.T / truth.T.sum(1, keepdim=True))
        loss = (loss_images + loss_texts) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % log_every == 0 or step == 0:
            print(
                f"step {step + 1}/{steps} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )
    model.eval()
    model.save_pretrained(out)
    print(f"trained {steps} steps of {batch} in {time.monotonic() - started:.0f}s -> {out}", flush=True)


# -- checking -----------------------------------------------------------------------------------


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def evaluate(folder: Path, per_class: int = 10, seed: int = 7) -> dict[str, float]:
    """p@10 of every colour+shape and colour query, negative and mixed terms, through imgd's embedder."""
    from imgd.daemon.embedders import load_embedder

    embedder = load_embedder(str(folder), device="cpu", batch_size=64)
    corpus = shapekit.corpus_images(per_class, seed)
    vectors = embedder.encode_images([embedder.prepare(image) for image, _, _ in corpus])
    colours = np.array([c for _, c, _ in corpus])
    shapes = np.array([s for _, _, s in corpus])

    def top(query: np.ndarray, k: int = 10) -> np.ndarray:
        return np.argsort(-(vectors @ query), kind="stable")[:k]

    def text(words: str) -> np.ndarray:
        return embedder.encode_texts([words])[0]

    figures: dict[str, float] = {}
    pairs = []
    for colour, shape in shapekit.CLASSES:
        query = shapekit.caption("a {colour} {shape}", colour, shape, "")
        hits = top(text(query))
        pairs.append(float(np.mean((colours[hits] == colour) & (shapes[hits] == shape))))
        print(f"  p@10 '{query}': {pairs[-1]:.1f}")
    figures["p@10 colour+shape, mean"] = float(np.mean(pairs))
    figures["p@10 colour+shape, min"] = float(np.min(pairs))
    colour_p = [float(np.mean(colours[top(text(colour))] == colour)) for colour in shapekit.COLOURS]
    figures["p@10 colour ('red'), mean"] = float(np.mean(colour_p))
    figures["p@10 colour ('red'), min"] = float(np.min(colour_p))
    shape_p = [float(np.mean(shapes[top(text(f"a {shape}"))] == shape)) for shape in shapekit.SHAPES]
    figures["p@10 shape ('a star'), mean"] = float(np.mean(shape_p))
    figures["p@10 shape ('a star'), min"] = float(np.min(shape_p))

    # A negative term removes what it names: "circle" - 1.0 * "red" keeps circles, drops red ones.
    kept, named = [], []
    for shape in shapekit.SHAPES:
        for colour in shapekit.COLOURS:
            query = _unit(_unit(text(f"a {shape}")) - _unit(text(colour)))
            hits = top(query)
            named.append(float(np.mean(colours[hits] == colour)))
            kept.append(float(np.mean(shapes[hits] == shape)))
    figures["'a SHAPE' - 'COLOUR': share of COLOUR in top 10, mean"] = float(np.mean(named))
    figures["'a SHAPE' - 'COLOUR': share of COLOUR in top 10, max"] = float(np.max(named))
    figures["'a SHAPE' - 'COLOUR': share of SHAPE in top 10, mean"] = float(np.mean(kept))
    base = [
        float(np.mean(colours[top(text(f"a {shape}"))] == colour))
        for shape in shapekit.SHAPES
        for colour in shapekit.COLOURS
    ]
    figures["'a SHAPE' alone: share of COLOUR in top 10, mean"] = float(np.mean(base))

    # An image term plus a text term: a red circle's picture + "square" -> red squares.
    both, image_only = [], []
    for n, (colour, shape) in enumerate(shapekit.CLASSES):
        reference = shapekit.shape_image(colour, shape, 5_000_000 + n)
        image_vector = embedder.encode_images([embedder.prepare(reference)])[0]
        other = shapekit.SHAPES[(shapekit.SHAPES.index(shape) + 1) % len(shapekit.SHAPES)]
        hits = top(_unit(_unit(image_vector) + _unit(text(f"a {other}"))))
        both.append(float(np.mean((colours[hits] == colour) & (shapes[hits] == other))))
        alone = top(image_vector)
        image_only.append(float(np.mean((colours[alone] == colour) & (shapes[alone] == other))))
    figures["picture of COLOUR SHAPE + 'a OTHER': COLOUR OTHER in top 10, mean"] = float(np.mean(both))
    figures["picture alone: COLOUR OTHER in top 10, mean"] = float(np.mean(image_only))
    return figures


def report(figures: dict[str, float]) -> None:
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="folder to save the trained model in")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--per-class", type=int, default=300, help="training pictures per colour+shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="retrain into a temp folder and evaluate it")
    parser.add_argument("--evaluate", type=Path, help="only evaluate this saved model")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.evaluate:
        report(evaluate(args.evaluate))
        return 0
    if args.check:
        with tempfile.TemporaryDirectory(prefix="shapes-clip-") as tmp:
            train(Path(tmp) / "model", args.steps, args.batch, args.per_class, args.seed)
            report(evaluate(Path(tmp) / "model"))
        return 0
    if args.out is None:
        parser.error("give a folder to save the model in, or --check / --evaluate")
    if args.out.exists():
        shutil.rmtree(args.out)
    train(args.out, args.steps, args.batch, args.per_class, args.seed)
    report(evaluate(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
