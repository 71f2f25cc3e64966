"""Family ``wav2vec2-seqcls``: Hugging Face ``Wav2Vec2ForSequenceClassification`` checkpoints.

The card's feature extractor normalizes each clip to zero mean and unit variance; that step goes
inside the graph, per window, so the runtime feeds raw audio like every other model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import UsageError
from streamd.export.export import ExportPlan
from streamd.export.hf import from_pretrained, offline_quiet
from streamd.model.manifest import WindowSpec

FAKE_LABEL = re.compile(r"fake|spoof|synthetic|deepfake|generated|clone|tts|\bai\b", re.IGNORECASE)
NORM_EPS = 1e-7  # transformers' zero_mean_unit_var_norm


def fake_index_from_labels(
    labels: list[str], override: int | list[int] | None, origin: str
) -> int | list[int]:
    if override is not None:
        idx = override if isinstance(override, list) else [override]
        if any(not 0 <= i < len(labels) for i in idx):
            raise UsageError(f"--fake-index {override} is outside the labels {labels}")
        return override
    hits = [i for i, name in enumerate(labels) if FAKE_LABEL.search(name)]
    if not hits:
        raise UsageError(
            f"{origin}: no label says fake/spoof/synthetic (labels are {labels}); "
            "say which output index means fake with --fake-index N"
        )
    return hits[0] if len(hits) == 1 else hits


def read_labels(config: dict[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    n = int(config.get("num_labels") or len(id2label) or 2)
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


def _do_normalize(folder: Path) -> bool:
    pre = folder / "preprocessor_config.json"
    if pre.exists():
        try:
            return bool(json.loads(pre.read_text()).get("do_normalize", True))
        except (OSError, json.JSONDecodeError):
            pass
    return True


def build_module(model: Any, normalize: bool) -> Any:
    import torch

    class Wav2Vec2Window(torch.nn.Module):
        """Raw waveform [B, T] -> logits, with the feature extractor's per-window normalization."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            x = waveform
            if normalize:
                mean = x.mean(dim=1, keepdim=True)
                var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
                x = (x - mean) / torch.sqrt(var + NORM_EPS)
            return self.model(input_values=x).logits

    return Wav2Vec2Window().eval()


def reference_pipeline(folder: Path, model: Any) -> Any:
    """The card's own code path: the feature extractor in numpy, then the PyTorch model."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    pre = folder / "preprocessor_config.json"
    fe = (
        Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
        if pre.exists()
        else Wav2Vec2FeatureExtractor(do_normalize=True)
    )

    def run(batch: np.ndarray) -> np.ndarray:
        feats = fe(list(batch), sampling_rate=16000, return_tensors="pt", padding=False)
        with torch.inference_mode():
            return model(input_values=feats["input_values"]).logits.float().numpy()

    return run


def load_plan(
    source: Path,
    fake_index: int | list[int] | None = None,
    window_min_s: float = 2.5,
    window_max_s: float = 4.0,
    source_url: str | None = None,
    license: str | None = None,
    **_: Any,
) -> ExportPlan:
    if not source.is_dir() or not (source / "config.json").exists():
        raise UsageError(f"{source}: expected a Hugging Face model folder with config.json")
    config = json.loads((source / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    if arch != "Wav2Vec2ForSequenceClassification":
        raise UsageError(
            f"{source}: architecture {arch}, family wav2vec2-seqcls needs Wav2Vec2ForSequenceClassification"
        )
    labels = read_labels(config)
    fidx = fake_index_from_labels(labels, fake_index, str(source))
    offline_quiet()
    from transformers import Wav2Vec2ForSequenceClassification

    model = from_pretrained(Wav2Vec2ForSequenceClassification, source, attn_implementation="eager")
    normalize = _do_normalize(source)
    return ExportPlan(
        module=build_module(model, normalize),
        family="wav2vec2-seqcls",
        labels=labels,
        fake_index=fidx,
        window=WindowSpec(min_s=window_min_s, max_s=window_max_s, pad="zero"),
        source=source_url or str(config.get("_name_or_path") or source),
        license=license or "see the model card",
        reference=reference_pipeline(source, model),
        extra={"normalize": "zero_mean_unit_var" if normalize else "none", "architecture": arch},
    )


def build_wav2vec2_base_plan(seed: int = 0) -> ExportPlan:
    """A full-size wav2vec2-base classifier (95 M) with random weights, for benchmarks."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    offline_quiet()
    torch.manual_seed(seed)
    labels: dict[str, Any] = {
        "num_labels": 2,
        "id2label": {0: "real", 1: "fake"},
        "label2id": {"real": 0, "fake": 1},
    }
    cfg = Wav2Vec2Config(**labels)
    model = Wav2Vec2ForSequenceClassification(cfg).eval()
    return ExportPlan(
        module=build_module(model, normalize=True),
        family="wav2vec2-seqcls",
        labels=["real", "fake"],
        fake_index=1,
        window=WindowSpec(min_s=2.5, max_s=4.0, pad="zero"),
        source="random weights (benchmark)",
        atol=1e-3,
    )
