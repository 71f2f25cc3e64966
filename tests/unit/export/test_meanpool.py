"""Family wav2vec2-meanpool: a card's own backbone + mean-pool + Linear module, saved as a state
dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from streamd.cli import main

from tests.helpers.families import (
    SR,
    Reference,
    assert_detector_matches,
    assert_score_matches,
    card_reference,
    export_args,
    export_cli,
    speech_windows,
)
from tests.helpers.tinymodels import tiny_w2v2_config


def card_model(
    backbone_name: str = "backbone", head_name: str = "classifier", seed: int = 0, **over: object
) -> tuple[torch.nn.Module, Any]:
    """The module such cards define: any attribute names, mean over frames, Linear(hidden, 2)."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(seed)
    cfg = tiny_w2v2_config(**over)

    class Card(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, backbone_name, Wav2Vec2Model(cfg))
            setattr(self, head_name, torch.nn.Linear(cfg.hidden_size, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = getattr(self, backbone_name)(x).last_hidden_state.mean(dim=1)
            logits: torch.Tensor = getattr(self, head_name)(h)
            return logits

    model = Card().eval()
    with torch.no_grad():  # random heads are near zero: make the scores spread over 0..1
        getattr(model, head_name).weight.mul_(20)
    return model, cfg


def card_p_fake(model: torch.nn.Module) -> Reference:
    return card_reference(lambda batch: model(torch.from_numpy(batch)), 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    root = tmp_path_factory.mktemp("meanpool")
    model, _ = card_model()
    torch.save(model.state_dict(), root / "model.pt")
    manifest = export_cli(root / "model.pt", root / "models", "mp", "--family", "wav2vec2-meanpool")
    return model, manifest


def test_manifest_defaults_to_spoof_at_index_1(exported: tuple[torch.nn.Module, Path]) -> None:
    import yaml

    _, manifest = exported
    m = yaml.safe_load(manifest.read_text())
    assert m["labels"] == ["bonafide", "spoof"] and m["fake_index"] == 1
    assert m["family"] == "wav2vec2-meanpool" and m["normalize"] == "none"
    assert m["key_prefixes"] == {"backbone": "backbone.", "head": "classifier."}
    assert m["export"]["max_abs_diff_vs_torch"] < 1e-4


def test_parity_on_real_speech_several_lengths(
    exported: tuple[torch.nn.Module, Path], speech_16k: np.ndarray
) -> None:
    model, manifest = exported
    lengths = [int(2.5 * SR), int(2.5 * SR), 64000, 64000, 51234]
    assert_detector_matches(manifest, card_p_fake(model), speech_windows(speech_16k, lengths))


@pytest.mark.slow
def test_score_whole_file_matches_card(
    exported: tuple[torch.nn.Module, Path], speech_16k: np.ndarray, tmp_path: Path
) -> None:
    model, manifest = exported
    assert assert_score_matches(manifest, speech_16k, card_p_fake(model), tmp_path) >= 2


@pytest.mark.slow
def test_other_prefixes_wrappers_and_old_weight_norm(
    tmp_path: Path, speech_16k: np.ndarray
) -> None:
    model, _ = card_model("wav2vec2", "fc", seed=1)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}  # saved from DataParallel
    for key in list(sd):  # pre-parametrization weight_norm names, as older torch saved them
        if key.endswith("parametrizations.weight.original0"):
            sd[key.replace("parametrizations.weight.original0", "weight_g")] = sd.pop(key)
        elif key.endswith("parametrizations.weight.original1"):
            sd[key.replace("parametrizations.weight.original1", "weight_v")] = sd.pop(key)
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    manifest = export_cli(
        tmp_path / "ckpt.pth",
        tmp_path / "models",
        "mp2",
        "--family",
        "wav2vec2-meanpool",
        "--labels",
        "spoof,bonafide",
        "--window-min",
        "4",
        "--window-max",
        "4",
    )
    import yaml

    m = yaml.safe_load(manifest.read_text())
    assert m["fake_index"] == 0 and m["key_prefixes"] == {"backbone": "wav2vec2.", "head": "fc."}
    ref = card_p_fake(model)
    windows = speech_windows(speech_16k, [64000, 64000])
    assert_detector_matches(manifest, lambda b: 1.0 - ref(b), windows)
    assert (
        main(["models", "verify", "mp2", "--models-dir", str(tmp_path / "models")]) == 0
    )  # replays --labels


def test_config_json_overrides_the_guess(tmp_path: Path) -> None:
    model, cfg = card_model(hidden_size=32, num_attention_heads=2)  # 32 is not a multiple of 64
    torch.save(model.state_dict(), tmp_path / "m.pt")
    args = export_args(tmp_path / "m.pt", tmp_path / "models", "x", "--family", "wav2vec2-meanpool")
    assert main(args) == 2  # heads cannot be guessed: a usage error that says --config
    cfg.to_json_file(tmp_path / "config.json")
    assert main([*args, "--config", str(tmp_path / "config.json")]) == 0


def test_unknown_keys_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = card_model()
    sd = dict(model.state_dict())
    sd["attention_pool.query"] = torch.zeros(64)
    torch.save(sd, tmp_path / "m.pt")
    rc = main(
        export_args(tmp_path / "m.pt", tmp_path / "models", "x", "--family", "wav2vec2-meanpool")
    )
    err = capsys.readouterr().err
    assert rc == 2 and "attention_pool.query" in err and "Traceback" not in err
    assert not (tmp_path / "models" / "x.onnx").exists()
