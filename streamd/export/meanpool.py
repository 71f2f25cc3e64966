"""Family ``wav2vec2-meanpool``: a ``.pt`` state dict of a wav2vec2 backbone + mean-pool + Linear.

Such cards publish ``torch.save(model.state_dict())`` of their own small module (a
``Wav2Vec2Model`` named ``backbone``/``wav2vec2``/``encoder``..., mean over frames, and a
``Linear(768, 2)`` named ``classifier``/``fc``/``head``...) without a config. The backbone's
config is read off the tensor shapes; what shapes cannot tell (conv strides, attention heads,
pre/post layer norm) follows the published wav2vec2 configs, and ``--config config.json``
overrides the guess. The card feeds raw waveform: no normalization in the graph.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from streamd.errors import UsageError
from streamd.export.common import (
    CARD_LICENSE,
    PooledLinear,
    fake_index_from_labels,
    labels_for,
    load_or_fail,
    read_json_object,
)
from streamd.export.export import ExportPlan
from streamd.export.hf import offline_quiet
from streamd.model.manifest import WindowSpec

FAMILY = "wav2vec2-meanpool"
ANCHOR = "feature_extractor.conv_layers.0.conv.weight"  # the first key of every wav2vec2 backbone
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
STRIP_PREFIXES = ("module.", "_orig_mod.")  # DataParallel and torch.compile wrappers
HEAD = re.compile(
    r"^(?P<prefix>(classifier|fc|head|linear|out|output|cls)(\.\d+)?\.)(weight|bias)$"
)
STANDARD_STRIDES = (5, 2, 2, 2, 2, 2, 2)  # every published wav2vec2 / XLS-R feature encoder
HEAD_DIM = 64  # 768/12 (base), 1024/16 (large), 1280/20 (XLS-R 1B): heads are not in the shapes
DEFAULT_LABELS = ["bonafide", "spoof"]
WEIGHT_NORM = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only (``weights_only``: a .pt file cannot run code), unwrapped and de-prefixed."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_or_fail(str(path), lambda: load_file(str(path)))
    else:
        obj = load_or_fail(
            str(path), lambda: torch.load(str(path), map_location="cpu", weights_only=True)
        )
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and ANCHOR not in obj:
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(
            f"{path}: not a state dict of tensors (save it with torch.save(model.state_dict()))"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        for prefix in STRIP_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def split_state_dict(
    sd: dict[str, torch.Tensor], origin: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict[str, str]]:
    """(backbone tensors, head weight, head bias, the prefixes found); unknown keys fail by name."""
    anchors = [k for k in sd if k.endswith(ANCHOR)]
    if len(anchors) != 1:
        raise UsageError(
            f"{origin}: expected one wav2vec2 backbone (a key "
            f"ending in {ANCHOR}), found {len(anchors)}"
        )
    bprefix = anchors[0][: -len(ANCHOR)]
    backbone = {k[len(bprefix) :]: v for k, v in sd.items() if k.startswith(bprefix)}
    rest = {k: v for k, v in sd.items() if not k.startswith(bprefix)}
    heads = {m.group("prefix") for k in rest if (m := HEAD.match(k))}
    unknown = sorted(k for k in rest if not HEAD.match(k))
    if unknown or len(heads) != 1:
        what = (
            f"unknown keys {unknown[:5]}"
            if unknown
            else f"{len(heads)} classifier heads {sorted(heads)}"
        )
        raise UsageError(
            f"{origin}: {what}; expected the backbone under {bprefix!r} and one Linear named "
            "classifier/fc/head/linear/out (weight and bias)"
        )
    hprefix = heads.pop()
    weight, bias = rest.get(hprefix + "weight"), rest.get(hprefix + "bias")
    if weight is None or bias is None or weight.ndim != 2:
        raise UsageError(f"{origin}: head {hprefix!r} needs a 2-d weight and a bias")
    return backbone, weight, bias, {"backbone": bprefix, "head": hprefix}


def infer_config(sd: dict[str, torch.Tensor], origin: str) -> dict[str, Any]:
    """A transformers Wav2Vec2Config dict read off the backbone's tensor shapes."""

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise UsageError(f"{origin}: backbone has no {key}; pass --config with its config.json")
        return sd[key]

    n_conv = sum(
        1 for k in sd if re.fullmatch(r"feature_extractor\.conv_layers\.\d+\.conv\.weight", k)
    )
    convs = [need(f"feature_extractor.conv_layers.{i}.conv.weight") for i in range(n_conv)]
    norms = [f"feature_extractor.conv_layers.{i}.layer_norm.weight" in sd for i in range(n_conv)]
    if n_conv != len(STANDARD_STRIDES):
        raise UsageError(
            f"{origin}: {n_conv} conv layers, strides unknown; pass --config with its config.json"
        )
    if all(norms):
        feat_norm = "layer"
    elif norms[0] and not any(norms[1:]):
        feat_norm = "group"
    else:
        raise UsageError(f"{origin}: unexpected feature-encoder norms {norms}; pass --config")
    hidden = int(need("feature_projection.projection.weight").shape[0])
    if hidden % HEAD_DIM:
        raise UsageError(
            f"{origin}: hidden size {hidden} is not a multiple of "
            f"{HEAD_DIM}: cannot infer the attention heads; pass --config"
        )
    pos = next(
        (
            sd[k]
            for k in (
                "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
                "encoder.pos_conv_embed.conv.weight_v",
                "encoder.pos_conv_embed.conv.weight",
            )
            if k in sd
        ),
        None,
    )
    if pos is None:
        raise UsageError(f"{origin}: backbone has no positional conv embedding; pass --config")
    n_layers = sum(
        1 for k in sd if re.fullmatch(r"encoder\.layers\.\d+\.attention\.q_proj\.weight", k)
    )
    return {
        "conv_dim": [int(w.shape[0]) for w in convs],
        "conv_kernel": [int(w.shape[2]) for w in convs],
        "conv_stride": list(STANDARD_STRIDES),
        "conv_bias": "feature_extractor.conv_layers.0.conv.bias" in sd,
        "feat_extract_norm": feat_norm,
        # Published configs pair layer-norm feature encoders with pre-LN transformers
        # (large-lv60, XLS-R).
        "do_stable_layer_norm": feat_norm == "layer",
        "hidden_size": hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": hidden // HEAD_DIM,
        "intermediate_size": int(
            need("encoder.layers.0.feed_forward.intermediate_dense.weight").shape[0]
        ),
        "num_conv_pos_embeddings": int(pos.shape[2]),
        "num_conv_pos_embedding_groups": hidden // int(pos.shape[1]),
    }


