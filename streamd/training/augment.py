"""Call-channel augmentation for training: what a live call does to a voice, as signal processing.

Every transform is applied with the same probability to real and fake clips (the augmenter never
sees the label), so that format cues (sample rate, codec, loudness, noise floor) stop separating
the classes in the training data and the detector has to learn something else. All randomness
comes from the ``numpy.random.Generator`` passed in, so a seed fixes every draw.

Audio is 16 kHz mono float32 in [-1, 1] in and out, and every transform keeps the length: a lost
packet becomes silence of the same duration, as it does in the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamd.offline.channel import g711_roundtrip

SAMPLE_RATE = 16000
NOISE_COLORS = ("white", "pink", "brown", "hum")


def g711(audio: np.ndarray, law: str = "ulaw") -> np.ndarray:
    """8 kHz G.711 round trip (band above 4 kHz gone, 8-bit companding noise)."""
    return g711_roundtrip(audio, law)  # type: ignore[arg-type]


def gilbert_elliott_mask(
    n_frames: int, rng: np.random.Generator, loss_rate: float, mean_burst: float
) -> np.ndarray:
    """Per-frame loss flags from a two-state Markov chain (good/bad), as packet loss comes in
    bursts.

    In the bad state every frame is lost. ``loss_rate`` is the stationary share of bad frames and
    ``mean_burst`` the mean run of lost frames, which fix the two transition probabilities.
    """
    if not 0.0 <= loss_rate < 1.0:
        raise ValueError("loss_rate must be in [0, 1)")
    if mean_burst < 1.0:
        raise ValueError("mean_burst must be at least one frame")
    p_bad_to_good = 1.0 / mean_burst
    p_good_to_bad = loss_rate * p_bad_to_good / (1.0 - loss_rate)
    u = rng.random(n_frames)
    lost = np.zeros(n_frames, dtype=bool)
    bad = rng.random() < loss_rate  # start in the stationary distribution
    for i in range(n_frames):
        lost[i] = bad
        bad = u[i] >= p_bad_to_good if bad else u[i] < p_good_to_bad
    return lost


def packet_loss(
    audio: np.ndarray,
    rng: np.random.Generator,
    loss_rate: float = 0.05,
    mean_burst: float = 2.0,
    frame_ms: int = 20,
) -> np.ndarray:
    """Zero whole ``frame_ms`` packets in Gilbert-Elliott bursts; the length never changes."""
    frame = SAMPLE_RATE * frame_ms // 1000
    n_frames = -(-len(audio) // frame)
    lost = np.repeat(gilbert_elliott_mask(n_frames, rng, loss_rate, mean_burst), frame)[
        : len(audio)
    ]
    out = np.array(audio, dtype=np.float32, copy=True)
    out[lost] = 0.0
    return out


def change_level(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` and saturate at full scale, as an ADC or a hot line would."""
    gain = np.float32(10.0 ** (gain_db / 20.0))
    out: np.ndarray = np.clip(np.asarray(audio, dtype=np.float32) * gain, -1.0, 1.0)
    return out


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power background noise: white, pink (1/f), brown (1/f^2), or mains hum with
    harmonics."""
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    if color == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = rng.choice([50.0, 60.0])
        phases = rng.uniform(0, 2 * np.pi, 5)
        x = sum(np.sin(2 * np.pi * base * k * t + phases[k - 1]) / k for k in range(1, 6))
        x = np.asarray(x) + 0.05 * rng.standard_normal(n)  # a little hiss under the hum
    else:
        exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[color]
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        f[0] = f[1] if n > 1 else 1.0
        x = np.fft.irfft(spectrum / f ** (exponent / 2.0), n)
    x = np.asarray(x, dtype=np.float64)
    power = float(np.mean(x**2))
    return (x / np.sqrt(power) if power > 0 else x).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` scaled so that signal power / noise power over the clip is ``snr_db``.

    A silent clip stays silent (there is no signal to measure an SNR against).
    """
    x = np.asarray(audio, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)[: len(x)]
    p_signal, p_noise = float(np.mean(x**2)), float(np.mean(n**2))
    if p_signal == 0.0 or p_noise == 0.0:
        return np.asarray(audio, dtype=np.float32).copy()
    scale = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    out: np.ndarray = (x + scale * n).astype(np.float32)
    return out


def band_limit(
    audio: np.ndarray, low_hz: float = 300.0, high_hz: float = 3400.0, taper_hz: float = 50.0
) -> np.ndarray:
    """Keep only ``low_hz``-``high_hz`` (the telephone band), with a short raised-cosine taper.

    Done as one FFT mask over the clip: zero phase (windows stay aligned) and a stop band that is
    really empty, unlike a low-order IIR.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.size < 2:
        return x.astype(np.float32)
    f = np.fft.rfftfreq(x.size, 1.0 / SAMPLE_RATE)
    gain = np.ones_like(f)
    lo_ramp = (f > low_hz - taper_hz) & (f < low_hz)
    hi_ramp = (f > high_hz) & (f < high_hz + taper_hz)
    gain[f <= low_hz - taper_hz] = 0.0
    gain[f >= high_hz + taper_hz] = 0.0
    gain[lo_ramp] = 0.5 - 0.5 * np.cos(np.pi * (f[lo_ramp] - (low_hz - taper_hz)) / taper_hz)
    gain[hi_ramp] = 0.5 + 0.5 * np.cos(np.pi * (f[hi_ramp] - high_hz) / taper_hz)
    return np.fft.irfft(np.fft.rfft(x) * gain, x.size).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the random call-channel chain (the same for both classes)."""

    p_level: float = 0.5
    gain_db: tuple[float, float] = (-20.0, 6.0)
    p_noise: float = 0.4
    snr_db: tuple[float, float] = (10.0, 30.0)
    noise_colors: tuple[str, ...] = NOISE_COLORS
    p_band: float = 0.3
    p_g711: float = 0.5
    p_loss: float = 0.3
    loss_rate: tuple[float, float] = (0.01, 0.10)
    mean_burst: tuple[float, float] = (1.0, 4.0)


@dataclass
class Augmented:
    audio: np.ndarray
    applied: list[str] = field(default_factory=list)


def augment(
    audio: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> Augmented:
    """One random draw of the chain, in the order a call applies it.

    Talker side (level, background noise), then the channel (band-limiting, G.711 at 8 kHz),
    then the network (packet loss).
    """
    c = cfg or AugmentConfig()
    x = np.asarray(audio, dtype=np.float32)
    applied: list[str] = []
    if rng.random() < c.p_level:
        gain = float(rng.uniform(*c.gain_db))
        x = change_level(x, gain)
        applied.append(f"level {gain:+.1f} dB")
    if rng.random() < c.p_noise:
        color = str(rng.choice(list(c.noise_colors)))
        snr = float(rng.uniform(*c.snr_db))
        x = add_noise(x, colored_noise(len(x), color, rng), snr)
        applied.append(f"{color} noise {snr:.0f} dB SNR")
    if rng.random() < c.p_band:
        x = band_limit(x)
        applied.append("300-3400 Hz")
    if rng.random() < c.p_g711:
        law = "ulaw" if rng.random() < 0.5 else "alaw"
        x = g711(x, law)
        applied.append(f"G.711 {law}")
    if rng.random() < c.p_loss:
        rate, burst = float(rng.uniform(*c.loss_rate)), float(rng.uniform(*c.mean_burst))
        x = packet_loss(x, rng, rate, burst)
        applied.append(f"loss {100 * rate:.0f}% bursts {burst:.1f}")
    return Augmented(np.clip(x, -1.0, 1.0).astype(np.float32), applied)
