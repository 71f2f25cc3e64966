"""Family ``wav2vec2-seqcls``: Hugging Face ``Wav2Vec2ForSequenceClassification`` checkpoints.

The card's feature extractor normalizes each clip to zero mean and unit variance; that step goes
inside the graph, per window, so the runtime feeds raw audio like every other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamd.export.common import (
    CARD_LICENSE,
    extractor_reference,
    open_hf_card,
    preprocessor_config,
    wav2vec2_extractor,
    zero_mean_unit_var,
)
from streamd.export.export import ExportPlan
from streamd.export.hf import from_pretrained, offline_quiet
from streamd.model.manifest import WindowSpec

FAMILY = "wav2vec2-seqcls"
ARCHITECTURE = "Wav2Vec2ForSequenceClassification"


class Wav2Vec2Window(nn.Module):
    """Raw waveform [B, T] -> logits, with the feature extractor's per-window normalization."""

    def __init__(self, model: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = zero_mean_unit_var(waveform) if self.normalize else waveform
        logits: torch.Tensor = self.model(input_values=x).logits
        return logits


def build_module(model: nn.Module, normalize: bool) -> nn.Module:
    return Wav2Vec2Window(model, normalize).eval()


def load_plan(
    source: Path,
    fake_index: int | list[int] | None = None,
    window_min_s: float = 2.5,
    window_max_s: float = 4.0,
    source_url: str | None = None,
    license: str | None = None,
    **_: Any,
) -> ExportPlan:
    card = open_hf_card(source, (ARCHITECTURE,), FAMILY, fake_index)
    from transformers import Wav2Vec2ForSequenceClassification

    model = from_pretrained(Wav2Vec2ForSequenceClassification, source, attn_implementation="eager")
    normalize = bool(preprocessor_config(source).get("do_normalize", True))
    return ExportPlan(
        module=build_module(model, normalize),
        family=FAMILY,
        labels=card.labels,
        fake_index=card.fake_index,
        window=WindowSpec(min_s=window_min_s, max_s=window_max_s, pad="zero"),
        source=card.source(source_url),
        license=license or CARD_LICENSE,
        reference=extractor_reference(wav2vec2_extractor(source, do_normalize=True), model),
        extra={
            "normalize": "zero_mean_unit_var" if normalize else "none",
            "architecture": ARCHITECTURE,
        },
    )


def build_wav2vec2_base_plan(seed: int = 0) -> ExportPlan:
    """A full-size wav2vec2-base classifier (95 M) with random weights, for benchmarks."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    offline_quiet()
    torch.manual_seed(seed)
    labels: dict[str, Any] = {
        "num_labels": 2,
        "id2label": {0: "real", 1: "fake"},
        "label2id": {"real": 0, "fake": 1},
    }
    cfg = Wav2Vec2Config(**labels)
    model: nn.Module = Wav2Vec2ForSequenceClassification(cfg)
    model.eval()
    return ExportPlan(
        module=build_module(model, normalize=True),
        family=FAMILY,
        labels=["real", "fake"],
        fake_index=1,
        window=WindowSpec(min_s=2.5, max_s=4.0, pad="zero"),
        source="random weights (benchmark)",
        atol=1e-3,
    )
