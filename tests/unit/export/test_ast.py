"""Family ast: ASTForAudioClassification with ASTFeatureExtractor's fbank inside the ONNX graph."""

from __future__ import annotations

from pathlib import Path

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
    export_args,
    export_cli,
    extractor_card_reference,
    speech_windows,
)

FAKE_FIRST = {0: "fake", 1: "real"}  # the known checkpoint's order


def save_tiny_ast(
    folder: Path, id2label: dict[int, str] = FAKE_FIRST, seed: int = 0, **fe_kw: object
) -> Path:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    cfg = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        max_length=1024,
        num_mel_bins=128,
    )
    cfg.architectures = ["ASTForAudioClassification"]
    model = ASTForAudioClassification(cfg)
    dense = model.classifier.dense
    assert isinstance(dense, torch.nn.Linear)
    with torch.no_grad():  # spread the random scores over 0..1
        dense.weight.mul_(30)
    model.save_pretrained(folder)
    ASTFeatureExtractor(**fe_kw).save_pretrained(folder)  # type: ignore[no-untyped-call]
    return folder


def card_p_fake(folder: Path, fake: int = 0) -> Reference:
    """The card's code: ASTFeatureExtractor, then ASTForAudioClassification, softmax."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    return extractor_card_reference(folder, ASTFeatureExtractor, ASTForAudioClassification, fake)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ast")
    ckpt = save_tiny_ast(root / "ckpt")
    return ckpt, export_cli(ckpt, root / "models", "ast")


def test_extractor_path_is_known() -> None:
    """Parity is against the extractor as installed here: numpy unless torchaudio is present."""
    from transformers.utils.import_utils import is_speech_available

    from streamd.export.ast import kaldi_mel_banks

    if is_speech_available():
        pytest.skip("torchaudio is installed: the extractor uses torchaudio's fbank")
    from transformers import ASTFeatureExtractor

    fe = ASTFeatureExtractor()  # type: ignore[no-untyped-call]
    assert np.abs(kaldi_mel_banks(128) - fe.mel_filters).max() < 1e-9


def test_features_match_the_extractor(speech_16k: np.ndarray) -> None:
    from transformers import ASTFeatureExtractor

    from streamd.export.ast import KaldiFbankFeatures

    fe = ASTFeatureExtractor(mean=-3.1, std=2.7)  # type: ignore[no-untyped-call]
    ours = KaldiFbankFeatures(128, 1024, fe.mean, fe.std, True)
    batch = np.stack(speech_windows(speech_16k, [51237, 51237]))
    want = fe(list(batch), sampling_rate=SR, return_tensors="np")["input_values"]
    got = ours(torch.from_numpy(batch)).numpy()
    assert got.shape == want.shape == (2, 1024, 128)
    assert np.abs(got - want).max() < 2e-4  # normalized log-mel units (float32 vs float64 DFT)


def test_label_order_comes_from_the_config(exported: tuple[Path, Path]) -> None:
    import yaml

    m = yaml.safe_load(exported[1].read_text())
    assert m["labels"] == ["fake", "real"] and m["fake_index"] == 0
    assert (
        m["features"]["mean"] == pytest.approx(-4.2677393) and m["features"]["max_length"] == 1024
    )


def test_parity_on_real_speech_several_lengths(
    exported: tuple[Path, Path], speech_16k: np.ndarray
) -> None:
    ckpt, manifest = exported
    windows = speech_windows(speech_16k, [40000, 40000, 64000, 51237], offset=3000)
    assert_detector_matches(manifest, card_p_fake(ckpt), windows)


@pytest.mark.slow
def test_score_whole_file_matches_card(
    exported: tuple[Path, Path], speech_16k: np.ndarray, tmp_path: Path
) -> None:
    ckpt, manifest = exported
    assert_score_matches(manifest, speech_16k, card_p_fake(ckpt), tmp_path)


@pytest.mark.slow
def test_unnamed_labels_need_fake_index(
    tmp_path: Path, speech_16k: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_tiny_ast(
        tmp_path / "ckpt", {0: "LABEL_0", 1: "LABEL_1"}, seed=1, mean=-3.0, std=4.0
    )
    assert main(export_args(ckpt, tmp_path / "m", "a")) == 2
    assert "--fake-index" in capsys.readouterr().err
    manifest = export_cli(ckpt, tmp_path / "m", "a", "--fake-index", "0")
    windows = speech_windows(speech_16k, [48000, 48000])
    assert_detector_matches(
        manifest, card_p_fake(ckpt, fake=0), windows
    )  # custom mean/std reach the graph