def build_backbone(sd: dict[str, torch.Tensor], config: dict[str, Any], origin: str) -> Any:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    offline_quiet()
    cfg = Wav2Vec2Config(**{**config, "attn_implementation": "eager"})
    model = Wav2Vec2Model(cfg)
    expected = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        stem, _, leaf = key.rpartition(".")
        if leaf in WEIGHT_NORM and key not in expected:
            key = f"{stem}.{WEIGHT_NORM[leaf]}"
        renamed[key] = value
    # masked_spec_embed only fills SpecAugment masks in training: tolerate it missing or extra.
    if "masked_spec_embed" in expected:
        renamed.setdefault("masked_spec_embed", expected["masked_spec_embed"])
    else:
        renamed.pop("masked_spec_embed", None)
    load_or_fail(origin, lambda: model.load_state_dict(renamed, strict=True))
    model.train(False)  # eval mode (transformers leaves eval() untyped)
    return model


def load_plan(
    source: Path,
    fake_index: int | list[int] | None = None,
    config_path: Path | None = None,
    labels: list[str] | None = None,
    window_min_s: float = 2.5,
    window_max_s: float = 4.0,
    source_url: str | None = None,
    license: str | None = None,
    **_: Any,
) -> ExportPlan:
    if not source.is_file():
        raise UsageError(f"{source}: family {FAMILY} needs a .pt/.pth state dict file")
    sd = read_state_dict(source)
    backbone_sd, weight, bias, prefixes = split_state_dict(sd, str(source))
    if config_path is not None:
        config = read_json_object(config_path)
        config = {k: v for k, v in config.items() if k not in ("architectures", "_name_or_path")}
    else:
        config = infer_config(backbone_sd, str(source))
    backbone = build_backbone(backbone_sd, config, str(source))
    hidden = int(backbone.config.hidden_size)
    if weight.shape[1] != hidden:
        raise UsageError(
            f"{source}: head takes {weight.shape[1]} features but the backbone gives {hidden}"
        )
    names = labels_for(int(weight.shape[0]), labels, DEFAULT_LABELS, str(source))
    if fake_index is None and labels is None and names == DEFAULT_LABELS:
        fake_index = 1  # the card's convention: 0 bona fide, 1 spoof
    fidx = fake_index_from_labels(names, fake_index, str(source))
    return ExportPlan(
        module=PooledLinear(backbone, weight.float(), bias.float()).eval(),
        family=FAMILY,
        labels=names,
        fake_index=fidx,
        window=WindowSpec(min_s=window_min_s, max_s=window_max_s, pad="zero"),
        source=source_url or str(source),
        license=license or CARD_LICENSE,
        extra={
            "normalize": "none",
            "pooling": "mean over frames of last_hidden_state",
            "trained_window_s": 4.0,
            "key_prefixes": prefixes,
            "backbone_config": {
                k: backbone.config.to_dict()[k]
                for k in (
                    "hidden_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "feat_extract_norm",
                    "do_stable_layer_norm",
                )
            },
        },
    )
