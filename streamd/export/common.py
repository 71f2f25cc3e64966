"""Pieces several families share: reading Hugging Face folders, labels, and graph-safe torch ops.

The torch helpers here are written so that ``torch.onnx.export`` traces them into graphs that
accept any batch size and any number of samples: padding and cutting use concat + slice instead
of Python arithmetic on shapes, which the tracer would freeze at the dummy input's length.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from streamd.errors import ModelError, UsageError
from streamd.export.wav2vec2 import FAKE_LABEL, NORM_EPS, fake_index_from_labels, read_labels

__all__ = [
    "FAKE_LABEL",
    "NORM_EPS",
    "PooledLinear",
    "fake_index_from_labels",
    "fit_length",
    "hf_config",
    "labels_for",
    "load_or_fail",
    "preprocessor_config",
    "read_labels",
    "zero_mean_unit_var",
]

T = TypeVar("T")


def hf_config(source: Path, architectures: tuple[str, ...], family: str) -> dict[str, Any]:
    """The folder's config.json, after checking it is one of the architectures the family serves."""
    if not source.is_dir() or not (source / "config.json").exists():
        raise UsageError(f"{source}: expected a Hugging Face model folder with config.json")
    try:
        config: dict[str, Any] = json.loads((source / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{source}/config.json: cannot read ({exc})") from None
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in architectures:
        raise UsageError(
            f"{source}: architecture {arch}; family {family} needs {' or '.join(architectures)}"
        )
    return config


def preprocessor_config(folder: Path) -> dict[str, Any]:
    """preprocessor_config.json as a dict ({} when absent): the card's preprocessing constants."""
    path = folder / "preprocessor_config.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    return data if isinstance(data, dict) else {}


def labels_for(n: int, given: list[str] | None, default: list[str], origin: str) -> list[str]:
    """``--labels`` when given (checked against the output width), else the family's default."""
    labels = given or (default if len(default) == n else [f"LABEL_{i}" for i in range(n)])
    if len(labels) != n:
        raise UsageError(
            f"{origin}: --labels names {len(labels)} classes but the model has {n} outputs"
        )
    return labels


def load_or_fail(what: str, loader: Callable[[], T]) -> T:
    """Run a loader; turn whatever a broken checkpoint raises into one line that names the file."""
    try:
        return loader()
    except (UsageError, ModelError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{what}: cannot load ({first[:300]})") from None


def zero_mean_unit_var(x: torch.Tensor) -> torch.Tensor:
    """transformers' per-clip normalization (``zero_mean_unit_var_norm``), per row of [B, T]."""
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + NORM_EPS)


def fit_length(x: torch.Tensor, n: int, dim: int = 1) -> torch.Tensor:
    """Zero-pad or cut ``dim`` to exactly ``n``, for any input length, in a traceable way."""
    shape = list(x.shape)
    shape[dim] = n
    pad = torch.zeros(shape, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=dim).narrow(dim, 0, n)


class PooledLinear(nn.Module):
    """Waveform -> wav2vec2 backbone -> mean over frames -> one affine layer.

    Both the mean-pool checkpoints and the embedding + logistic-regression cards reduce to this;
    ``log_softmax`` makes the output log-probabilities, so a classifier whose reference gives
    probabilities (scikit-learn) compares exactly, and softmax of the output is unchanged.
    """

    def __init__(
        self,
        backbone: nn.Module,
        weight: np.ndarray | torch.Tensor,
        bias: np.ndarray | torch.Tensor,
        normalize: bool = False,
        log_softmax: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(np.asarray(weight), dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))
        self.normalize = normalize
        self.log_softmax = log_softmax

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        x = zero_mean_unit_var(waveform) if self.normalize else waveform
        return self.backbone(input_values=x).last_hidden_state.mean(dim=1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        z = self.head(self.embed(waveform))
        return torch.log_softmax(z, dim=1) if self.log_softmax else z
