"""Family w2v2-embed-logreg: wav2vec2 mean embeddings + pickled StandardScaler and
LogisticRegression."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sklearn")

import torch

from streamd.cli import main

from tests.helpers.families import (
    SR,
    Reference,
    assert_detector_matches,
    assert_score_matches,
    export_args,
    export_cli,
    speech_windows,
)
from tests.helpers.tinymodels import tiny_w2v2_config


def save_backbone(folder: Path, seed: int = 0) -> Path:
    """A tiny wav2vec2-base-960h look-alike: a CTC checkpoint and a normalizing feature
    extractor."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    cfg = tiny_w2v2_config()
    cfg.architectures = ["Wav2Vec2ForCTC"]
    Wav2Vec2ForCTC(cfg).save_pretrained(folder)
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)  # type: ignore[no-untyped-call]
    fe.save_pretrained(folder)
    return folder


def embed(folder: Path, batch: np.ndarray) -> np.ndarray:
    """The card's embedding code."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    fe = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    model = Wav2Vec2Model.from_pretrained(folder)  # in eval mode
    with torch.inference_mode():
        hidden = model(**fe(list(batch), sampling_rate=SR, return_tensors="pt")).last_hidden_state
    return np.asarray(hidden.mean(dim=1).numpy())


def fit(folder: Path, speech: np.ndarray, classes: list[Any], seed: int = 0) -> tuple[Any, Any]:
    """A real fitted scaler + classifier, on random embeddings spread like the backbone's own."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    seen = embed(folder, np.stack(speech_windows(speech, [SR] * 6, offset=seed)))
    rng = np.random.default_rng(seed)
    x = seen.mean(0) + 3 * seen.std(0) * rng.standard_normal((300, seen.shape[1]))
    y = np.array(classes, dtype=object)[rng.integers(0, len(classes), 300)]
    y = y.astype(type(classes[0]))
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=0.5, max_iter=500).fit(scaler.transform(x), y)
    return scaler, clf


def card_p_fake(folder: Path, scaler: Any, clf: Any, fake: list[Any]) -> Reference:
    idx = [list(clf.classes_).index(c) for c in fake]

    def run(batch: np.ndarray) -> np.ndarray:
        z = embed(folder, batch)
        p = clf.predict_proba(scaler.transform(z) if scaler is not None else z)
        return np.asarray(p[:, idx].sum(axis=1))

    return run


@pytest.fixture(scope="module")
def binary(
    tmp_path_factory: pytest.TempPathFactory, speech_16k: np.ndarray
) -> tuple[Reference, Path]:
    root = tmp_path_factory.mktemp("logreg")
    card = root / "card"
    backbone = save_backbone(card / "backbone")
    scaler, clf = fit(backbone, speech_16k, ["bonafide", "spoof"])
    (card / "scaler.pkl").write_bytes(pickle.dumps(scaler))
    (card / "classifier.pkl").write_bytes(pickle.dumps(clf))
    manifest = export_cli(
        card, root / "models", "lr", "--family", "w2v2-embed-logreg", "--trust-pickle"
    )
    return card_p_fake(backbone, scaler, clf, ["spoof"]), manifest


def test_binary_is_one_sigmoid_logit(binary: tuple[Reference, Path]) -> None:
    import yaml

    m = yaml.safe_load(binary[1].read_text())
    assert m["labels"] == ["spoof"] and m["fake_index"] == 0 and m["activation"] == "sigmoid"
    assert m["classes"] == ["bonafide", "spoof"] and m["normalize"] == "zero_mean_unit_var"
    assert set(m["pickle_sha256"]) == {"scaler.pkl", "classifier.pkl"}


def test_binary_parity_on_real_speech(
    binary: tuple[Reference, Path], speech_16k: np.ndarray
) -> None:
    ref, manifest = binary
    windows = speech_windows(speech_16k, [40000, 40000, 64000, 51237], offset=99)
    assert_detector_matches(manifest, ref, windows)
    p = ref(np.stack(windows[:2]))
    assert np.all((p > 0.001) & (p < 0.999))  # the check is not on saturated scores


def test_score_whole_file_matches_card(
    binary: tuple[Reference, Path], speech_16k: np.ndarray, tmp_path: Path
) -> None:
    ref, manifest = binary
    assert_score_matches(manifest, speech_16k, ref, tmp_path)


def test_multiclass_pipeline_sums_fake_classes(tmp_path: Path, speech_16k: np.ndarray) -> None:
    import joblib
    from sklearn.pipeline import make_pipeline

    backbone = save_backbone(tmp_path / "card", seed=1)  # backbone files directly in the folder
    scaler, clf = fit(backbone, speech_16k, ["human", "tts", "vc", "replay"], seed=1)
    joblib.dump(make_pipeline(scaler, clf), tmp_path / "card" / "classifier.joblib")
    manifest = export_cli(
        tmp_path / "card",
        tmp_path / "m",
        "mc",
        "--family",
        "w2v2-embed-logreg",
        "--trust-pickle",
        "--fake-classes",
        "tts,vc",
    )
    import yaml

    m = yaml.safe_load(manifest.read_text())
    assert (
        m["labels"] == ["human", "replay", "tts", "vc"]
        and m["fake_index"] == [2, 3]
        and m["activation"] == "softmax"
    )
    windows = speech_windows(speech_16k, [48000, 48000, 64000])
    assert_detector_matches(manifest, card_p_fake(backbone, scaler, clf, ["tts", "vc"]), windows)
    assert (
        main(["models", "verify", "mc", "--models-dir", str(tmp_path / "m")]) == 0
    )  # replays --fake-classes


def test_integer_classes_need_fake_classes(
    tmp_path: Path, speech_16k: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    backbone = save_backbone(tmp_path / "card" / "backbone", seed=2)
    scaler, clf = fit(backbone, speech_16k, [0, 1], seed=2)
    (tmp_path / "card" / "scaler.pkl").write_bytes(pickle.dumps(scaler))
    (tmp_path / "card" / "classifier.pkl").write_bytes(pickle.dumps(clf))
    family = ("--family", "w2v2-embed-logreg", "--trust-pickle")
    assert main(export_args(tmp_path / "card", tmp_path / "m", "i", *family)) == 2
    assert "--fake-classes" in capsys.readouterr().err
    # fake is classes_[0]: the logit flips
    manifest = export_cli(tmp_path / "card", tmp_path / "m", "i", *family, "--fake-classes", "0")
    windows = speech_windows(speech_16k, [48000, 48000])
    assert_detector_matches(manifest, card_p_fake(backbone, scaler, clf, [0]), windows)


class Tripwire:
    """Unpickling this creates a file: proof of whether a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_pickles_are_never_loaded_without_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_backbone(tmp_path / "card")
    marker = tmp_path / "unpickled"
    (tmp_path / "card" / "classifier.pkl").write_bytes(pickle.dumps(Tripwire(marker)))
    rc = main(export_args(tmp_path / "card", tmp_path / "m", "x", "--family", "w2v2-embed-logreg"))
    err = capsys.readouterr().err
    assert rc == 2 and "--trust-pickle" in err and "runs any code" in err
    assert not marker.exists()


def test_help_says_why_pickles_need_trust(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trust-pickle" in text and "runs code" in text
