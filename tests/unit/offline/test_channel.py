"""The simulated phone channel: 8 kHz G.711 removes the upper band and adds companding noise."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from streamd.offline.channel import g711_roundtrip


def band_energy(x: np.ndarray, lo: float, hi: float, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced harmonics up to 3.4 kHz (the telephone band) under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    f0 = 120 + 25 * np.sin(2 * np.pi * 2.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    harmonics = sum(
        np.sin(k * phase + rng.random() * 6.28) / k for k in range(1, 25) if 145 * k < 3400
    )
    env = 0.5 * (1.2 + np.sin(2 * np.pi * 4 * t))
    return (0.3 * env * harmonics).astype(np.float32)


@pytest.mark.parametrize("n", [16000, 16001, 40003, 1, 2])
@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_length_and_dtype_preserved(n: int, law: str) -> None:
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    y = g711_roundtrip(x, law)  # type: ignore[arg-type]
    assert y.shape == x.shape and y.dtype == np.float32


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_upper_band_removed(law: str) -> None:
    x = (np.random.default_rng(0).standard_normal(32000) * 0.1).astype(np.float32)
    y = g711_roundtrip(x, law)  # type: ignore[arg-type]
    # white noise has half its energy in 4-8 kHz; after the channel almost none is left
    assert band_energy(x, 4200, 8000) > 0.4 * band_energy(x, 0, 8000)
    assert band_energy(y, 4200, 8000) < 0.01 * band_energy(x, 4200, 8000)
    # ... while the telephone band survives
    assert band_energy(y, 300, 3400) == pytest.approx(band_energy(x, 300, 3400), rel=0.1)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_speech_band_signal_survives_with_companding_noise(law: str) -> None:
    x = speechlike(3.0)
    y = g711_roundtrip(x, law)  # type: ignore[arg-type]
    core = slice(800, -800)  # resampler edges aside
    assert np.corrcoef(x[core], y[core])[0, 1] > 0.995
    # G.711 is really applied: compared with the resampling alone, the error is the
    # 8-bit companding noise, about 35-40 dB below the signal, not zero
    clean = soxr.resample(soxr.resample(x, 16000, 8000), 8000, 16000)[: x.size]
    noise = y[core] - clean[core]
    snr = 10 * np.log10(np.sum(clean[core] ** 2) / np.sum(noise**2))
    assert 25.0 < snr < 45.0


def test_full_scale_saturates_instead_of_wrapping() -> None:
    # band-limiting a near-full-scale square wave overshoots past 1.0 (Gibbs); those samples must
    # clip at the int16 limits, not wrap to large negative values
    t = np.arange(16000) / 16000
    x = (0.97 * np.sign(np.sin(2 * np.pi * 100 * t) + 1e-9)).astype(np.float32)
    assert np.abs(soxr.resample(x, 16000, 8000)).max() > 1.0
    y = g711_roundtrip(x)
    settled = np.ones(x.size, dtype=bool)
    for edge in np.flatnonzero(np.diff(x) != 0):
        settled[max(0, edge - 15) : edge + 16] = False
    settled[:400] = settled[-400:] = False
    assert np.all(np.sign(y[settled]) == np.sign(x[settled]))


def test_rejects_unknown_law_and_stereo() -> None:
    with pytest.raises(ValueError, match="law"):
        g711_roundtrip(np.zeros(100, np.float32), "gsm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mono"):
        g711_roundtrip(np.zeros((100, 2), np.float32))
