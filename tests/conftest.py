"""Fixtures shared by every test module: the ../shared folder and small synthetic signals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
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
    from streamd.audio import load_audio

    folder = shared_dir / "data" / "resemble-ai__Resemblyzer" / "audio_data" / "librispeech_test-other"
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".flac", ".wav"))
    if not files:
        pytest.skip(f"no LibriSpeech clips under {folder}")
    audio = np.concatenate([load_audio(p) for p in files[:3]])
    return audio


def tone(freq: float, seconds: float, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
