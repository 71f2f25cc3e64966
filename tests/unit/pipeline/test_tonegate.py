"""The tone/music rejector: call-progress tones, DTMF, fax and hold music through G.711 are never
scored (so never alert), while speech-like audio and real speech pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.pipeline.tonegate import ToneGate
from streamd.training.phone_data import daemon_windows, phone_channel

from tests.helpers.call_signals import signals

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
TONAL = [
    "hold_music",
    "ringback_us",
    "ringback_eu",
    "busy",
    "sit",
    "dtmf",
    "fax_ced",
    "fax_cng",
    "dial_tone",
]


@pytest.fixture(scope="module")
def sigs() -> dict[str, np.ndarray]:
    return signals(30.0)


@pytest.mark.parametrize("name", TONAL)
def test_every_window_of_a_tone_signal_is_gated(name: str, sigs: dict[str, np.ndarray]) -> None:
    wins = [w for _, w in daemon_windows(sigs[name])]
    assert wins, f"{name}: the VAD passed no window (then it is gated already)"
    gate = ToneGate()
    assert all(gate.is_tonal(w) for w in wins), [round(gate.features(w)[1], 2) for w in wins]


@pytest.mark.parametrize("name", ["comfort_noise", "line_hiss"])
def test_noise_never_reaches_the_scorer(name: str, sigs: dict[str, np.ndarray]) -> None:
    gate = ToneGate()
    assert all(gate.is_tonal(w) for _, w in daemon_windows(sigs[name]))  # vacuous: VAD gates it


def speechlike(n: int, seed: int) -> np.ndarray:
    """Harmonics of a gliding pitch under a syllable envelope, with formant-like tilt."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = (
        110
        + 40 * rng.random()
        + 25 * np.sin(2 * np.pi * 2.7 * t)
        + 10 * np.sin(2 * np.pi * 0.7 * t)
    )
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum((np.sin(k * phase) * np.exp(-k / 8) for k in range(1, 30)), np.zeros_like(t))
    env = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.5
    return (0.3 * env * x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def test_speechlike_audio_is_not_gated() -> None:
    gate = ToneGate()
    for seed in range(5):
        assert not gate.is_tonal(phone_channel(speechlike(64000, seed)))


@pytest.mark.skipif(not (SHARED / "manifest.csv").exists(), reason="../shared/data is not here")
def test_real_and_fake_speech_windows_are_not_gated() -> None:
    import csv

    from streamd.pipeline.audio import load_audio

    with open(SHARED / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = [r for r in rows if float(r["duration_s"]) > 5][::40]
    gate = ToneGate()
    wins = [
        w for r in rows for _, w in daemon_windows(phone_channel(load_audio(SHARED / r["path"])))
    ]
    gated = sum(gate.is_tonal(w) for w in wins)
    assert wins and gated <= len(wins) * 0.01, f"{gated} of {len(wins)} speech windows gated"


def test_gate_is_cheap() -> None:
    import time

    x = phone_channel(speechlike(64000, 1))
    t = time.perf_counter()
    for _ in range(10):
        ToneGate().is_tonal(x)
    assert (time.perf_counter() - t) / 10 < 0.05
