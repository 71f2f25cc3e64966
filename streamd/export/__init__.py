"""Model architectures for export; torch lives only here, never on the runtime path.

``FAMILIES`` maps a family name to the module that turns its checkpoint into an ``ExportPlan``
(a function ``load_plan(source: Path, **options) -> ExportPlan``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from streamd.errors import UsageError

FAMILIES: dict[str, str] = {
    "wav2vec2-seqcls": "streamd.export.wav2vec2",
    "aasist": "streamd.export.aasist_export",
    "rawgat-st": "streamd.export.rawgat_export",
    "wav2vec2-meanpool": "streamd.export.meanpool",
    "ast": "streamd.export.ast",
    "convnext-mel": "streamd.export.convnext_mel",
    "w2v2-embed-logreg": "streamd.export.embed_logreg",
}

HF_ARCHITECTURES = {
    "Wav2Vec2ForSequenceClassification": "wav2vec2-seqcls",
    "ASTForAudioClassification": "ast",
    "ConvNextForImageClassification": "convnext-mel",
}


def guess_family(source: Path) -> str:
    """The family of a checkpoint when ``--family`` is not given."""
    if source.is_dir() and (source / "config.json").exists():
        try:
            arch = (json.loads((source / "config.json").read_text()).get("architectures") or [""])[
                0
            ]
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{source}/config.json: cannot read ({exc})") from None
        if arch in HF_ARCHITECTURES:
            return HF_ARCHITECTURES[arch]
        raise UsageError(f"{source}: architecture {arch!r} is not a known family; pass --family")
    if source.suffix in (".pth", ".pt"):
        return _family_of_state_dict(source)
    raise UsageError(
        f"{source}: cannot tell the model family; pass --family ({', '.join(FAMILIES)})"
    )


def _family_of_state_dict(source: Path) -> str:
    """Tell AASIST, RawGAT-ST and a wav2vec2 + mean-pool head apart by the state dict's key names
    (no code runs)."""
    try:
        import torch

        obj = torch.load(str(source), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(
            f"{source}: cannot read as a PyTorch state dict ({type(exc).__name__}); pass --family"
        ) from None
    while isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))  # {"state_dict": {...}} and similar wrappers
    keys = " ".join(obj) if isinstance(obj, dict) else ""
    if "proj_node." in keys and "encoder2." in keys:
        return "rawgat-st"
    if "pos_S" in keys or "master1" in keys:
        return "aasist"
    if "feature_extractor.conv_layers" in keys or "encoder.layers." in keys:
        return "wav2vec2-meanpool"
    raise UsageError(
        f"{source}: the state dict's keys match no known "
        f"family; pass --family ({', '.join(FAMILIES)})"
    )


def family_module(family: str) -> Any:
    if family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        return importlib.import_module(FAMILIES[family])
    except ImportError as exc:
        if exc.name in ("torch", "transformers", "onnx"):
            raise UsageError(f"export needs {exc.name}: pip install 'streamd[export]'") from None
        raise UsageError(f"family {family!r} is not available in this build ({exc})") from None
