"""Build CLIP models offline: a tiny one for tests, the exact ViT-B/32 architecture for benchmarks.

No weights can be downloaded here, so both carry random weights; the compute of the ViT-B/32 one
is the real model's, and the loading path (SentenceTransformer(folder)) is the real one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _vocab() -> dict[str, int]:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for code in range(33, 127):
        for token in (chr(code), chr(code) + "</w>"):
            vocab.setdefault(token, len(vocab))
    return vocab


def build_clip(out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Save a random-weight CLIP model + processor that SentenceTransformer(out) loads offline."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(out)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    tok_dir = out / "_tokenizer_src"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    text_ids = {"vocab_size": len(vocab), "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    if size == "tiny":
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
            projection_dim=32,
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


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=["tiny", "vit-b-32"], default="tiny")
    args = parser.parse_args()
    print(build_clip(args.out, args.size))
