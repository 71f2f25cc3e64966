"""Fixtures shared by every test module: the ../shared folder and small synthetic signals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data" / "manifest.csv").exists():
        pytest.skip(f"../shared is absent ({SHARED}): real speech and checkpoints live there")
    return SHARED


@pytest.fixture(scope="session")
def shared_manifest(shared_dir: Path) -> list[dict[str, str]]:
    with open(shared_dir / "data" / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def speech_16k(shared_dir: Path) -> np.ndarray:
    """About 10 s of real read speech (LibriSpeech, 16 kHz) for pipeline tests."""
    from streamd.pipeline.audio import load_audio

    folder = (
        shared_dir / "data" / "resemble-ai__Resemblyzer" / "audio_data" / "librispeech_test-other"
    )
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".flac", ".wav"))
    if not files:
        pytest.skip(f"no LibriSpeech clips under {folder}")
    audio = np.concatenate([load_audio(p) for p in files[:3]])
    return audio


def tone(freq: float, seconds: float, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding ``tiny``: a random-weight Wav2Vec2 classifier exported through the
    CLI."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from streamd.cli import main

    from tests.helpers.tinymodels import save_tiny_wav2vec2

    root = tmp_path_factory.mktemp("tiny-model")
    ckpt = save_tiny_wav2vec2(root / "ckpt")
    models = root / "models"
    assert (
        main(
            ["models", "export", "--from", str(ckpt), "--name", "tiny", "--models-dir", str(models)]
        )
        == 0
    )
    return models


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e runs real peers in subprocesses: it is the slow tier."""
    e2e = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if e2e in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)
