"""Tiny models of the real architectures with random weights, saved the way model cards save
them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_w2v2_config(**over: Any) -> Any:
    """A tiny wav2vec2-base-shaped config (7 conv layers, base strides, group norm) with
    overrides."""
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
    Wav2Vec2ForSequenceClassification(tiny_wav2vec2_config(**kw)).save_pretrained(folder)
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)  # type: ignore[no-untyped-call]
    fe.save_pretrained(folder)
    return folder


# AASIST at a fraction of the width, same structure (the sinc front end, graph attention, heads).
TINY_AASIST: dict[str, Any] = {
    "nb_samp": 64600,
    "first_conv": 128,
    "filts": [70, [1, 8], [8, 8], [8, 16], [16, 16]],
    "gat_dims": [16, 8],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}


def tiny_aasist(seed: int = 0, config: dict[str, Any] | None = None) -> Any:
    """A tiny AASIST in eval mode, with batch-norm statistics that keep signals at unit scale.

    Default statistics would leave the sinc output (~1e-3) far below the biases, and every input
    would get the same logits to 1e-4, which would make ONNX parity tests blind. ``config``: another
    model_config (default ``TINY_AASIST``).
    """
    import torch

    from streamd.export.aasist import AASIST

    torch.manual_seed(seed)
    model = AASIST(config or TINY_AASIST)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                assert mod.running_mean is not None and mod.running_var is not None
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
        first = model.first_bn
        assert first.running_var is not None and first.running_mean is not None
        first.running_var.fill_(1e-4)
        first.running_mean.fill_(0.005)
        model.out_layer.weight.mul_(10.0)
    return model.eval()
