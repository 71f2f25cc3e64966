"""A speech-like test signal: a glottal pulse train through formant resonators, with syllables.

Speech codecs (AMR, Opus's SILK) model a voice as an excitation through a vocal-tract filter, so a
test of them needs a signal of that shape, with energy up to 8 kHz (aspiration) so that a band
limit has something to remove.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

RATE = 16000
FORMANTS = ((700.0, 130.0), (1220.0, 70.0), (2600.0, 160.0), (3500.0, 250.0))  # Hz, bandwidth


def _resonator(freq: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bandwidth / RATE)
    a = np.array([1.0, -2.0 * r * np.cos(2 * np.pi * freq / RATE), r * r])
    return np.array([a.sum()]), a  # unit gain at DC


def speechlike(seconds: float = 2.0, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Voiced syllables (pitch 100-180 Hz) with breath noise between and over them; peak
    ``level``, 16 kHz float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 2 * np.pi))
    phase = np.cumsum(f0) / RATE
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    excitation = lfilter([1.0], [1.0, -0.9], pulses)  # glottal roll-off
    voiced = excitation.copy()
    for freq, bw in FORMANTS:
        b, a = _resonator(freq, bw)
        voiced = lfilter(b, a, voiced)
    voiced = np.diff(voiced, prepend=0.0)  # lip radiation: +6 dB/octave
    voiced /= np.max(np.abs(voiced))
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 2 * np.pi)), 0.0, None)
    breath = np.diff(rng.standard_normal(n), prepend=0.0)  # high-passed: energy up to 8 kHz
    x = syllables * voiced + 0.04 * breath * (0.3 + syllables)
    out: np.ndarray = (level * x / np.max(np.abs(x))).astype(np.float32)
    return out
