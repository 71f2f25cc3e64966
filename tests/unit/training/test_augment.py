"""Training augmentation is real signal processing: G.711 against a reference codec, loss gaps that
keep duration, a band limit that empties the stop band, and the SNR that was asked for."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from streamd.codecs.g711 import alaw_encode, ulaw_encode
from streamd.training import augment as aug
from streamd.training.data import CLEAN, TELEPHONE, render

audioop = pytest.importorskip(
    "audioop", reason="audioop (the reference G.711 codec) left Python in 3.13"
)


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Harmonics of a wandering pitch under a syllable-rate envelope: broadband, like voice."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum((np.sin(k * phase) / k for k in range(1, 30)), np.zeros_like(t))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    peak: float = np.max(np.abs(x))
    return (0.3 * env * x / peak + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_roundtrip_matches_reference_codec(law: str) -> None:
    x = speechlike()
    # the same path with audioop as the codec: 16 kHz -> 8 kHz, encode, decode, back to 16 kHz
    narrow = soxr.resample(x, 16000, 8000)
    pcm = np.clip(np.round(narrow * 32768.0), -32768, 32767).astype("<i2").tobytes()
    enc, dec = (
        (audioop.lin2ulaw, audioop.ulaw2lin)
        if law == "ulaw"
        else (audioop.lin2alaw, audioop.alaw2lin)
    )
    ref_coded = np.frombuffer(dec(enc(pcm, 2), 2), dtype="<i2").astype(np.float32) / 32768.0
    ref = soxr.resample(ref_coded, 8000, 16000)[: len(x)]
    ours = aug.g711(x, law)
    assert ours.shape == x.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    # and the codec tables themselves agree with audioop on every int16 value
    every = np.arange(-32768, 32768, dtype="<i2")
    ours_bytes = (ulaw_encode if law == "ulaw" else alaw_encode)(every)
    assert ours_bytes == enc(every.tobytes(), 2)
    # a real codec is lossy but close: companding noise well below the signal
    err = ours - x
    assert 10 * np.log10(np.mean(x**2) / np.mean(err**2)) > 15


def test_packet_loss_keeps_duration_and_zeroes_whole_frames() -> None:
    x = speechlike(10.0) + 0.05
    rng = np.random.default_rng(1)
    y = aug.packet_loss(x, rng, loss_rate=0.1, mean_burst=3.0, frame_ms=20)
    assert y.shape == x.shape
    frames = y[: len(y) // 320 * 320].reshape(-1, 320)
    lost = np.all(frames == 0.0, axis=1)
    kept = ~lost
    np.testing.assert_array_equal(
        frames[kept], x[: len(lost) * 320].reshape(-1, 320)[kept]
    )  # untouched elsewhere
    assert 0.04 < lost.mean() < 0.2


def test_gilbert_elliott_rate_and_bursts() -> None:
    lost = aug.gilbert_elliott_mask(
        200_000, np.random.default_rng(2), loss_rate=0.05, mean_burst=4.0
    )
    assert abs(lost.mean() - 0.05) < 0.01
    edges = np.diff(np.r_[0, lost.astype(int), 0])
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert abs(runs.mean() - 4.0) < 0.4  # losses come in bursts of the asked mean length


def test_band_limit_removes_energy_outside_the_band() -> None:
    t = np.arange(32000) / 16000
    tones = {f: np.sin(2 * np.pi * f * t) for f in (100.0, 1000.0, 3000.0, 5000.0, 7000.0)}
    y = aug.band_limit(sum(tones.values(), np.zeros_like(t)).astype(np.float32))
    spec = np.abs(np.fft.rfft(y)) / (len(y) / 2)
    amp = {f: spec[int(f * 2)] for f in tones}  # 0.5 Hz bins
    assert amp[1000.0] == pytest.approx(1.0, abs=1e-3) and amp[3000.0] == pytest.approx(
        1.0, abs=1e-3
    )
    for f in (100.0, 5000.0, 7000.0):
        assert 20 * np.log10(amp[f] + 1e-12) < -60
    assert y.shape == t.shape


@pytest.mark.parametrize("color", aug.NOISE_COLORS)
@pytest.mark.parametrize("snr", [0.0, 12.5, 30.0])
def test_noise_is_added_at_the_asked_snr(color: str, snr: float) -> None:
    x = speechlike(3.0)
    noise = aug.colored_noise(len(x), color, np.random.default_rng(3))
    y = aug.add_noise(x, noise, snr)
    measured = 10 * np.log10(
        np.mean(x.astype(np.float64) ** 2) / np.mean((y.astype(np.float64) - x) ** 2)
    )
    assert measured == pytest.approx(snr, abs=0.01)
    assert np.array_equal(
        aug.add_noise(np.zeros(100, np.float32), noise, snr), np.zeros(100, np.float32)
    )


def test_noise_colors_have_their_slopes() -> None:
    rng = np.random.default_rng(4)
    for color, lo_over_hi in (
        ("white", (0.5, 2.0)),
        ("pink", (10.0, 100.0)),
        ("brown", (100.0, 1e6)),
    ):
        spec = np.abs(np.fft.rfft(aug.colored_noise(64000, color, rng))) ** 2
        f = np.fft.rfftfreq(64000, 1 / 16000)
        ratio = spec[(f > 100) & (f < 200)].mean() / spec[(f > 4000) & (f < 8000)].mean()
        assert lo_over_hi[0] < ratio < lo_over_hi[1], (color, ratio)


def test_level_change_scales_and_saturates() -> None:
    x = np.array([0.1, -0.2, 0.6], np.float32)
    np.testing.assert_allclose(aug.change_level(x, -20.0), x / 10, rtol=1e-6)
    assert np.array_equal(
        aug.change_level(x, 12.0)[1:], np.array([-0.2 * 10**0.6, 1.0], np.float32)
    )


def test_chain_is_seeded_keeps_length_and_ignores_the_label() -> None:
    x = speechlike(3.0)
    a = aug.augment(x, np.random.default_rng(7))
    b = aug.augment(x, np.random.default_rng(7))
    assert np.array_equal(a.audio, b.audio) and a.applied == b.applied
    assert a.audio.shape == x.shape and np.abs(a.audio).max() <= 1.0
    draws = [aug.augment(x, np.random.default_rng(s)).applied for s in range(200)]
    g711_share = np.mean([any(op.startswith("G.711") for op in d) for d in draws])
    assert 0.35 < g711_share < 0.65  # p_g711 = 0.5: the label never enters the draw


def test_render_conditions(tmp_path: object) -> None:
    from pathlib import Path

    from streamd.offline.datasets import LabeledClip

    x = speechlike(2.0)
    real = LabeledClip(Path("a/r.wav"), "real")
    fake = LabeledClip(Path("a/f.wav"), "fake")
    cfg = aug.AugmentConfig()
    assert render(x, CLEAN, real, 0, cfg) is x
    np.testing.assert_array_equal(render(x, TELEPHONE, real, 0, cfg), aug.g711(x, "ulaw"))
    same = render(x, "aug1", real, 0, cfg), render(x, "aug1", real, 0, cfg)
    assert np.array_equal(*same)
    # a clip's draw depends on the clip and seed, never on the label: rename -> other draw
    assert render(x, "aug1", fake, 5, cfg).shape == x.shape
