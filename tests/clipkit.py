"""Build CLIP models offline: a tiny one for tests, the exact ViT-B/32 architecture for benchmarks.

No weights can be downloaded here, so both carry random weights; the compute of the ViT-B/32 one
is the real model's, and the loading path (SentenceTransformer(folder)) is the real one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Words the benchmark model's tokenizer keeps whole, as CLIP's real 49k-token BPE does for common words:
# a query then costs the real model's number of tokens (one per word) instead of one per character.
QUERY_WORDS = (  # noqa: SIM905 - a paragraph of words reads better than 110 quoted ones
    "a an the of on in at by with from to and or for this that my our photo picture image "
    "dog dogs cat cats bird horse cow people person man woman child children family friends baby "
    "beach sea lake river mountain mountains forest park garden city street house kitchen office "
    "car bike train boat plane road bridge snow rain sunset sunrise night sky clouds tree trees flower "
    "flowers food cake pizza coffee receipt document screenshot hardware store shop market birthday "
    "party wedding holiday trip summer winter spring autumn old new red blue green white black small big "
    "happy sleeping running playing sitting standing smiling near under over inside outside"
).split()


def _merges(words: list[str]) -> list[str]:
    """Left-to-right BPE merges that build each word from its characters."""
    merges: dict[str, None] = {}
    for word in words:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merges.setdefault(f"{parts[0]} {parts[1]}")
            parts = [parts[0] + parts[1], *parts[2:]]
    return list(merges)


def _bpe(word: str, ranks: dict[str, int]) -> list[str]:
    """What CLIP's BPE makes of one word: merge the lowest-ranked adjacent pair until none is left."""
    parts = [*word[:-1], word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get(f"{a} {b}", 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def whole_words(words: tuple[str, ...] = QUERY_WORDS) -> list[str]:
    """The words that stay one token: a word whose inner pair another word merges first is dropped."""
    kept = list(words)
    while True:
        ranks = {merge: rank for rank, merge in enumerate(_merges(kept))}
        single = [w for w in kept if len(_bpe(w, ranks)) == 1]
        if single == kept:
            return kept
        kept = single


def _vocab(words: list[str] | None = None) -> tuple[dict[str, int], list[str]]:
    """Single characters (with and without the end-of-word mark), plus BPE merges that build `words`."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        for token in (chr(code), chr(code) + "</w>"):
            vocab.setdefault(token, len(vocab))
    merges = _merges(words or [])
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    return vocab, merges


def _quiet_transformers() -> None:
    """No torchvision fallback warning, no "Writing model shards" bar: the caller says what was built."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers.utils.logging as tf_logging

    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()


def build_clip(out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Save a random-weight CLIP model + processor that SentenceTransformer(out) loads offline."""
    _quiet_transformers()
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(out)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab(whole_words() if size == "vit-b-32" else None)
    tok_dir = out / "_tokenizer_src"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges))
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    text_ids = {"vocab_size": len(vocab), "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    if size in ("tiny", "tiny-48"):  # tiny-48: another model of other width, for model changes
        config = CLIPConfig(
            text_config={
                **text_ids,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_attention_heads": 2,
                "num_hidden_layers": 2,
                "max_position_embeddings": 77,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_attention_heads": 2,
                "num_hidden_layers": 2,
                "image_size": 32,
                "patch_size": 4,
            },
            projection_dim=48 if size == "tiny-48" else 32,
        )
        image_side = 32
    elif size == "vit-b-32":
        config = CLIPConfig(text_config=text_ids)  # transformers' defaults are ViT-B/32's sizes
        image_side = 224
    else:
        raise ValueError(f"unknown size {size!r}")
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(out)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_side}, crop_size={"height": image_side, "width": image_side}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    for name in os.listdir(tok_dir):
        os.unlink(tok_dir / name)
    tok_dir.rmdir()
    return out


def build_text_model(out: Path, dim: int = 32, seed: int = 0) -> Path:
    """A multilingual-shaped text model like clip-ViT-B-32-multilingual-v1, in miniature: DistilBERT with
    a word-piece vocabulary that has accented letters, mean pooling, and a Dense projection to `dim`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    out = Path(out)
    if (out / "modules.json").exists():
        return out
    letters = "abcdefghijklmnopqrstuvwxyzäöüßéèêçñáíóú"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    words += ["photo", "hund", "chien", "perro", "dog", "strand", "plage", "beach"]
    src = out.with_name(out.name + "-src")
    src.mkdir(parents=True, exist_ok=True)
    (src / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(words), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64
    )
    DistilBertModel(config).save_pretrained(src)
    BertTokenizerFast(str(src / "vocab.txt"), do_lower_case=True).save_pretrained(src)
    transformer = Transformer(str(src), max_seq_length=64)
    pooling = Pooling(32, "mean")
    dense = Dense(32, dim, bias=False, activation_function=torch.nn.Identity())
    SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(out))
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=["tiny", "tiny-48", "vit-b-32"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out.expanduser().resolve()
    kept = (out / "config.json").exists()
    build_clip(out, args.size, args.seed)
    if kept:
        print(f"a model is already in {out}; kept it")
    else:
        what = "ViT-B/32-sized" if args.size == "vit-b-32" else "tiny"
        print(f"built a random-weight {what} CLIP model in {out} (for trying imgd offline; no meaningful results)")
