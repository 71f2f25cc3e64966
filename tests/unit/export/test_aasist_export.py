"""AASIST family through ``streamd models export``: the installed ONNX graph reproduces the
original implementation's logits (reference/ in ../shared/models) to 1e-4, at batch > 1."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from streamd.cli import main
from streamd.model.session import Detector

CHECKPOINTS = {
    "aasist-l": ("aasist/AASIST-L.pth", None),
    "aasist": ("aasist/AASIST.pth", "aasist/AASIST.conf"),
    "aasist-asvspoof5": (
        "aasist-asvspoof5/AASIST-asvspoof5.pth",
        "aasist-asvspoof5/AASIST_ASVspoof5.conf",
    ),
}


@pytest.fixture(scope="module")
def reference(shared_dir: Path) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray]]:
    ref = shared_dir / "models" / "reference"
    z = np.load(ref / "aasist_reference_inputs.npz")
    inputs = {str(n): x for n, x in zip(z["names"], z["x"], strict=True)}
    inputs["synthetic:zeros"] = np.zeros(64600, np.float32)
    inputs["synthetic:sine440"] = (0.5 * np.sin(2 * np.pi * 440 * np.arange(64600) / 16000)).astype(
        np.float32
    )
    with open(ref / "aasist_reference_logits.csv", newline="") as f:
        logits = {
            (r["model"], r["clip"]): np.array([float(r["logit0"]), float(r["logit1"])])
            for r in csv.DictReader(f)
        }
    return inputs, logits


@pytest.fixture(scope="module")
def exported(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("aasist-models")
    for name, (pth, conf) in CHECKPOINTS.items():
        args = [
            "models",
            "export",
            "--family",
            "aasist",
            "--from",
            str(shared_dir / "models" / pth),
            "--name",
            name,
            "--models-dir",
            str(models),
        ]
        if conf:
            args += ["--config", str(shared_dir / "models" / conf)]
        assert main(args) == 0
    return models


@pytest.mark.parametrize("name", list(CHECKPOINTS))
@pytest.mark.slow
def test_onnx_reproduces_reference_logits(
    name: str, exported: Path, reference: tuple[dict, dict]
) -> None:
    inputs, logits = reference
    det = Detector.load(exported / f"{name}.yaml", ["cpu"])
    clips = [c for (m, c) in logits if m == name]
    assert len(clips) >= 40
    batch = np.stack([inputs[c] for c in clips])
    got = np.concatenate(
        [det.infer(batch[i : i + 8]) for i in range(0, len(batch), 8)]
    )  # batch of 8
    want = np.stack([logits[(name, c)] for c in clips])
    assert np.abs(got - want).max() < 1e-4
    assert det.manifest.labels == ["spoof", "bonafide"] and det.manifest.fake_index == 0


def test_windows_from_2_5_to_4_04_s_are_tiled_like_the_original(
    exported: Path, reference: tuple[dict, dict]
) -> None:
    inputs, _ = reference
    det = Detector.load(exported / "aasist-l.yaml", ["cpu"])
    x = inputs["synthetic:sine440"]
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
