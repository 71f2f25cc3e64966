"""Pieces several families share: opening checkpoints, labels, references and graph-safe torch ops.

Every family's ``load_plan`` opens its checkpoint through the helpers here, so a bad folder,
label set or ``--config`` file fails the same way, with one line that names the file.

The torch helpers here are written so that ``torch.onnx.export`` traces them into graphs that
accept any batch size and any number of samples: padding and cutting use concat + slice instead
of Python arithmetic on shapes, which the tracer would freeze at the dummy input's length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from streamd.errors import ModelError, UsageError

T = TypeVar("T")
SR = 16000
FAKE_LABEL = re.compile(r"fake|spoof|synthetic|deepfake|generated|clone|tts|\bai\b", re.IGNORECASE)
NORM_EPS = 1e-7  # transformers' zero_mean_unit_var_norm
CARD_LICENSE = "see the model card"
Reference = Callable[[np.ndarray], np.ndarray]  # float32 [B, T] -> logits, by the card's code


def fake_index_from_labels(
    labels: list[str], override: int | list[int] | None, origin: str
) -> int | list[int]:
    """``--fake-index`` when given, else the one label (or labels) that says fake."""
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
    """Output names in index order from a config.json's ``id2label`` (``LABEL_i`` when unnamed)."""
    id2label = config.get("id2label") or {}
    n = int(config.get("num_labels") or len(id2label) or 2)
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


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


@dataclass(frozen=True)
class HfCard:
    """A Hugging Face classifier folder, checked: its config, output labels and which mean fake."""

    folder: Path
    config: dict[str, Any]
    labels: list[str]
    fake_index: int | list[int]

    def source(self, source_url: str | None) -> str:
        """Where the manifest says the model came from: ``--source-url``, the card's name, the
        folder."""
        return source_url or str(self.config.get("_name_or_path") or self.folder)


def open_hf_card(
    source: Path, architectures: tuple[str, ...], family: str, fake_index: int | list[int] | None
) -> HfCard:
    """The opening every Hugging Face classifier family shares."""
    config = hf_config(source, architectures, family)
    labels = read_labels(config)
    return HfCard(source, config, labels, fake_index_from_labels(labels, fake_index, str(source)))


def read_json_object(path: Path) -> dict[str, Any]:
    """A ``--config`` JSON file that must hold an object of keys."""
    data = load_or_fail(str(path), lambda: json.loads(Path(path).read_text()))
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a JSON object of keys")
    return data


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


def load_or_fail(what: str, loader: Callable[[], T], as_what: str = "") -> T:
    """Run a loader; turn whatever a broken checkpoint raises into one line that names the file."""
    try:
        return loader()
    except (UsageError, ModelError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{what}: cannot load{as_what} ({first[:300]})") from None


def wav2vec2_extractor(folder: Path, do_normalize: bool) -> Any:
    """The card's Wav2Vec2FeatureExtractor, or one with ``do_normalize`` when it ships none."""
    from transformers import Wav2Vec2FeatureExtractor

    if (folder / "preprocessor_config.json").exists():
        return load_or_fail(
            f"{folder}/preprocessor_config.json",
            lambda: Wav2Vec2FeatureExtractor.from_pretrained(str(folder)),
        )
    return Wav2Vec2FeatureExtractor(do_normalize=do_normalize)  # type: ignore[no-untyped-call]


def extractor_reference(fe: Any, model: nn.Module) -> Reference:
    """The card's own code path: its feature extractor (numpy), then the PyTorch model's logits."""

    def run(batch: np.ndarray) -> np.ndarray:
        feats = fe(list(batch), sampling_rate=SR, return_tensors="pt")
        with torch.inference_mode():
            logits: torch.Tensor = model(input_values=feats["input_values"]).logits
        return logits.float().numpy()

    return run


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
        hidden: torch.Tensor = self.backbone(input_values=x).last_hidden_state
        return hidden.mean(dim=1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        z = self.head(self.embed(waveform))
        return torch.log_softmax(z, dim=1) if self.log_softmax else z
