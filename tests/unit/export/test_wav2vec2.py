"""Family wav2vec2-seqcls: Wav2Vec2ForSequenceClassification folders, normalization in the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from streamd.cli import main

from tests.helpers.families import (
    Reference,
    assert_detector_matches,
    assert_score_matches,
    detector,
    export_args,
    export_cli,
    extractor_card_reference,
    speech_windows,
)
from tests.helpers.tinymodels import save_tiny_wav2vec2


def card_p_fake(folder: Path, fake: int = 1) -> Reference:
    """The card's code: Wav2Vec2FeatureExtractor, then Wav2Vec2ForSequenceClassification,
    softmax."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    return extractor_card_reference(
        folder, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification, fake
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v2") / "ckpt", seed=3)
    from transformers import Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():  # spread the random scores over 0..1
        model.classifier.weight.mul_(40)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def fp32(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_cli(ckpt, tmp_path_factory.mktemp("w2v2-models"), "w2v2")


def test_parity_lengths_and_batch_sizes(ckpt: Path, fp32: Path, speech_16k: np.ndarray) -> None:
    # 2.5 s, 4 s and odd lengths; batches of 1, 2 and 3 rows
    lengths = [40000, 64000, 64000, 51237, 51237, 51237, 43211]
    assert_detector_matches(fp32, card_p_fake(ckpt), speech_windows(speech_16k, lengths), batch=3)
    p = card_p_fake(ckpt)(np.stack(speech_windows(speech_16k, [40000, 40000], offset=5)))
    assert np.all((p > 0.001) & (p < 0.999))  # not a comparison of saturated scores


@pytest.mark.slow
def test_score_whole_file_matches_card(
    ckpt: Path, fp32: Path, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    assert_score_matches(fp32, speech_16k, card_p_fake(ckpt), tmp_path)


@pytest.mark.parametrize(("flag", "tol"), [("--int8", 0.1), ("--fp16", 0.01)])
@pytest.mark.slow
def test_int8_and_fp16_make_working_models(
    ckpt: Path, tmp_path: Path, speech_16k: np.ndarray, flag: str, tol: float
) -> None:
    import yaml

    manifest = export_cli(ckpt, tmp_path, "q", flag)
    m = yaml.safe_load(manifest.read_text())
    assert m["precision"] == flag[2:] and f"{flag[2:]}_max_abs_diff" in m["export"]
    windows = speech_windows(speech_16k, [64000, 64000, 40000, 40000])
    got, logits = detector(manifest).score_windows(windows)
    assert np.all(np.isfinite(logits))
    want = card_p_fake(ckpt)(np.stack(windows[:2]))
    assert np.abs(got[:2] - want).max() < tol


def test_refuses_without_a_fake_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = save_tiny_wav2vec2(tmp_path / "ckpt", id2label={0: "bonafide", 1: "other"})
    args = export_args(folder, tmp_path / "m", "x")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--fake-index" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m" / "x.onnx").exists()
    assert main([*args, "--fake-index", "1"]) == 0
