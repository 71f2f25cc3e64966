"""A frozen published AASIST encoder with a small trained head, exported as one graph.

Why: the ASVspoof 5 AASIST ranks unseen phone calls best of the published checkpoints but its
p_fake is uncalibrated, and retraining its graph layers on a few thousand windows overfits to the
sources. A standardised logistic (or tiny MLP) head on its frozen 160-dim readout, trained on
phone-channel windows, keeps the encoder's ranking and learns where "fake" starts on a call.

Graph: waveform [B, S] (16 kHz) -> tile/cut to 64,600 -> AASIST readout -> (x - mean) / scale
-> head -> logits [B, 2] = [spoof, bonafide], with softmax(logits)[0] = sigmoid(head score).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from streamd.export.aasist import AASIST, tile_to_length

LABELS = ["spoof", "bonafide"]


@dataclass
class HeadWeights:
    """Standardisation + layers of the head, as plain arrays (what the recipe fits and saves)."""

    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D]
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W [out, in], b [out]); ReLU between layers

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        np.savez(path, allow_pickle=False, **arrays)

    @classmethod
    def load(cls, path: Path) -> HeadWeights:
        z = np.load(path)
        n = sum(1 for k in z.files if k.startswith("w"))
        return cls(z["mean"], z["scale"], [(z[f"w{i}"], z[f"b{i}"]) for i in range(n)])

    def score(self, emb: np.ndarray) -> np.ndarray:
        """The head's fake score (logit) for readouts [N, D], in numpy: same maths as the graph."""
        x = (np.asarray(emb, np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return np.asarray(x[:, 0])


class Head(nn.Module):
    mean: Tensor  # buffers, declared for the type checker
    scale: Tensor

    def __init__(self, weights: HeadWeights) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(weights.mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(weights.scale, dtype=torch.float32))
        self.layers = nn.ModuleList()
        for w, b in weights.layers:
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(w, dtype=torch.float32))
                lin.bias.copy_(torch.tensor(b, dtype=torch.float32))
            self.layers.append(lin)

    def forward(self, emb: Tensor) -> Tensor:
        x = (emb - self.mean) / self.scale
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x[:, :1]


class AasistWithHead(nn.Module):
    """Waveform [B, S] -> logits [B, 2] (spoof, bonafide); the encoder is frozen, eval mode."""

    def __init__(self, encoder: AASIST, weights: HeadWeights) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.head = Head(weights)
        self.n_samples = encoder.config.nb_samp

    def forward(self, wave: Tensor) -> Tensor:
        z = self.head(self.encoder.embed(tile_to_length(wave, self.n_samples)))
        return torch.cat([z, torch.zeros_like(z)], dim=1)


def export_with_head(
    encoder: AASIST,
    weights: HeadWeights,
    out_dir: Path,
    name: str,
    threshold: float,
    source: str,
    license: str,
    metrics: dict[str, Any],
    extra: dict[str, Any],
    window_min_s: float = 2.5,
) -> Any:
    """Export to ``out_dir/name.onnx`` + ``name.yaml``; verified against PyTorch by the exporter."""
    from streamd.export.export import ExportPlan, export_plan
    from streamd.model.manifest import WindowSpec

    plan = ExportPlan(
        module=AasistWithHead(encoder, weights).eval(),
        family="aasist-head",
        labels=list(LABELS),
        fake_index=0,
        window=WindowSpec(min_s=window_min_s, max_s=encoder.config.nb_samp / 16000, pad="repeat"),
        source=source,
        license=license,
        threshold=threshold,
        metrics=metrics,
        fixed_length=True,
        extra={"score_note": "p_fake = softmax(logits)[0] = sigmoid(head score)", **extra},
    )
    return export_plan(plan, out_dir, name, say=lambda _m: None)
