"""Full-size checkpoints with random weights, saved the way each family's cards save them.

``streamd bench families`` exports these through the families' own ``load_plan``, so the figures
cover the same code path as a user's export: checkpoint loading, tracing, verification.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamd.export.export import ExportPlan, _torch_reference
from streamd.export.hf import offline_quiet

BENCH_FAMILIES = [
    "wav2vec2-seqcls",
    "wav2vec2-meanpool",
    "ast",
    "convnext-mel",
    "w2v2-embed-logreg",
]
TWO: dict[str, Any] = {"id2label": {0: "real", 1: "fake"}, "label2id": {"real": 0, "fake": 1}}
CONVNEXT_PROCESSOR = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "resample": 3,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 224},
}


def setup_torch() -> None:
    """Same cores for PyTorch as onnxruntime's default, and no hub access."""
    offline_quiet()
    torch.set_num_threads(os.cpu_count() or 1)


def _wav2vec2_seqcls(folder: Path) -> tuple[Path, dict[str, Any]]:
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    cfg = Wav2Vec2Config(**TWO)
    cfg.architectures = ["Wav2Vec2ForSequenceClassification"]
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)  # type: ignore[no-untyped-call]
    return folder, {}


def _meanpool(folder: Path) -> tuple[Path, dict[str, Any]]:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    backbone = Wav2Vec2Model(Wav2Vec2Config())  # facebook/wav2vec2-base's architecture
    head = torch.nn.Linear(768, 2)
    state = {
        **{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        **{f"classifier.{k}": v for k, v in head.state_dict().items()},
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model.pt")
    return folder / "model.pt", {}


def _ast(folder: Path) -> tuple[Path, dict[str, Any]]:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    labels: dict[str, Any] = {
        "id2label": {0: "fake", 1: "real"},
        "label2id": {"fake": 0, "real": 1},
    }
    cfg = ASTConfig(**labels)  # AST base: 12 layers, 768 wide, 1024 x 128 input
    cfg.architectures = ["ASTForAudioClassification"]
    ASTForAudioClassification(cfg).save_pretrained(folder)
    ASTFeatureExtractor().save_pretrained(folder)  # type: ignore[no-untyped-call]
    return folder, {}


def _convnext(folder: Path) -> tuple[Path, dict[str, Any]]:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    cfg = ConvNextConfig(**TWO)  # convnext-tiny-224
    cfg.architectures = ["ConvNextForImageClassification"]
    ConvNextForImageClassification(cfg).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(CONVNEXT_PROCESSOR))
    return folder, {}


def _embed_logreg(folder: Path) -> tuple[Path, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    cfg = Wav2Vec2Config(vocab_size=32)  # wav2vec2-base-960h's architecture
    cfg.architectures = ["Wav2Vec2ForCTC"]
    Wav2Vec2ForCTC(cfg).save_pretrained(folder / "backbone")
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder / "backbone")  # type: ignore[no-untyped-call]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 768))
    y = np.where(rng.standard_normal(400) > 0, "spoof", "bonafide")
    scaler = StandardScaler().fit(x)
    (folder / "scaler.pkl").write_bytes(pickle.dumps(scaler))
    (folder / "classifier.pkl").write_bytes(
        pickle.dumps(LogisticRegression(max_iter=300).fit(scaler.transform(x), y))
    )
    return folder, {"trust_pickle": True}


MAKERS: dict[str, Callable[[Path], tuple[Path, dict[str, Any]]]] = {
    "wav2vec2-seqcls": _wav2vec2_seqcls,
    "wav2vec2-meanpool": _meanpool,
    "ast": _ast,
    "convnext-mel": _convnext,
    "w2v2-embed-logreg": _embed_logreg,
}


def make_checkpoint(family: str, folder: Path, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """(what to pass as --from, load_plan options) for a full-size random checkpoint of
    ``family``."""
    torch.manual_seed(seed)
    return MAKERS[family](folder)


def parameters(plan: ExportPlan) -> int:
    return sum(p.numel() for p in plan.module.parameters())


def original_pipeline(plan: ExportPlan) -> Callable[[np.ndarray], np.ndarray]:
    """The card's PyTorch pipeline, its own preprocessing included: what export verifies against."""
    return _torch_reference(plan)
