"""AASIST family through ``streamd models export``: the installed ONNX graph reproduces the
original implementation's logits (reference/ in ../shared/models) to 1e-4, at batch > 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.cli import main
from streamd.model.session import Detector

from tests.helpers.families import AASIST_CHECKPOINTS, AasistReference, export_args


@pytest.fixture(scope="module")
def exported(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("aasist-models")
    for name, (pth, conf) in AASIST_CHECKPOINTS.items():
        config = ["--config", str(shared_dir / "models" / conf)] if conf else []
        args = export_args(shared_dir / "models" / pth, models, name, "--family", "aasist", *config)
        assert main(args) == 0
    return models


@pytest.mark.parametrize("name", list(AASIST_CHECKPOINTS))
@pytest.mark.slow
def test_onnx_reproduces_reference_logits(
    name: str, exported: Path, aasist_reference: AasistReference
) -> None:
    inputs, logits = aasist_reference.inputs, aasist_reference.logits[name]
    det = Detector.load(exported / f"{name}.yaml", ["cpu"])
    clips = list(logits)
    assert len(clips) >= 40
    batch = np.stack([inputs[c] for c in clips])
    got = np.concatenate(
        [det.infer(batch[i : i + 8]) for i in range(0, len(batch), 8)]
    )  # batch of 8
    want = np.stack([logits[c] for c in clips])
    assert np.abs(got - want).max() < 1e-4
    assert det.manifest.labels == ["spoof", "bonafide"] and det.manifest.fake_index == 0


@pytest.mark.slow
def test_windows_from_2_5_to_4_04_s_are_tiled_like_the_original(
    exported: Path, aasist_reference: AasistReference
) -> None:
    det = Detector.load(exported / "aasist-l.yaml", ["cpu"])
    x = aasist_reference.inputs["synthetic:sine440"]
    for seconds in (2.5, 3.17, 4.0, 4.0375):
        n = int(seconds * 16000)
        window = x[:n] * np.hanning(n).astype(np.float32)
        tiled = np.tile(window, -(-64600 // n))[:64600]
        via_scorer = det.score_windows([window, window[:40000]])[1][0]
        direct = det.infer(tiled[None])[0]
        np.testing.assert_allclose(via_scorer, direct, atol=1e-4)


def test_manifest_carries_source_license_and_reported_metrics(exported: Path) -> None:
    import yaml

    m = yaml.safe_load((exported / "aasist.yaml").read_text())
    assert m["source"].startswith("https://github.com/clovaai/aasist") and m["license"] == "MIT"
    assert "0.83%" in m["metrics"]["reported"] and len(m["sha256"]) == 64
    assert m["export"]["max_abs_diff_vs_torch"] < 1e-4
