"""Tiny models of the real architectures with random weights, saved the way model cards save them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_w2v2_config(**over: Any) -> Any:
    """A tiny wav2vec2-base-shaped config (7 conv layers, base strides, group norm) with overrides."""
    from transformers import Wav2Vec2Config

    kw: dict[str, Any] = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,
        "intermediate_size": 37,
        "conv_dim": (16,) * 7,
        "conv_stride": (5, 2, 2, 2, 2, 2, 2),
        "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "do_stable_layer_norm": False,
        "feat_extract_norm": "group",
        "vocab_size": 12,
    }
    return Wav2Vec2Config(**(kw | over))


def tiny_wav2vec2_config(
    num_labels: int = 2, id2label: dict[int, str] | None = None, **over: Any
) -> Any:
    """The tiny config as a two-class Wav2Vec2ForSequenceClassification card saves it."""
    labels = id2label or {0: "real", 1: "fake"}
    cfg = tiny_w2v2_config(
        hidden_size=32,
        num_attention_heads=2,
        classifier_proj_size=16,
        num_labels=num_labels,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        **over,
    )
    cfg.architectures = ["Wav2Vec2ForSequenceClassification"]
    return cfg


def save_tiny_wav2vec2(folder: Path, seed: int = 0, **kw: Any) -> Path:
    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(tiny_wav2vec2_config(**kw)).eval()
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder
